package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/wrennhq/wrenn/internal/cliconfig"
)

// authAPI is a control plane with one user (ann@example.com, password pw) and one
// API key (wrn_good…). It records which credential each request carried.
type authAPI struct {
	url  string
	mu   sync.Mutex
	seen []string // "token:T", "key:K" or "none", per request
}

const goodKey = "wrn_good0123456789abcdef0123456789"

func newAuthAPI(t *testing.T) *authAPI {
	t.Helper()
	a := &authAPI{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred := "none"
		if k := r.Header.Get("X-API-Key"); k != "" {
			cred = "key:" + k
		} else if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			cred = "token:" + tok
		}
		a.mu.Lock()
		a.seen = append(a.seen, r.Method+" "+r.URL.Path+" "+cred)
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fail := func(status int, msg string) {
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": "unauthorized", "message": msg}})
		}
		switch {
		case r.URL.Path == "/v1/auth/login":
			var body map[string]string
			json.NewDecoder(r.Body).Decode(&body)
			if body["email"] != "ann@example.com" || body["password"] != "pw" {
				fail(http.StatusUnauthorized, "unauthorized: wrong email or password")
				return
			}
			json.NewEncoder(w).Encode(map[string]any{"token": "tok-ann", "user_id": "u1", "team_id": "t1", "role": "owner"})
		case cred != "key:"+goodKey && cred != "token:tok-ann":
			fail(http.StatusUnauthorized, "unauthorized: bad credentials")
		case r.URL.Path == "/v1/me":
			json.NewEncoder(w).Encode(map[string]any{"user": map[string]any{"id": "u1", "email": "ann@example.com", "name": "Ann"},
				"current_team_id": "t1", "teams": []any{map[string]any{"id": "t1", "name": "Ann's team", "role": "owner"}}})
		case r.URL.Path == "/v1/sandboxes":
			json.NewEncoder(w).Encode(map[string]any{"sandboxes": []any{}})
		}
	}))
	t.Cleanup(srv.Close)
	a.url = srv.URL
	return a
}

func (a *authAPI) take() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.seen
	a.seen = nil
	return s
}

// login saves a profile (0600) and makes it current; later commands use it with
// nothing exported; logout forgets it.
func TestLoginProfiles(t *testing.T) {
	api := newAuthAPI(t)
	ctx := context.Background()
	env := map[string]string{"XDG_CONFIG_HOME": t.TempDir()}
	cli := func(stdin string, args ...string) (int, string, string) {
		a, stdout, stderr := newTestApp(t, env, stdin)
		code := run(ctx, a, args)
		return code, stdout.String(), stderr.String()
	}
	path := filepath.Join(env["XDG_CONFIG_HOME"], "wrenn", "config")

	// A wrong key is refused before it is saved.
	if code, _, stderr := cli("", "login", "--url", api.url, "--api-key", "wrn_bad"); code != 1 || !strings.Contains(stderr, "bad credentials") {
		t.Errorf("login with a bad key: exit %d, %q", code, stderr)
	}
	if _, err := os.Stat(path); err == nil {
		t.Error("a bad key was saved")
	}
	if code, out, stderr := cli("", "login", "--profile", "ci", "--url", api.url, "--api-key", goodKey); code != 0 || !strings.Contains(out, `profile "ci" (current)`) {
		t.Fatalf("login --api-key: exit %d, %q %q", code, out, stderr)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v %v", st, err)
	}
	// The password from stdin (not a terminal), into the profile "prod".
	if code, _, stderr := cli("pw\n", "login", "--profile", "prod", "--url", api.url, "--email", "ann@example.com"); code != 0 {
		t.Fatalf("login --email: exit %d, %q", code, stderr)
	}
	if code, _, stderr := cli("wrong\n", "login", "--profile", "x", "--url", api.url, "--email", "ann@example.com"); code != 1 || !strings.Contains(stderr, "wrong email or password") {
		t.Errorf("login with a wrong password: exit %d, %q", code, stderr)
	}
	api.take()

	// prod is current now: its token is used.
	if code, out, _ := cli("", "whoami"); code != 0 || !strings.Contains(out, "user:     ann@example.com (Ann)") || !strings.Contains(out, "team:     Ann's team (t1), owner") || !strings.Contains(out, "profile:  prod (current)") {
		t.Errorf("whoami: exit %d\n%s", code, out)
	}
	// WRENN_PROFILE and --profile choose another; --profile wins.
	env["WRENN_PROFILE"] = "ci"
	if code, out, _ := cli("", "whoami"); code != 0 || !strings.Contains(out, "profile:  ci (from WRENN_PROFILE)") || !strings.Contains(out, "team API key wrn_good0123…") {
		t.Errorf("whoami with WRENN_PROFILE=ci: exit %d\n%s", code, out)
	}
	if code, out, _ := cli("", "whoami", "--profile", "prod", "-o", "json"); code != 0 || !strings.Contains(out, `"profile_from": "--profile"`) || !strings.Contains(out, `"email": "ann@example.com"`) {
		t.Errorf("whoami --profile prod: exit %d\n%s", code, out)
	}
	// WRENN_API_KEY beats the profile's login; --api-key beats WRENN_API_KEY.
	env["WRENN_API_KEY"] = "wrn_env"
	cli("", "sandbox", "ls", "--profile", "prod")
	cli("", "sandbox", "ls", "--profile", "prod", "--api-key", goodKey)
	delete(env, "WRENN_API_KEY")
	cli("", "sandbox", "ls")
	want := []string{
		"GET /v1/me token:tok-ann", "GET /v1/sandboxes key:" + goodKey, "GET /v1/me token:tok-ann",
		"GET /v1/sandboxes key:wrn_env", "GET /v1/sandboxes key:" + goodKey, "GET /v1/sandboxes key:" + goodKey,
	}
	if got := api.take(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("credentials sent:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A profile that does not exist is an error, not a silent default.
	if code, _, stderr := cli("", "sandbox", "ls", "--profile", "nope"); code != 1 || !strings.Contains(stderr, `no profile "nope"`) {
		t.Errorf("--profile nope: exit %d, %q", code, stderr)
	}
	if code, out, _ := cli("", "profile", "ls"); code != 0 || !strings.Contains(out, "*        prod  "+api.url) || !strings.Contains(out, "         ci    "+api.url) {
		t.Errorf("profile ls: exit %d\n%s", code, out)
	}
	// logout removes the chosen profile (WRENN_PROFILE=ci).
	if code, _, stderr := cli("", "logout"); code != 0 {
		t.Errorf("logout: exit %d %q", code, stderr)
	}
	f, err := cliconfig.Load(path)
	if err != nil || f.Profiles["ci"].APIKey != "" || f.Profiles["prod"].Token != "tok-ann" || f.Current != "prod" {
		t.Errorf("after logout of ci: %+v %v", f, err)
	}
	delete(env, "WRENN_PROFILE")
	cli("", "logout")
	if code, _, stderr := cli("", "sandbox", "ls"); code != 1 || !strings.Contains(stderr, "not logged in") {
		t.Errorf("after logging out of everything: exit %d, %q", code, stderr)
	}
}
