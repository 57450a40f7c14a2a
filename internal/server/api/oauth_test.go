package api_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/openapitest"
	"github.com/wrennhq/wrenn/internal/server/accounts"
	"github.com/wrennhq/wrenn/internal/server/auth/oauth"
	"github.com/wrennhq/wrenn/internal/server/auth/oauth/oauthtest"
	"github.com/wrennhq/wrenn/internal/server/servertest"
)

// githubStandIn is a control plane signing in through a stand-in for GitHub (GitHub
// itself is unreachable from tests), with a settable clock for the sign-in state.
type githubStandIn struct {
	t     *testing.T
	env   *servertest.Env
	gh    *oauthtest.GitHub
	clock *clock
	// api talks to the control plane, checked against api/openapi.yaml; browser
	// talks to the stand-in. Neither follows redirects: the tests follow them.
	api, browser *http.Client
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newGitHubStandIn(t *testing.T, signupClosed bool) *githubStandIn {
	gh := oauthtest.NewGitHub(t)
	clk := &clock{t: time.Now()}
	env := servertest.NewWithOAuth(t, servertest.OAuth{Providers: []oauth.Provider{gh.Provider()}, Now: clk.now, SignupClosed: signupClosed})
	noFollow := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &githubStandIn{t: t, env: env, gh: gh, clock: clk,
		api:     &http.Client{Transport: openapitest.Transport(t, http.DefaultTransport), CheckRedirect: noFollow},
		browser: &http.Client{CheckRedirect: noFollow}}
}

// getReply is a response to a GET, read whole.
type getReply struct {
	status int
	header http.Header
	body   string
}

func (a getReply) location(t *testing.T) *url.URL {
	t.Helper()
	u, err := url.Parse(a.header.Get("Location"))
	if err != nil || a.status != http.StatusFound {
		t.Fatalf("want a 302, got %d %q (Location %q)", a.status, a.body, a.header.Get("Location"))
	}
	return u
}

// stateCookie is the state cookie a response set.
func (a getReply) stateCookie() *http.Cookie {
	for _, c := range (&http.Response{Header: a.header}).Cookies() {
		if c.Name == oauth.CookieName {
			return c
		}
	}
	return nil
}

func (s *githubStandIn) get(client *http.Client, u string, cookie *http.Cookie) getReply {
	s.t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	if cookie != nil {
		req.AddCookie(&http.Cookie{Name: cookie.Name, Value: cookie.Value})
	}
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return getReply{resp.StatusCode, resp.Header, string(b)}
}

// flow is one browser's sign-in, up to the callback.
type flow struct {
	cookie   *http.Cookie
	nonce    string
	callback string // the URL the stand-in sent the browser back to
}

// begin starts a sign-in as u and follows it to GitHub and back to the callback,
// which it does not call.
func (s *githubStandIn) begin(u oauthtest.GitHubUser, next string) flow {
	s.t.Helper()
	// The token mode: these tests read the session from the fragment (session_test.go
	// covers the dashboard's cookie mode).
	path := "/v1/auth/oauth/github?mode=token"
	if next != "" {
		path += "&next=" + url.QueryEscape(next)
	}
	a := s.get(s.api, s.env.URL+path, nil)
	to := a.location(s.t)
	cookie := a.stateCookie()
	if cookie == nil || !strings.HasPrefix(to.String(), s.gh.URL+"/login/oauth/authorize?") {
		s.t.Fatalf("start: %d, Location %s, cookie %v", a.status, to, cookie)
	}
	s.gh.SignIn(u)
	back := s.get(s.browser, to.String(), nil).location(s.t)
	if !strings.HasPrefix(back.String(), s.env.URL+"/v1/auth/oauth/github/callback?") {
		s.t.Fatalf("the stand-in sent the browser to %s", back)
	}
	return flow{cookie: cookie, nonce: to.Query().Get("state"), callback: back.String()}
}

// finish calls the callback with the flow's cookie.
func (s *githubStandIn) finish(f flow) getReply {
	s.t.Helper()
	return s.get(s.api, f.callback, f.cookie)
}

// session is what a successful callback returns: where to, and the fragment's values.
type session struct {
	to                       string // the URL without the fragment
	token, expiresAt, teamID string
}

func (s *githubStandIn) signedIn(a getReply) session {
	s.t.Helper()
	u := a.location(s.t)
	frag, err := url.ParseQuery(u.EscapedFragment())
	if err != nil || frag.Get("token") == "" || frag.Get("team_id") == "" {
		s.t.Fatalf("callback: %d %s (Location %s)", a.status, a.body, u)
	}
	if _, err := time.Parse(time.RFC3339, frag.Get("expires_at")); err != nil {
		s.t.Errorf("expires_at %q: %v", frag.Get("expires_at"), err)
	}
	u.Fragment, u.RawFragment = "", ""
	return session{to: u.String(), token: frag.Get("token"), expiresAt: frag.Get("expires_at"), teamID: frag.Get("team_id")}
}

// me is GET /v1/me with a session's token.
func (s *githubStandIn) me(sess session) map[string]any {
	s.t.Helper()
	status, me := newCall(s.t, s.env).bearer(sess.token).do("GET", "/v1/me", "")
	if status != 200 {
		s.t.Fatalf("GET /v1/me with the sign-in's token: %d %v", status, me)
	}
	return me["user"].(map[string]any)
}

// count is a number from the database.
func (s *githubStandIn) count(sql string, args ...any) int {
	s.t.Helper()
	var n int
	if err := s.env.DB.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		s.t.Fatal(err)
	}
	return n
}

