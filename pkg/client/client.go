// Package client is the Go SDK of Wrenn's REST API (/v1): accounts, API keys and
// sandboxes. The CLI, the tests and the benchmarks use it.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client talks to one Wrenn control plane.
type Client struct {
	base   string
	http   *http.Client
	token  string // a user's JWT
	apiKey string // or a team API key
}

// Option configures a Client.
type Option func(*Client)

// WithToken authenticates as a user (a JWT from Login or Signup).
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithAPIKey authenticates with a team API key (wrn_…).
func WithAPIKey(key string) Option { return func(c *Client) { c.apiKey = key } }

// WithHTTPClient replaces the HTTP client (timeouts, proxies, tests).
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// New returns a client of the control plane at baseURL (e.g. http://127.0.0.1:8080).
func New(baseURL string, opts ...Option) *Client {
	c := &Client{base: strings.TrimRight(baseURL, "/"), http: http.DefaultClient}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Error is an API error: the HTTP status and the server's code and message.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("wrenn: %d %s: %s", e.Status, e.Code, e.Message) }

// IsNotFound reports whether err is a 404 from the API.
func IsNotFound(err error) bool {
	e, ok := err.(*Error)
	return ok && e.Status == http.StatusNotFound
}

// IsConflict reports whether err is a 409 from the API: the resource's state does not
// allow the call now (e.g. the sandbox is paused).
func IsConflict(err error) bool {
	e, ok := err.(*Error)
	return ok && e.Status == http.StatusConflict
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("wrenn: decode %s %s: %w", method, path, err)
	}
	return nil
}

// send adds credentials and turns non-2xx answers into *Error.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	switch {
	case c.token != "":
		req.Header.Set("Authorization", "Bearer "+c.token)
	case c.apiKey != "":
		req.Header.Set("X-API-Key", c.apiKey)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("wrenn: %s %s: %w", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	return nil, responseError(resp)
}

// responseError turns a non-2xx answer into *Error, closing its body.
func responseError(resp *http.Response) error {
	defer resp.Body.Close()
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(raw, &e) != nil || e.Error.Message == "" {
		e.Error.Message = strings.TrimSpace(string(raw))
	}
	return &Error{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message}
}

// Session is a logged-in user.
type Session struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	UserID    string    `json:"user_id"`
	TeamID    string    `json:"team_id"`
	Role      string    `json:"role"`
}

// Signup creates an account (and its default team) and logs in.
func (c *Client) Signup(ctx context.Context, email, name, password string) (*Session, error) {
	var s Session
	err := c.do(ctx, http.MethodPost, "/v1/auth/signup", map[string]string{"email": email, "name": name, "password": password}, &s)
	return &s, err
}

// Login returns a session for the user's default team.
func (c *Client) Login(ctx context.Context, email, password string) (*Session, error) {
	var s Session
	err := c.do(ctx, http.MethodPost, "/v1/auth/login", map[string]string{"email": email, "password": password}, &s)
	return &s, err
}

// SwitchTeam returns a session acting for another of the user's teams.
func (c *Client) SwitchTeam(ctx context.Context, teamID string) (*Session, error) {
	var s Session
	err := c.do(ctx, http.MethodPost, "/v1/auth/switch-team", map[string]string{"team_id": teamID}, &s)
	return &s, err
}

// APIKey is a team API key; Key is set only in CreateAPIKey's answer.
type APIKey struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	CreatedBy  string     `json:"created_by"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	Key        string     `json:"key"`
	// E2BKey is Key as the e2b SDKs take it (E2B_API_KEY=e2b_…); both work.
	E2BKey string `json:"e2b_key,omitempty"`
}

// CreateAPIKey makes a key for the current team; its secret is shown only here.
func (c *Client) CreateAPIKey(ctx context.Context, name string) (*APIKey, error) {
	var k APIKey
	err := c.do(ctx, http.MethodPost, "/v1/api-keys", map[string]string{"name": name}, &k)
	return &k, err
}

// ListAPIKeys lists the current team's keys (without secrets).
func (c *Client) ListAPIKeys(ctx context.Context) ([]APIKey, error) {
	var out struct {
		Keys []APIKey `json:"api_keys"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/api-keys", nil, &out)
	return out.Keys, err
}

// RevokeAPIKey revokes one of the current team's keys.
func (c *Client) RevokeAPIKey(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/api-keys/"+url.PathEscape(id), nil, nil)
}

// Me is the signed-in user, their teams with roles, and the team the token acts for.
type Me struct {
	User struct {
		ID      string `json:"id"`
		Email   string `json:"email"`
		Name    string `json:"name"`
		IsAdmin bool   `json:"is_admin"`
	} `json:"user"`
	CurrentTeamID string `json:"current_team_id"`
	Teams         []struct {
		ID        string `json:"id"`
		Name      string `json:"name"`
		Slug      string `json:"slug"`
		Role      string `json:"role"`
		IsDefault bool   `json:"is_default"`
		IsBYOC    bool   `json:"is_byoc"`
	} `json:"teams"`
}

// Me reads who the token's user is (a user's token only; an API key is refused).
func (c *Client) Me(ctx context.Context) (*Me, error) {
	var out Me
	if err := c.do(ctx, http.MethodGet, "/v1/me", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
