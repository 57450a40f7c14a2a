package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/wrennhq/wrenn/internal/server/auth"
	"github.com/wrennhq/wrenn/internal/server/auth/oauth"
	"github.com/wrennhq/wrenn/internal/server/servertest"
)

// browser is a signed-in browser: its session and CSRF cookies as the server set
// them, and the csrf_token of the answer.
type browser struct {
	session, csrfCookie *http.Cookie
	csrf                string
	body                map[string]any
}

// cookies is the Set-Cookie of an answer by name.
func cookies(h http.Header) map[string]*http.Cookie {
	out := map[string]*http.Cookie{}
	for _, c := range (&http.Response{Header: h}).Cookies() {
		out[c.Name] = c
	}
	return out
}

// signInBrowser is POST path (a browser-session sign-in) with body, wanting status.
func signInBrowser(t *testing.T, c call, path, body string, status int) browser {
	t.Helper()
	got, raw, h := c.raw("POST", path, "application/json", strings.NewReader(body))
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	if got != status {
		t.Fatalf("POST %s: %d %s", path, got, raw)
	}
	set := cookies(h)
	b := browser{session: set[auth.SessionCookie], csrfCookie: set[auth.CSRFCookie], body: out}
	if b.session == nil {
		b.session = set[auth.SecureSessionCookie]
	}
	b.csrf, _ = out["csrf_token"].(string)
	if b.session == nil || b.csrfCookie == nil || b.csrf == "" {
		t.Fatalf("POST %s: cookies %v, body %s", path, set, raw)
	}
	return b
}

// as is c sending the browser's cookies, with X-CSRF-Token csrf ("" for none) and
// more headers (name, value pairs).
func (b browser) as(c call, csrf string, more ...string) call {
	h := http.Header{}
	h.Add("Cookie", b.session.Name+"="+b.session.Value+"; "+b.csrfCookie.Name+"="+b.csrfCookie.Value)
	if csrf != "" {
		h.Set(auth.CSRFHeader, csrf)
	}
	for i := 0; i+1 < len(more); i += 2 {
		h.Set(more[i], more[i+1])
	}
	c.header = h
	return c
}

const password = "correct horse battery"

func TestBrowserSessionCookies(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	signup(anon, "ann@example.com")
	b := signInBrowser(t, anon, "/v1/auth/session", `{"email":"ann@example.com","password":"`+password+`"}`, 200)
	s, c := b.session, b.csrfCookie
	if s.Name != auth.SessionCookie || !s.HttpOnly || s.SameSite != http.SameSiteLaxMode || s.Path != "/" || s.Secure || s.Domain != "" || s.MaxAge != int(auth.SessionTTL.Seconds()) {
		t.Errorf("session cookie %+v", s)
	}
	if c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure || c.Value != b.csrf {
		t.Errorf("csrf cookie %+v, csrf_token %q", c, b.csrf)
	}
	if u, _ := b.body["user"].(map[string]any); u["email"] != "ann@example.com" || b.body["role"] != "owner" || b.body["team_id"] == "" {
		t.Errorf("answer %v", b.body)
	}
	// A cookie GET works; GET /v1/auth/session gives the CSRF token back.
	if status, me := b.as(anon, "").do("GET", "/v1/me", ""); status != 200 || me["user"].(map[string]any)["email"] != "ann@example.com" {
		t.Errorf("GET /v1/me with the cookie: %d %v", status, me)
	}
	if status, got := b.as(anon, "").do("GET", "/v1/auth/session", ""); status != 200 || got["csrf_token"] != b.csrf || got["team_id"] != b.body["team_id"] {
		t.Errorf("GET /v1/auth/session: %d %v", status, got)
	}
	// Sign-up for a browser: 201 and the same cookies.
	bob := signInBrowser(t, anon, "/v1/auth/session/signup", `{"email":"bob@example.com","name":"Bob","password":"`+password+`"}`, 201)
	if bob.body["role"] != "owner" || bob.csrf == b.csrf {
		t.Errorf("signup: %v", bob.body)
	}
	// Only the SHA-256 of the secret is stored.
	var n int
	if err := env.DB.QueryRow(context.Background(), `SELECT count(*) FROM sessions WHERE token_hash = $1`, auth.HashSessionSecret(s.Value)).Scan(&n); err != nil || n != 1 {
		t.Errorf("sessions by hash: %d %v", n, err)
	}
	if err := env.DB.QueryRow(context.Background(), `SELECT count(*) FROM sessions WHERE position(convert_to($1, 'UTF8') in token_hash) > 0`, s.Value).Scan(&n); err != nil || n != 0 {
		t.Errorf("the secret itself is stored: %d %v", n, err)
	}
	// A sign-in posted by another site's page is refused (login CSRF).
	foreign := anon.with("Origin", "https://evil.example")
	if status, _, _ := foreign.raw("POST", "/v1/auth/session", "application/json", strings.NewReader(`{"email":"ann@example.com","password":"`+password+`"}`)); status != 403 {
		t.Errorf("sign-in from another origin: %d", status)
	}
}