// audit is the user's audit entries as "action provider", oldest first.
func (s *githubStandIn) audit(userID string) []string {
	s.t.Helper()
	rows, err := s.env.DB.Query(context.Background(),
		`SELECT action || ' ' || coalesce(metadata->>'provider', '-') FROM audit_logs WHERE actor_user_id = $1 ORDER BY id`, userID)
	if err != nil {
		s.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var e string
		if err := rows.Scan(&e); err != nil {
			s.t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func (s *githubStandIn) wantError(what string, a getReply, status int, code, msg string) {
	s.t.Helper()
	if a.status != status || !strings.Contains(a.body, `"code":"`+code+`"`) || !strings.Contains(a.body, msg) {
		s.t.Errorf("%s: %d %s, want %d %s saying %q", what, a.status, a.body, status, code, msg)
	}
}

func verified(id int64, login, email string) oauthtest.GitHubUser {
	return oauthtest.GitHubUser{ID: id, Login: login, Name: strings.ToUpper(login[:1]) + login[1:],
		Emails: []oauthtest.GitHubEmail{{Email: email, Primary: true, Verified: true}}}
}

// A new GitHub account signs up end to end; signing in again is the same user.
func TestOAuthNewUser(t *testing.T) {
	s := newGitHubStandIn(t, false)
	ann := verified(1001, "ann", "Ann@Example.com")

	f := s.begin(ann, "/dashboard?tab=keys")
	if c := f.cookie; !c.HttpOnly || c.Secure || c.SameSite != http.SameSiteLaxMode || c.Path != "/v1/auth/oauth/github" || c.MaxAge != 600 {
		t.Errorf("state cookie %+v", c)
	}
	a := s.finish(f)
	if c := a.stateCookie(); c == nil || c.MaxAge >= 0 {
		t.Errorf("the callback does not clear the state cookie: %v", a.header.Values("Set-Cookie"))
	}
	first := s.signedIn(a)
	if first.to != s.env.URL+"/dashboard?tab=keys" {
		t.Errorf("returned to %s", first.to)
	}
	user := s.me(first)
	if user["email"] != "ann@example.com" || user["name"] != "Ann" {
		t.Errorf("the new user: %v", user)
	}
	userID := user["id"].(string)
	if n := s.count(`SELECT count(*) FROM users WHERE id = $1 AND password_hash IS NULL`, userID); n != 1 {
		t.Errorf("the new user has a password (or is missing): %d", n)
	}
	if n := s.count(`SELECT count(*) FROM oauth_identities WHERE provider = 'github' AND subject = '1001' AND user_id = $1`, userID); n != 1 {
		t.Errorf("identities of ann: %d", n)
	}
	// Her team is her own, as a password sign-up's is.
	if n := s.count(`SELECT count(*) FROM users_teams WHERE user_id = $1 AND team_id = $2 AND role = 'owner' AND is_default`, userID, first.teamID); n != 1 {
		t.Errorf("ann's team: %d", n)
	}
	// A password login cannot get into an account that has none.
	if status, body := newCall(t, s.env).do("POST", "/v1/auth/login", `{"email":"ann@example.com","password":"correct horse battery"}`); status != 401 {
		t.Errorf("password login to a GitHub-only account: %d %v", status, body)
	}

	again := s.signedIn(s.finish(s.begin(ann, "")))
	if again.to != s.env.URL+"/" || s.me(again)["id"] != userID || again.teamID != first.teamID {
		t.Errorf("second sign-in: %+v", again)
	}
	if n := s.count(`SELECT count(*) FROM users`); n != 1 {
		t.Errorf("%d users after two sign-ins of one account", n)
	}
	if got := strings.Join(s.audit(userID), ", "); got != "user.signup github, user.login github" {
		t.Errorf("audit: %s", got)
	}

	// Declined at GitHub: back to the page, which is told so.
	f = s.begin(ann, "/x")
	a = s.get(s.api, s.env.URL+"/v1/auth/oauth/github/callback?error=access_denied&error_description=The+user+has+denied&state="+f.nonce, f.cookie)
	if to := a.location(t); to.String() != s.env.URL+"/x#error=access_denied" {
		t.Errorf("declined: %s", to)
	}

	// A code GitHub refuses is GitHub's failure.
	f = s.begin(ann, "")
	a = s.get(s.api, s.env.URL+"/v1/auth/oauth/github/callback?code=forged&state="+f.nonce, f.cookie)
	s.wantError("a forged code", a, http.StatusBadGateway, "bad_gateway", "github did not confirm")
}

// Only configured providers exist.
func TestOAuthUnknownProvider(t *testing.T) {
	s := newGitHubStandIn(t, false)
	for _, path := range []string{"/v1/auth/oauth/gitlab", "/v1/auth/oauth/gitlab/callback?code=x&state=y"} {
		s.wantError(path, s.get(s.api, s.env.URL+path, nil), http.StatusNotFound, "not_found", "no sign-in provider gitlab")
	}
	// A server without providers has none.
	plain := servertest.New(t)
	s.wantError("no providers", s.get(s.api, plain.URL+"/v1/auth/oauth/github", nil), http.StatusNotFound, "not_found", "github")
}

// A GitHub account joins an existing account by email only when GitHub has verified it.
func TestOAuthLinksVerifiedEmailOnly(t *testing.T) {
	s := newGitHubStandIn(t, false)
	anon := newCall(t, s.env)
	bob := signup(anon, "bob@example.com")
	cy := signup(anon, "cy@example.com")

	// Unverified: refused, nothing linked or made.
	unverified := oauthtest.GitHubUser{ID: 2002, Login: "cy", Emails: []oauthtest.GitHubEmail{{Email: "cy@example.com", Primary: true}}}
	s.wantError("unverified email of an account", s.finish(s.begin(unverified, "")), http.StatusConflict, "conflict", "sign in with your password")
	if n := s.count(`SELECT count(*) FROM oauth_identities`); n != 0 {
		t.Errorf("%d identities after a refused link", n)
	}
	// Nor does an unverified new email make an account someone else could later claim.
	stranger := oauthtest.GitHubUser{ID: 2003, Login: "dee", Emails: []oauthtest.GitHubEmail{{Email: "dee@example.com", Primary: true}}}
	s.wantError("unverified new email", s.finish(s.begin(stranger, "")), http.StatusForbidden, "forbidden", "has not verified")
	if n := s.count(`SELECT count(*) FROM users`); n != 2 {
		t.Errorf("%d users after refused sign-ins", n)
	}

	sess := s.signedIn(s.finish(s.begin(verified(2001, "bobby", "BOB@example.com"), "")))
	if s.me(sess)["id"] != bob["user_id"] || sess.teamID != bob["team_id"] {
		t.Errorf("linked sign-in is not bob's: %+v (bob %v)", sess, bob)
	}
	if got := strings.Join(s.audit(bob["user_id"].(string)), ", "); got != "user.signup -, user.oauth_link github, user.login github" {
		t.Errorf("bob's audit: %s", got)
	}
	// The password still works, and the next GitHub sign-in is a plain login.
	if status, body := anon.do("POST", "/v1/auth/login", `{"email":"bob@example.com","password":"correct horse battery"}`); status != 200 {
		t.Errorf("bob's password after linking: %d %v", status, body)
	}
	if again := s.signedIn(s.finish(s.begin(verified(2001, "bobby", "bob@example.com"), ""))); s.me(again)["id"] != bob["user_id"] {
		t.Errorf("second sign-in: %+v", again)
	}
	if n := s.count(`SELECT count(*) FROM users`); n != 2 || cy["user_id"] == bob["user_id"] {
		t.Errorf("%d users", n)
	}
}

// The state binds a callback to the browser that started it, for ten minutes, once.
func TestOAuthState(t *testing.T) {
	s := newGitHubStandIn(t, false)
	ann := verified(3001, "ann", "ann@example.com")
	callback := s.env.URL + "/v1/auth/oauth/github/callback"

	f := s.begin(ann, "")
	s.wantError("no cookie", s.get(s.api, f.callback, nil), http.StatusBadRequest, "invalid_request", "no sign-in in progress")
	payload, sig, _ := strings.Cut(f.cookie.Value, ".")
	flip := func(s string) string {
		b := []byte(s)
		if b[3] == 'A' {
			b[3] = 'B'
		} else {
			b[3] = 'A'
		}
		return string(b)
	}
	for what, value := range map[string]string{"payload": flip(payload) + "." + sig, "signature": payload + "." + flip(sig), "garbage": "x"} {
		a := s.get(s.api, f.callback, &http.Cookie{Name: oauth.CookieName, Value: value})
		s.wantError("cookie with a modified "+what, a, http.StatusBadRequest, "invalid_request", "start the sign-in again")
	}
	code := strings.SplitN(strings.SplitN(f.callback, "code=", 2)[1], "&", 2)[0]
	s.wantError("modified state parameter", s.get(s.api, callback+"?code="+code+"&state="+flip(f.nonce), f.cookie),
		http.StatusBadRequest, "invalid_request", "does not match this browser")
	s.wantError("no state parameter", s.get(s.api, callback+"?code="+code, f.cookie), http.StatusBadRequest, "invalid_request", "")
	// Another browser's sign-in: its own cookie, this browser's callback.
	other := s.begin(ann, "")
	s.wantError("another browser's cookie", s.get(s.api, f.callback, other.cookie), http.StatusBadRequest, "invalid_request", "does not match")
	if n := s.count(`SELECT count(*) FROM users`); n != 0 {
		t.Fatalf("%d users after refused callbacks", n)
	}

	// The refusals did not spend the state: the real callback works, once.
	s.signedIn(s.finish(f))
	s.wantError("replay", s.finish(f), http.StatusBadRequest, "invalid_request", "already completed")
	if n := s.gh.Exchanges(); n != 1 {
		t.Errorf("GitHub was asked %d times to exchange a code, want once", n)
	}

	// Ten minutes and a second later the state is dead, the code at GitHub unasked.
	late := s.begin(ann, "")
	s.clock.add(oauth.StateTTL + time.Second)
	s.wantError("expired state", s.finish(late), http.StatusBadRequest, "invalid_request", "took longer than 10m0s")
	if n := s.gh.Exchanges(); n != 1 {
		t.Errorf("GitHub exchanges: %d", n)
	}
	// Within the ten minutes it is good.
	inTime := s.begin(ann, "")
	s.clock.add(oauth.StateTTL - time.Minute)
	s.signedIn(s.finish(inTime))
}

// concurrently calls every flow's callback at once, and returns the users signed in.
func (s *githubStandIn) concurrently(flows []flow) map[string]bool {
	s.t.Helper()
	replies := make([]*http.Response, len(flows))
	errs := make([]error, len(flows))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, f := range flows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", f.callback, nil)
			req.AddCookie(&http.Cookie{Name: f.cookie.Name, Value: f.cookie.Value})
			<-start
			replies[i], errs[i] = s.api.Do(req)
		}()
	}
	close(start)
	wg.Wait()
	users := map[string]bool{}
	for i, resp := range replies {
		if errs[i] != nil {
			s.t.Fatalf("callback %d: %v", i, errs[i])
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		users[s.me(s.signedIn(getReply{resp.StatusCode, resp.Header, string(b)}))["id"].(string)] = true
	}
	return users
}

// Concurrent first sign-ins of one new GitHub account make one user, and of one
// GitHub account of an existing user link it once; every one of them signs in.
func TestOAuthConcurrentFirstSignIns(t *testing.T) {
	s := newGitHubStandIn(t, false)
	eve := verified(4001, "eve", "eve@example.com")
	flows := make([]flow, 8)
	for i := range flows {
		flows[i] = s.begin(eve, "")
	}
	users := s.concurrently(flows)
	if len(users) != 1 {
		t.Errorf("the callbacks signed in %d users", len(users))
	}
	if n := s.count(`SELECT count(*) FROM users`); n != 1 {
		t.Errorf("%d users", n)
	}
	if n := s.count(`SELECT count(*) FROM oauth_identities`); n != 1 {
		t.Errorf("%d identities", n)
	}
	for id := range users {
		if got := s.audit(id); len(got) != 8 || got[0] != "user.signup github" || got[7] != "user.login github" {
			t.Errorf("audit: %v", got)
		}
	}

	fred := signup(newCall(t, s.env), "fred@example.com")
	for i := range flows {
		flows[i] = s.begin(verified(4002, "fred", "fred@example.com"), "")
	}
	if users := s.concurrently(flows); len(users) != 1 || !users[fred["user_id"].(string)] {
		t.Errorf("the callbacks signed in %v, want fred %s", users, fred["user_id"])
	}
	if n := s.count(`SELECT count(*) FROM oauth_identities WHERE user_id = $1`, fred["user_id"]); n != 1 {
		t.Errorf("fred has %d identities", n)
	}
	if got := s.audit(fred["user_id"].(string)); len(got) != 10 || got[1] != "user.oauth_link github" {
		t.Errorf("fred's audit: %v", got)
	}
}

// With sign-up closed GitHub makes no accounts, but existing users still sign in
// and link.
func TestOAuthSignupClosed(t *testing.T) {
	s := newGitHubStandIn(t, true)
	s.wantError("new account", s.finish(s.begin(verified(5001, "fay", "fay@example.com"), "")), http.StatusForbidden, "forbidden", "sign-up is closed")
	if n := s.count(`SELECT count(*) FROM users`); n != 0 {
		t.Errorf("%d users", n)
	}
	userID, _, err := accounts.CreateUser(context.Background(), s.env.DB, "gus@example.com", "Gus", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	gus := verified(5002, "gus", "gus@example.com")
	for range 2 { // a link, then a known identity
		if sess := s.signedIn(s.finish(s.begin(gus, ""))); s.me(sess)["id"] != userID {
			t.Errorf("gus signed in as %v", s.me(sess)["id"])
		}
	}
}

// next is a path on this server, or the sign-in does not start.
func TestOAuthNext(t *testing.T) {
	s := newGitHubStandIn(t, false)
	for _, bad := range []string{"https://evil.example/", "//evil.example", "/\\evil.example", "evil", "/a#b", "/\t/evil.example"} {
		a := s.get(s.api, s.env.URL+"/v1/auth/oauth/github?next="+url.QueryEscape(bad), nil)
		s.wantError("next="+bad, a, http.StatusBadRequest, "invalid_request", "next must be a path on this server")
		if a.stateCookie() != nil {
			t.Errorf("next=%q: a state cookie was set", bad)
		}
	}
	if got := s.signedIn(s.finish(s.begin(verified(6001, "hal", "hal@example.com"), "/teams/x?a=%2F"))); got.to != s.env.URL+"/teams/x?a=%2F" {
		t.Errorf("returned to %s", got.to)
	}
}
