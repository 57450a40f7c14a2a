package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// GitHub's endpoints (an OAuth app's web flow).
const (
	GitHubAuthorizeURL = "https://github.com/login/oauth/authorize"
	GitHubTokenURL     = "https://github.com/login/oauth/access_token"
	GitHubUserURL      = "https://api.github.com/user"
	GitHubEmailsURL    = "https://api.github.com/user/emails"
	// githubScope reads the profile and the email addresses with whether GitHub has
	// verified each (the profile shows at most a public one, unverified).
	githubScope = "read:user user:email"
)

// Every call to a provider is bounded, so a slow or hostile endpoint holds a
// callback neither long nor with much memory.
const (
	callTimeout = 10 * time.Second
	maxResponse = 1 << 20
)

// GitHub signs users in with a GitHub OAuth app. The endpoints are fields so that
// tests point them at a stand-in.
type GitHub struct {
	ClientID, ClientSecret                     string
	AuthorizeURL, TokenURL, UserURL, EmailsURL string
	// Client makes the calls; its Timeout bounds each one (callTimeout too).
	Client *http.Client
}

// NewGitHub returns the provider for the OAuth app clientID at GitHub itself.
func NewGitHub(clientID, clientSecret string) *GitHub {
	return &GitHub{ClientID: clientID, ClientSecret: clientSecret,
		AuthorizeURL: GitHubAuthorizeURL, TokenURL: GitHubTokenURL, UserURL: GitHubUserURL, EmailsURL: GitHubEmailsURL,
		Client: &http.Client{Timeout: callTimeout}}
}

// NewGitHubEnterprise returns the provider for the OAuth app clientID at a GitHub
// Enterprise Server at base (https://github.example.com): its web flow is at
// base/login/oauth and its REST API at base/api/v3, where github.com has
// api.github.com.
func NewGitHubEnterprise(clientID, clientSecret, base string) *GitHub {
	g := NewGitHub(clientID, clientSecret)
	base = strings.TrimSuffix(base, "/")
	g.AuthorizeURL, g.TokenURL = base+"/login/oauth/authorize", base+"/login/oauth/access_token"
	g.UserURL, g.EmailsURL = base+"/api/v3/user", base+"/api/v3/user/emails"
	return g
}

// Name is "github".
func (g *GitHub) Name() string { return "github" }

// AuthURL is GitHub's authorization page for this app.
func (g *GitHub) AuthURL(state, redirectURI string) string {
	q := url.Values{"client_id": {g.ClientID}, "redirect_uri": {redirectURI}, "scope": {githubScope}, "state": {state}}
	return g.AuthorizeURL + "?" + q.Encode()
}

// Identify exchanges the code for a token and reads the account and its addresses
// with it. The email is the primary address when GitHub has verified it, else
// another verified one; with none verified, the primary (or public) address,
// marked unverified.
func (g *GitHub) Identify(ctx context.Context, code, redirectURI string) (Identity, error) {
	token, err := g.exchange(ctx, code, redirectURI)
	if err != nil {
		return Identity{}, err
	}
	var user struct {
		ID    int64   `json:"id"`
		Login string  `json:"login"`
		Name  *string `json:"name"`
		Email *string `json:"email"` // the public address, if any
	}
	if err := g.get(ctx, g.UserURL, token, &user); err != nil {
		return Identity{}, fmt.Errorf("github: read the user: %w", err)
	}
	if user.ID <= 0 {
		return Identity{}, errors.New("github: the user has no id")
	}
	id := Identity{Subject: strconv.FormatInt(user.ID, 10), Login: user.Login, Name: deref(user.Name), Email: deref(user.Email)}
	var emails []struct {
		Email    string `json:"email"`
		Primary  bool   `json:"primary"`
		Verified bool   `json:"verified"`
	}
	if err := g.get(ctx, g.EmailsURL, token, &emails); err != nil {
		return Identity{}, fmt.Errorf("github: read the email addresses: %w", err)
	}
	primary, verified := -1, -1
	for i, e := range emails {
		switch {
		case e.Primary && e.Verified:
			primary, verified = i, i
		case e.Primary && primary < 0:
			primary = i
		case e.Verified && verified < 0:
			verified = i
		}
	}
	switch {
	case primary >= 0 && primary == verified:
		id.Email, id.EmailVerified = emails[primary].Email, true
	case verified >= 0:
		id.Email, id.EmailVerified = emails[verified].Email, true
	case primary >= 0:
		id.Email = emails[primary].Email
	}
	if id.Email == "" {
		return Identity{}, errors.New("github: the account has no email address")
	}
	return id, nil
}

// exchange trades a callback's code for an access token. GitHub answers a refused
// code with 200 and an error field, so both are checked.
func (g *GitHub) exchange(ctx context.Context, code, redirectURI string) (string, error) {
	form := url.Values{"client_id": {g.ClientID}, "client_secret": {g.ClientSecret}, "code": {code}, "redirect_uri": {redirectURI}}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("github: token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := g.do(req, &tok); err != nil {
		return "", fmt.Errorf("github: exchange the code: %w", err)
	}
	switch {
	case tok.Error != "":
		return "", fmt.Errorf("github: exchange the code: %s: %s", tok.Error, tok.Description)
	case tok.AccessToken == "":
		return "", errors.New("github: exchange the code: no access token in the answer")
	case tok.TokenType != "" && !strings.EqualFold(tok.TokenType, "bearer"):
		return "", fmt.Errorf("github: exchange the code: token type %q, want bearer", tok.TokenType)
	}
	return tok.AccessToken, nil
}

// get reads a GitHub API resource as the signed-in user.
func (g *GitHub) get(ctx context.Context, u, token string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	return g.do(req, v)
}

// do sends req and decodes a 200's JSON body of at most maxResponse bytes into v.
func (g *GitHub) do(req *http.Request, v any) error {
	client := g.Client
	if client == nil {
		client = &http.Client{Timeout: callTimeout}
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return fmt.Errorf("read the answer: %w", err)
	}
	if len(body) > maxResponse {
		return fmt.Errorf("the answer is larger than %d bytes", maxResponse)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s answered %s", req.Method, req.URL.Redacted(), resp.Status)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode the answer: %w", err)
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
