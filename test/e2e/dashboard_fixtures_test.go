package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/wrennhq/wrenn/internal/server/auth/oauth/oauthtest"
)

// What the browser tests need beyond a control plane and an agent: a GitHub to sign in
// at, and a host with a sandbox on it that can be deleted without touching the agent's.

// webGitHubUser is the account signed in at the stand-in GitHub: a first sign-in with
// it makes a new Wrenn account (signin.test.mjs).
var webGitHubUser = oauthtest.GitHubUser{ID: 7001, Login: "octo-web", Name: "Octo Web",
	Emails: []oauthtest.GitHubEmail{{Email: "octo-web@github.test", Primary: true, Verified: true}}}

// githubForBrowser starts the stand-in GitHub and serves it on the browser namespace's
// gateway (the stand-in itself listens on loopback, which the namespace cannot reach),
// laid out as a GitHub Enterprise Server: the web flow at the root and the REST API
// under /api/v3, which is how WRENN_GITHUB_URL points the control plane at it. The
// control plane reaches the same address from the root namespace. It returns the
// server's environment for GitHub sign-in.
func githubForBrowser(t *testing.T, gw, publicURL string) []string {
	t.Helper()
	gh := oauthtest.NewGitHub(t)
	gh.SignIn(webGitHubUser)
	target, err := url.Parse(gh.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	ln, err := net.Listen("tcp", net.JoinHostPort(gw, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.URL.Path = "/" + strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/api/v3"), "/")
		proxy.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return []string{
		"WRENN_PUBLIC_URL=" + publicURL,
		"WRENN_GITHUB_URL=http://" + ln.Addr().String(),
		"WRENN_GITHUB_CLIENT_ID=" + gh.ClientID,
		"WRENN_GITHUB_CLIENT_SECRET=" + gh.ClientSecret,
	}
}

// busyHost adds a platform host whose agent is gone (unreachable: it never
// registered) with a live sandbox of the administrator's team recorded on it, as a
// host that died under its sandboxes leaves things. Deleting it is refused without
// force; with force the sandbox is recorded stopped. Nothing is placed on an
// unreachable host, so the other tests' sandboxes stay on the real agent.
func busyHost(t *testing.T, cp *cpProc, adminToken string) (hostID, sandboxID string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"name": "busy-web", "platform": true})
	req, _ := http.NewRequest("POST", cp.base+"/v1/hosts", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || resp.StatusCode != 201 {
		t.Fatalf("POST /v1/hosts: %d %v", resp.StatusCode, err)
	}
	hostID = h.ID
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, cp.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	sandboxID = "sbbusyweb00000000001"
	if _, err := conn.Exec(ctx, `UPDATE hosts SET status = 'unreachable' WHERE id = $1`, hostID); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `
		INSERT INTO sandboxes (id, team_id, host_id, template, status, vcpus, memory_mb, allow_internet_access, started_at)
		SELECT $1, m.team_id, $2, 'base', 'running', 1, 512, false, now()
		FROM users_teams m JOIN users u ON u.id = m.user_id
		WHERE u.email = 'admin@e2e.test' AND m.is_default`, sandboxID, hostID); err != nil {
		t.Fatal(err)
	}
	return hostID, sandboxID
}