// Behind https (WRENN_PUBLIC_URL https, or TLS on the listener) the session cookie
// is __Host- and Secure, and the plain name is not accepted.
func TestBrowserSessionSecureCookies(t *testing.T) {
	env := servertest.NewWithPublicURL(t, "https://wrenn.example")
	anon := newCall(t, env)
	signup(anon, "ann@example.com")
	b := signInBrowser(t, anon, "/v1/auth/session", `{"email":"ann@example.com","password":"`+password+`"}`, 200)
	if b.session.Name != auth.SecureSessionCookie || !b.session.Secure || !b.session.HttpOnly || b.session.Path != "/" || b.session.Domain != "" {
		t.Errorf("session cookie %+v", b.session)
	}
	if b.csrfCookie.Name != auth.CSRFCookie || !b.csrfCookie.Secure || b.csrfCookie.HttpOnly {
		t.Errorf("csrf cookie %+v", b.csrfCookie)
	}
	if status, _ := b.as(anon, "").do("GET", "/v1/me", ""); status != 200 {
		t.Errorf("GET /v1/me with __Host-: %d", status)
	}
	plain := b
	plain.session = &http.Cookie{Name: auth.SessionCookie, Value: b.session.Value}
	if status, _ := plain.as(anon, "").do("GET", "/v1/me", ""); status != 401 {
		t.Errorf("GET /v1/me with the plain name under https: %d", status)
	}
	// The public URL's origin is this server's.
	if status, _ := b.as(anon, b.csrf, "Origin", "https://wrenn.example").do("POST", "/v1/api-keys", `{"name":"k"}`); status != 201 {
		t.Errorf("POST from the public origin: %d", status)
	}
	if status, _ := b.as(anon, b.csrf, "Origin", "http://wrenn.example").do("POST", "/v1/api-keys", `{"name":"k"}`); status != 403 {
		t.Errorf("POST from the http origin of an https server: %d", status)
	}
}

