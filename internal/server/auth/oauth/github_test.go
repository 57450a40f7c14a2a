package oauth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/server/auth/oauth"
	"github.com/wrennhq/wrenn/internal/server/auth/oauth/oauthtest"
)

const redirectURI = "https://wrenn.example/v1/auth/oauth/github/callback"

// code walks the stand-in's authorize page as a browser signed in as u would.
func code(t *testing.T, gh *oauthtest.GitHub, p *oauth.GitHub, u oauthtest.GitHubUser) string {
	t.Helper()
	gh.SignIn(u)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(p.AuthURL("st", redirectURI))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound || loc.Query().Get("state") != "st" || !strings.HasPrefix(loc.String(), redirectURI+"?") {
		t.Fatalf("authorize: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	return loc.Query().Get("code")
}

func TestGitHubIdentify(t *testing.T) {
	gh := oauthtest.NewGitHub(t)
	p := gh.Provider()
	if u, _ := url.Parse(p.AuthURL("st", redirectURI)); u.Query().Get("scope") != "read:user user:email" || u.Query().Get("client_id") != gh.ClientID {
		t.Errorf("auth URL %s", u)
	}
	ctx := context.Background()
	for name, tc := range map[string]struct {
		user     oauthtest.GitHubUser
		want     string
		verified bool
	}{
		"primary verified": {oauthtest.GitHubUser{ID: 1, Login: "ann", Name: "Ann", Emails: []oauthtest.GitHubEmail{
			{Email: "old@example.com", Verified: true}, {Email: "ann@example.com", Primary: true, Verified: true}}}, "ann@example.com", true},
		"primary unverified, another verified": {oauthtest.GitHubUser{ID: 2, Login: "bob", Emails: []oauthtest.GitHubEmail{
			{Email: "bob@example.com", Primary: true}, {Email: "bob@work.example", Verified: true}}}, "bob@work.example", true},
		"none verified": {oauthtest.GitHubUser{ID: 3, Login: "cy", Emails: []oauthtest.GitHubEmail{
			{Email: "x@example.com"}, {Email: "cy@example.com", Primary: true}}}, "cy@example.com", false},
		"public email only": {oauthtest.GitHubUser{ID: 4, Login: "di", PublicEmail: "di@example.com"}, "di@example.com", false},
	} {
		id, err := p.Identify(ctx, code(t, gh, p, tc.user), redirectURI)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if id.Email != tc.want || id.EmailVerified != tc.verified || id.Login != tc.user.Login || id.Name != tc.user.Name || id.Subject == "" {
			t.Errorf("%s: %+v", name, id)
		}
	}

	noEmail := code(t, gh, p, oauthtest.GitHubUser{ID: 5, Login: "ed"})
	if _, err := p.Identify(ctx, noEmail, redirectURI); err == nil || !strings.Contains(err.Error(), "no email") {
		t.Errorf("an account without an address: %v", err)
	}
	used := code(t, gh, p, oauthtest.GitHubUser{ID: 6, Login: "flo", PublicEmail: "f@example.com"})
	if _, err := p.Identify(ctx, used, "https://other.example/cb"); err == nil || !strings.Contains(err.Error(), "redirect_uri_mismatch") {
		t.Errorf("another redirect URI: %v", err)
	}
	if _, err := p.Identify(ctx, used, redirectURI); err == nil || !strings.Contains(err.Error(), "bad_verification_code") {
		t.Errorf("a used code: %v", err)
	}
	wrong := gh.Provider()
	wrong.ClientSecret = "guess"
	if _, err := wrong.Identify(ctx, code(t, gh, p, oauthtest.GitHubUser{ID: 7, PublicEmail: "g@example.com"}), redirectURI); err == nil {
		t.Error("a wrong client secret was accepted")
	}
}

// A provider answering too much, too slowly or with an error fails the sign-in
// within bounds.
func TestGitHubBounds(t *testing.T) {
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /huge", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`{"access_token":"` + strings.Repeat("a", 2<<20) + `"}`))
	})
	mux.HandleFunc("POST /slow", func(http.ResponseWriter, *http.Request) { <-release })
	mux.HandleFunc("POST /broken", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "oops", http.StatusInternalServerError) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer close(release)
	for path, want := range map[string]string{"/huge": "larger than", "/slow": "Timeout", "/broken": "500"} {
		p := oauth.NewGitHub("id", "secret")
		p.TokenURL = srv.URL + path
		p.Client.Timeout = 200 * time.Millisecond
		start := time.Now()
		_, err := p.Identify(context.Background(), "code", redirectURI)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", path, err, want)
		}
		if time.Since(start) > 5*time.Second {
			t.Errorf("%s took %v", path, time.Since(start))
		}
	}
}

// A GitHub Enterprise Server has its web flow and its REST API (under /api/v3) on
// one host.
func TestGitHubEnterpriseEndpoints(t *testing.T) {
	g := oauth.NewGitHubEnterprise("Iv1.x", "s", "https://github.example.com/")
	want := []string{"https://github.example.com/login/oauth/authorize", "https://github.example.com/login/oauth/access_token",
		"https://github.example.com/api/v3/user", "https://github.example.com/api/v3/user/emails"}
	got := []string{g.AuthorizeURL, g.TokenURL, g.UserURL, g.EmailsURL}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("endpoint %d: %s, want %s", i, got[i], want[i])
		}
	}
}
