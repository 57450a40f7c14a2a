// Package oauthtest stands in for OAuth providers in tests. Tests here cannot reach
// GitHub (no packet may leave the machine), so GitHub is a local HTTP server speaking
// the parts of GitHub's OAuth web flow and REST API that Wrenn calls, with accounts
// the test defines.
package oauthtest

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/wrennhq/wrenn/internal/server/auth/oauth"
)

// GitHubUser is an account at the stand-in.
type GitHubUser struct {
	ID          int64
	Login, Name string
	PublicEmail string // the profile's public address ("" = none)
	Emails      []GitHubEmail
}

// GitHubEmail is one of an account's addresses.
type GitHubEmail struct {
	Email             string
	Primary, Verified bool
}

// GitHub stands in for GitHub, which is unreachable from tests: authorize (sends the
// browser back with a code for the account signed in at the stand-in), the code
// exchange, /user and /user/emails. Codes are good once, for the redirect URI they
// were issued for, as at GitHub.
type GitHub struct {
	URL                    string
	ClientID, ClientSecret string

	mu     sync.Mutex
	who    *GitHubUser // signed in at "GitHub": authorize issues codes for them
	codes  map[string]grant
	tokens map[string]GitHubUser
	calls  int // code exchanges
}

type grant struct {
	user        GitHubUser
	redirectURI string
}

// NewGitHub starts a stand-in that lives until the test ends.
func NewGitHub(t testing.TB) *GitHub {
	g := &GitHub{ClientID: "Iv1.standin", ClientSecret: "stand-in-secret", codes: map[string]grant{}, tokens: map[string]GitHubUser{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login/oauth/authorize", g.authorize)
	mux.HandleFunc("POST /login/oauth/access_token", g.accessToken)
	mux.HandleFunc("GET /user", g.user)
	mux.HandleFunc("GET /user/emails", g.emails)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	g.URL = srv.URL
	return g
}

// Provider is Wrenn's GitHub provider pointed at the stand-in.
func (g *GitHub) Provider() *oauth.GitHub {
	p := oauth.NewGitHub(g.ClientID, g.ClientSecret)
	p.AuthorizeURL, p.TokenURL = g.URL+"/login/oauth/authorize", g.URL+"/login/oauth/access_token"
	p.UserURL, p.EmailsURL = g.URL+"/user", g.URL+"/user/emails"
	return p
}

// SignIn makes u the account signed in at the stand-in.
func (g *GitHub) SignIn(u GitHubUser) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.who = &u
}

// Exchanges is how many code exchanges the stand-in answered.
func (g *GitHub) Exchanges() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls
}

func random() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (g *GitHub) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	redirect, err := url.Parse(q.Get("redirect_uri"))
	switch {
	case q.Get("client_id") != g.ClientID:
		http.Error(w, "unknown client_id", http.StatusNotFound)
		return
	case err != nil || redirect.Host == "":
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	case !strings.Contains(q.Get("scope"), "user:email") || q.Get("state") == "":
		http.Error(w, "want scope user:email and a state", http.StatusBadRequest)
		return
	}
	g.mu.Lock()
	who := g.who
	code := random()
	if who != nil {
		g.codes[code] = grant{user: *who, redirectURI: q.Get("redirect_uri")}
	}
	g.mu.Unlock()
	if who == nil {
		http.Error(w, "nobody is signed in at the stand-in", http.StatusUnauthorized)
		return
	}
	back := redirect.Query()
	back.Set("code", code)
	back.Set("state", q.Get("state"))
	redirect.RawQuery = back.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

// accessToken answers refusals with 200 and an error field, as GitHub does.
func (g *GitHub) accessToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.Header.Get("Accept") != "application/json" {
		http.Error(w, "want a form and Accept: application/json", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls++
	// The secret in constant time, as GitHub would: no test double should model a
	// comparison the product must never make.
	if r.PostForm.Get("client_id") != g.ClientID || subtle.ConstantTimeCompare([]byte(r.PostForm.Get("client_secret")), []byte(g.ClientSecret)) != 1 {
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "incorrect_client_credentials", "error_description": "The client_id and/or client_secret passed are incorrect."})
		return
	}
	gr, ok := g.codes[r.PostForm.Get("code")]
	delete(g.codes, r.PostForm.Get("code"))
	if !ok {
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "bad_verification_code", "error_description": "The code passed is incorrect or expired."})
		return
	}
	if r.PostForm.Get("redirect_uri") != gr.redirectURI {
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "redirect_uri_mismatch", "error_description": "The redirect_uri MUST match the registered callback URL for this application."})
		return
	}
	token := "gho_" + random()
	g.tokens[token] = gr.user
	_ = json.NewEncoder(w).Encode(map[string]string{"access_token": token, "token_type": "bearer", "scope": "read:user,user:email"})
}

func (g *GitHub) account(w http.ResponseWriter, r *http.Request) (GitHubUser, bool) {
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	g.mu.Lock()
	u, ok := g.tokens[token]
	g.mu.Unlock()
	if !ok {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_ = json.NewEncoder(w).Encode(map[string]string{"message": "Bad credentials"})
	}
	return u, ok
}

func (g *GitHub) user(w http.ResponseWriter, r *http.Request) {
	u, ok := g.account(w, r)
	if !ok {
		return
	}
	out := map[string]any{"id": u.ID, "login": u.Login, "name": nil, "email": nil}
	if u.Name != "" {
		out["name"] = u.Name
	}
	if u.PublicEmail != "" {
		out["email"] = u.PublicEmail
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func (g *GitHub) emails(w http.ResponseWriter, r *http.Request) {
	u, ok := g.account(w, r)
	if !ok {
		return
	}
	out := make([]map[string]any, 0, len(u.Emails))
	for _, e := range u.Emails {
		out = append(out, map[string]any{"email": e.Email, "primary": e.Primary, "verified": e.Verified, "visibility": nil})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}