func TestBrowserSessionCSRF(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	signup(anon, "ann@example.com")
	login := `{"email":"ann@example.com","password":"` + password + `"}`
	b := signInBrowser(t, anon, "/v1/auth/session", login, 200)
	other := signInBrowser(t, anon, "/v1/auth/session", login, 200) // ann's second browser
	post := func(c call) (int, map[string]any) { return c.do("POST", "/v1/api-keys", `{"name":"k"}`) }
	wantCSRF := func(what string, c call) {
		t.Helper()
		if status, body := post(c); status != 403 || errCode(body) != "csrf" {
			t.Errorf("%s: %d %v, want 403 csrf", what, status, body)
		}
	}
	wantCSRF("no X-CSRF-Token", b.as(anon, ""))
	wantCSRF("a wrong one", b.as(anon, alterFirst(b.csrf)))
	wantCSRF("another session's (header)", b.as(anon, other.csrf))
	// Another session's token in both the header and the cookie (double submit
	// alone would pass): bound to its own session, so refused.
	swapped := b
	swapped.csrfCookie = other.csrfCookie
	wantCSRF("another session's (header and cookie)", swapped.as(anon, other.csrf))
	// The right token in the header, but no matching cookie.
	noCookie := b
	noCookie.csrfCookie = &http.Cookie{Name: "unrelated", Value: "1"}
	wantCSRF("no csrf cookie", noCookie.as(anon, b.csrf))
	wantCSRF("another origin", b.as(anon, b.csrf, "Origin", "https://evil.example"))
	wantCSRF("a sandbox's origin", b.as(anon, b.csrf, "Origin", "http://3000-sb0123456789abcdefgh."+servertest.Domain))
	wantCSRF("Origin null", b.as(anon, b.csrf, "Origin", "null"))
	if status, body := post(b.as(anon, b.csrf)); status != 201 {
		t.Errorf("with the token: %d %v", status, body)
	}
	if status, body := post(b.as(anon, b.csrf, "Origin", env.URL)); status != 201 {
		t.Errorf("with the token from this origin: %d %v", status, body)
	}
	// A planted second wrenn_csrf cookie does not lock the dashboard out.
	planted := b.as(anon, b.csrf)
	planted.header.Set("Cookie", auth.CSRFCookie+"=planted; "+planted.header.Get("Cookie"))
	if status, body := post(planted); status != 201 {
		t.Errorf("with a planted csrf cookie too: %d %v", status, body)
	}
	// Bearer tokens need no CSRF token, cookie or not.
	tok := signup(anon, "bob@example.com")["token"].(string)
	if status, body := post(b.as(anon, "", "Authorization", "Bearer "+tok)); status != 201 {
		t.Errorf("bearer beside a cookie: %d %v", status, body)
	}
}

