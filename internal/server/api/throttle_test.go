package api_test

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/wrennhq/wrenn/internal/openapitest"
	"github.com/wrennhq/wrenn/internal/server/servertest"
)

// from is a caller whose connections come from ip (any 127/8 address reaches the test
// server on Linux), so tests can act as different client addresses.
func from(t *testing.T, env *servertest.Env, ip string) call {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return call{t: t, base: env.URL, http: &http.Client{Transport: openapitest.Transport(t, tr)}}
}

// parallel posts every body at once and returns the statuses by count; it may run
// off the test goroutine, so it reports transport errors instead of failing.
func parallel(t *testing.T, c call, path string, bodies []string) map[int]int {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	counts := map[int]int{}
	start := make(chan struct{})
	for _, b := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			status := -1
			if resp, err := c.http.Post(c.base+path, "application/json", strings.NewReader(b)); err != nil {
				t.Errorf("POST %s: %v", path, err)
			} else {
				status = resp.StatusCode
				resp.Body.Close()
			}
			mu.Lock()
			counts[status]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	return counts
}

func wrongLogins(n int, email func(i int) string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(`{"email":%q,"password":"wrong guess %d"}`, email(i), i)
	}
	return out
}

// A parallel burst of guesses is limited exactly like a sequential one: each attempt
// is counted before its password is hashed, so at most 10 are ever checked.
func TestLoginThrottleParallelBurst(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	signup(anon, "ann@example.com")
	counts := parallel(t, anon, "/v1/auth/login", wrongLogins(40, func(int) string { return "ann@example.com" }))
	if counts[401] > 10 || counts[401]+counts[429] != 40 {
		t.Errorf("40 parallel wrong passwords: %v, want at most 10×401 and the rest 429", counts)
	}
	status, raw, hdr := anon.raw("POST", "/v1/auth/login", "application/json", strings.NewReader(`{"email":"ann@example.com","password":"correct horse battery"}`))
	if status != 429 || hdr.Get("Retry-After") == "" {
		t.Errorf("right password after the burst: %d %s retry-after %q", status, raw, hdr.Get("Retry-After"))
	}
}

// Guessing from one address locks that address out of the email, not the email's
// owner elsewhere; and one address cannot spread guesses over many emails unbounded.
func TestLoginThrottlePerAddress(t *testing.T) {
	env := servertest.New(t)
	owner := newCall(t, env)
	signup(owner, "ann@example.com")
	attacker := from(t, env, "127.0.0.2")
	counts := parallel(t, attacker, "/v1/auth/login", wrongLogins(12, func(int) string { return "ann@example.com" }))
	if counts[401] != 10 || counts[429] != 2 {
		t.Errorf("12 guesses from one address: %v, want 10×401 2×429", counts)
	}
	if status, body := owner.do("POST", "/v1/auth/login", `{"email":"ann@example.com","password":"correct horse battery"}`); status != 200 {
		t.Errorf("owner from another address after the attack: %d %v", status, body)
	}
	// 30 guesses against 30 emails from one address, then that address is refused
	// for any email.
	spray := from(t, env, "127.0.0.3")
	// In batches, so no guess waits long for a password-hashing slot on a small machine.
	counts = map[int]int{}
	for b := 0; b < 30; b += 5 {
		for status, n := range parallel(t, spray, "/v1/auth/login", wrongLogins(5, func(i int) string { return fmt.Sprintf("u%d@example.com", b+i) })) {
			counts[status] += n
		}
	}
	if counts[401] != 30 {
		t.Errorf("30 emails once each: %v", counts)
	}
	if status, _ := spray.do("POST", "/v1/auth/login", `{"email":"ann@example.com","password":"correct horse battery"}`); status != 429 {
		t.Errorf("31st login from the spraying address: %d, want 429", status)
	}
	if status, _ := owner.do("POST", "/v1/auth/login", `{"email":"ann@example.com","password":"correct horse battery"}`); status != 200 {
		t.Errorf("owner while another address is refused: %d", status)
	}
}

// Sign-ups hash a password too: one address gets 10 an hour.
func TestSignupThrottlePerAddress(t *testing.T) {
	env := servertest.New(t)
	c := from(t, env, "127.0.0.4")
	bodies := make([]string, 12)
	for i := range bodies {
		bodies[i] = fmt.Sprintf(`{"email":"s%d@example.com","password":"correct horse battery"}`, i)
	}
	if counts := parallel(t, c, "/v1/auth/signup", bodies); counts[201] != 10 || counts[429] != 2 {
		t.Errorf("12 sign-ups from one address: %v, want 10×201 2×429", counts)
	}
	status, _, hdr := c.raw("POST", "/v1/auth/signup", "application/json", strings.NewReader(`{"email":"late@example.com","password":"correct horse battery"}`))
	if status != 429 || hdr.Get("Retry-After") == "" {
		t.Errorf("13th sign-up: %d retry-after %q", status, hdr.Get("Retry-After"))
	}
	if status, body := newCall(t, env).do("POST", "/v1/auth/signup", `{"email":"other@example.com","password":"correct horse battery"}`); status != 201 {
		t.Errorf("sign-up from another address: %d %v", status, body)
	}
}

// A sign-up for a taken email (409) is, for the caller's address, a failed login: it
// counts against the same budget (30 in 15 minutes), so finding out which emails have
// accounts costs the same through sign-up as through login, and the two together end
// in 429. Sign-ups that made an account give their count back.
func TestSignupConflictsShareTheLoginBudget(t *testing.T) {
	env := servertest.New(t)
	owner := newCall(t, env)
	signup(owner, "ann@example.com")
	prober := from(t, env, "127.0.0.6")
	signup(prober, "mine@example.com") // a success: not counted against the budget
	// 22 failed logins, in batches so no guess waits long for a hashing slot.
	counts := map[int]int{}
	for b := 0; b < 22; b += 11 {
		for status, n := range parallel(t, prober, "/v1/auth/login", wrongLogins(11, func(i int) string { return fmt.Sprintf("p%d@example.com", b+i) })) {
			counts[status] += n
		}
	}
	if counts[401] != 22 {
		t.Fatalf("22 failed logins: %v", counts)
	}
	// 8 sign-ups of a taken email: 409, saying no more than that.
	for i := range 8 {
		status, body := prober.do("POST", "/v1/auth/signup", `{"email":"ann@example.com","password":"correct horse battery"}`)
		msg, _ := body["error"].(map[string]any)["message"].(string)
		if status != 409 || msg != "conflict: cannot sign up with this email" {
			t.Fatalf("sign-up %d of a taken email: %d %v", i, status, body)
		}
	}
	// The budget is spent: the next sign-up (the address's 10th, within the sign-up
	// limit, of an email nobody has) and a login with the right password are refused.
	status, raw, hdr := prober.raw("POST", "/v1/auth/signup", "application/json", strings.NewReader(`{"email":"fresh@example.com","password":"correct horse battery"}`))
	if status != 429 || hdr.Get("Retry-After") == "" || !strings.Contains(string(raw), "login attempts from your address") {
		t.Errorf("sign-up after 30 failures: %d %s retry-after %q", status, raw, hdr.Get("Retry-After"))
	}
	if status, body := prober.do("POST", "/v1/auth/login", `{"email":"ann@example.com","password":"correct horse battery"}`); status != 429 {
		t.Errorf("login after 30 failures: %d %v", status, body)
	}
	if status, body := owner.do("POST", "/v1/auth/login", `{"email":"ann@example.com","password":"correct horse battery"}`); status != 200 {
		t.Errorf("login from another address: %d %v", status, body)
	}
}