func TestBrowserSessionSignOutAndExpiry(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	signup(anon, "ann@example.com")
	login := `{"email":"ann@example.com","password":"` + password + `"}`
	b := signInBrowser(t, anon, "/v1/auth/session", login, 200)
	if status, body := b.as(anon, "").do("DELETE", "/v1/auth/session", ""); status != 403 || errCode(body) != "csrf" {
		t.Errorf("sign-out without the token: %d %v", status, body)
	}
	status, _, h := b.as(anon, b.csrf).raw("DELETE", "/v1/auth/session", "", nil)
	if set := cookies(h); status != 204 || set[auth.SessionCookie] == nil || set[auth.SessionCookie].MaxAge >= 0 || set[auth.CSRFCookie] == nil || set[auth.CSRFCookie].MaxAge >= 0 {
		t.Errorf("sign-out: %d, cookies %v", status, set)
	}
	status, raw, h := b.as(anon, "").raw("GET", "/v1/me", "", nil)
	if c := cookies(h)[auth.SessionCookie]; status != 401 || !strings.Contains(string(raw), "signed out") || c == nil || c.MaxAge >= 0 {
		t.Errorf("the signed-out cookie: %d %s (clears: %v)", status, raw, c)
	}
	if status, _ := b.as(anon, b.csrf).do("DELETE", "/v1/auth/session", ""); status != 401 {
		t.Errorf("second sign-out: %d", status)
	}
	// Both are in the audit log.
	var actions []string
	rows, err := env.DB.Query(context.Background(), `SELECT action FROM audit_logs WHERE action IN ('user.login','user.logout') ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var a string
		_ = rows.Scan(&a)
		actions = append(actions, a)
	}
	if strings.Join(actions, ",") != "user.login,user.logout" {
		t.Errorf("audit: %v", actions)
	}
	// Expired (7 days) and idle (24 h) sessions are dead.
	for what, sql := range map[string]string{
		"expired": `UPDATE sessions SET expires_at = now() - interval '1 second' WHERE token_hash = $1`,
		"idle":    `UPDATE sessions SET last_seen_at = now() - interval '25 hours' WHERE token_hash = $1`,
	} {
		s := signInBrowser(t, anon, "/v1/auth/session", login, 200)
		if _, err := env.DB.Exec(context.Background(), sql, auth.HashSessionSecret(s.session.Value)); err != nil {
			t.Fatal(err)
		}
		if status, body := s.as(anon, "").do("GET", "/v1/me", ""); status != 401 || errCode(body) != "unauthorized" {
			t.Errorf("%s session: %d %v", what, status, body)
		}
	}
	// Garbage is not a session.
	junk := browser{session: &http.Cookie{Name: auth.SessionCookie, Value: "junk"}, csrfCookie: &http.Cookie{Name: auth.CSRFCookie, Value: "x"}}
	if status, _ := junk.as(anon, "").do("GET", "/v1/me", ""); status != 401 {
		t.Errorf("junk cookie: %d", status)
	}
}

// A session works only while its user is in its team, as a token does; it can still
// move to a team they are in, and sign out.
func TestBrowserSessionMembershipAndSwitchTeam(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	ann := signup(anon, "ann@example.com")
	annTeam := ann["team_id"].(string)
	bob := signup(anon, "bob@example.com")
	if status, body := anon.bearer(ann["token"].(string)).do("POST", "/v1/teams/"+annTeam+"/members", `{"email":"bob@example.com"}`); status != 201 {
		t.Fatalf("add bob: %d %v", status, body)
	}
	b := signInBrowser(t, anon, "/v1/auth/session", `{"email":"bob@example.com","password":"`+password+`"}`, 200)
	if status, _ := b.as(anon, "").do("POST", "/v1/auth/switch-team", `{"team_id":"`+annTeam+`"}`); status != 403 {
		t.Errorf("switch-team without the token: %d", status)
	}
	status, got := b.as(anon, b.csrf).do("POST", "/v1/auth/switch-team", `{"team_id":"`+annTeam+`"}`)
	if status != 200 || got["team_id"] != annTeam || got["role"] != "member" || got["csrf_token"] != b.csrf || got["token"] != nil {
		t.Fatalf("switch-team: %d %v", status, got)
	}
	if status, me := b.as(anon, "").do("GET", "/v1/me", ""); status != 200 || me["current_team_id"] != annTeam {
		t.Errorf("after switch-team: %d %v", status, me)
	}
	if status, body := anon.bearer(ann["token"].(string)).do("DELETE", "/v1/teams/"+annTeam+"/members/"+bob["user_id"].(string), ""); status != 204 {
		t.Fatalf("remove bob: %d %v", status, body)
	}
	if status, body := b.as(anon, "").do("GET", "/v1/me", ""); status != 401 || !strings.Contains(body["error"].(map[string]any)["message"].(string), "no longer a member") {
		t.Errorf("removed member's session: %d %v", status, body)
	}
	status, got = b.as(anon, b.csrf).do("POST", "/v1/auth/switch-team", `{"team_id":"`+bob["team_id"].(string)+`"}`)
	if status != 200 || got["team_id"] != bob["team_id"] || got["role"] != "owner" {
		t.Errorf("switch back from a team left: %d %v", status, got)
	}
	if status, _ := b.as(anon, "").do("GET", "/v1/me", ""); status != 200 {
		t.Errorf("after switching back: %d", status)
	}
}

// Wrong passwords are refused and throttled exactly as POST /v1/auth/login's are
// (the same counters: one path).
func TestBrowserSessionWrongPasswordThrottled(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	signup(anon, "ann@example.com")
	wrong := `{"email":"ann@example.com","password":"wrong password!"}`
	statuses := map[int]int{}
	for range 11 {
		status, _ := anon.do("POST", "/v1/auth/session", wrong)
		statuses[status]++
	}
	if statuses[401] != 10 || statuses[429] != 1 {
		t.Errorf("11 wrong passwords: %v, want 10 × 401 then 429", statuses)
	}
	// The same budget as /v1/auth/login.
	if status, _ := anon.do("POST", "/v1/auth/login", `{"email":"ann@example.com","password":"`+password+`"}`); status != 429 {
		t.Errorf("login after the session's failures: %d, want 429", status)
	}
}

// The dashboard's terminal: a WebSocket opened with the cookie must come from this
// server's own pages.
func TestBrowserSessionWebSocketOrigin(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	signup(anon, "ann@example.com")
	b := signInBrowser(t, anon, "/v1/auth/session", `{"email":"ann@example.com","password":"`+password+`"}`, 200)
	path := "/v1/sandboxes/sb0123456789abcdefgh/exec/stream"
	ws := []string{"Upgrade", "websocket", "Connection", "Upgrade", "Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}
	for _, origin := range []string{"https://evil.example", "http://3000-sb0123456789abcdefgh." + servertest.Domain, ""} {
		if status, body := b.as(anon, "", append(ws, "Origin", origin)...).do("GET", path, ""); status != 403 || errCode(body) != "csrf" {
			t.Errorf("WebSocket with Origin %q: %d %v", origin, status, body)
		}
	}
	// From this origin it gets past authentication (to the unknown sandbox).
	if status, body := b.as(anon, "", append(ws, "Origin", env.URL)...).do("GET", path, ""); status != 404 {
		t.Errorf("WebSocket from this origin: %d %v", status, body)
	}
}

// GitHub sign-in for the dashboard (the default mode): a session cookie and 303 to
// next, no credential in the URL.
func TestOAuthBrowserSession(t *testing.T) {
	s := newGitHubStandIn(t, false)
	a := s.get(s.api, s.env.URL+"/v1/auth/oauth/github?next="+url.QueryEscape("/sandboxes"), nil)
	to := a.location(t)
	cookie := a.stateCookie()
	s.gh.SignIn(verified(7001, "ivy", "ivy@example.com"))
	back := s.get(s.browser, to.String(), nil).location(t)
	done := s.get(s.api, back.String(), cookie)
	set := cookies(done.header)
	if done.status != http.StatusSeeOther || done.header.Get("Location") != s.env.URL+"/sandboxes" || set[auth.SessionCookie] == nil || set[auth.CSRFCookie] == nil {
		t.Fatalf("callback: %d Location %q cookies %v", done.status, done.header.Get("Location"), set)
	}
	if strings.Contains(done.header.Get("Location"), "#") {
		t.Errorf("a credential in the URL: %s", done.header.Get("Location"))
	}
	b := browser{session: set[auth.SessionCookie], csrfCookie: set[auth.CSRFCookie], csrf: set[auth.CSRFCookie].Value}
	if status, me := b.as(newCall(t, s.env), "").do("GET", "/v1/me", ""); status != 200 || me["user"].(map[string]any)["email"] != "ivy@example.com" {
		t.Errorf("GET /v1/me with the sign-in's cookie: %d %v", status, me)
	}
	// next never leaves the server: refused where the sign-in starts.
	for _, bad := range []string{"//evil.com", "/\\evil.com", "https://evil.com/"} {
		a := s.get(s.api, s.env.URL+"/v1/auth/oauth/github?next="+url.QueryEscape(bad), nil)
		s.wantError("next="+bad, a, http.StatusBadRequest, "invalid_request", "next must be a path on this server")
	}
	a = s.get(s.api, s.env.URL+"/v1/auth/oauth/github?mode=jwt", nil)
	s.wantError("mode=jwt", a, http.StatusBadRequest, "invalid_request", "mode must be")
	if a.stateCookie() != nil || oauth.ModeCookie != "" {
		t.Errorf("a refused start set a state cookie")
	}
}

// alterFirst returns s with its first character changed (never to itself: a
// fixed replacement would equal a token that happens to start with it).
func alterFirst(s string) string {
	if s[0] == 'A' {
		return "B" + s[1:]
	}
	return "A" + s[1:]
}
