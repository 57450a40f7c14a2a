package oauth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/wrennhq/wrenn/internal/server/auth"
)

// A sign-in in flight lives in one cookie, so the control plane keeps nothing per
// browser until the callback: the cookie carries a random nonce, the provider and
// where to go afterwards, signed with a key only this server has, and lives
// StateTTL. The provider is handed the nonce as OAuth's state and hands it back:
// a callback whose state is not the nonce of the browser's own cookie was not
// started by that browser (login CSRF), and Redis remembers each nonce used until
// it would have expired anyway, so a callback cannot be replayed.
const (
	// StateTTL is how long a sign-in may take, from start to callback.
	StateTTL = 10 * time.Minute
	// CookieName is the state cookie's name on a plain-HTTP public URL.
	CookieName = "wrenn_oauth_state"
	// SecureCookieName is its name on an https one. The __Host- prefix makes browsers
	// accept the cookie only from this exact host, over https, with Path=/ and no
	// Domain: a page served from a sandbox's subdomain cannot plant its own signed
	// state for the control plane's host (cookie tossing, which would sign the victim
	// into the attacker's account), as it could with a cookie of the parent domain.
	SecureCookieName = "__Host-wrenn_oauth_state"
	// RoutePrefix is where the sign-in routes live: a provider's state cookie is sent
	// to RoutePrefix+name (its start and callback) and nowhere else.
	RoutePrefix = "/v1/auth/oauth/"
	// statePurpose names the state key among the keys derived from the server secret.
	statePurpose = "wrenn oauth-state v1"
	// maxNext bounds the path a sign-in returns to (it rides in the cookie).
	maxNext = 1024
	// usedPrefix is the Redis key prefix of nonces already used.
	usedPrefix = "wrenn:oauth-state:"
)

// ErrState is wrapped by every refusal of a callback's state: missing, tampered
// with, expired, for another provider, not the browser's own, or used before.
var ErrState = errors.New("invalid sign-in state")

// ErrNext is wrapped when the path to return to after sign-in is not a path on
// this server.
var ErrNext = errors.New("invalid next path")

// state is what the cookie carries (short JSON names keep the cookie small).
type state struct {
	Nonce    string `json:"n"`
	Provider string `json:"p"`
	Next     string `json:"x"`
	Mode     Mode   `json:"m,omitempty"`
	Expires  int64  `json:"e"` // Unix seconds
}

// Mode is how a sign-in hands its session to the browser.
type Mode string

const (
	// ModeCookie (the default, the dashboard's): a browser session in an HttpOnly
	// cookie, and no credential in any URL.
	ModeCookie Mode = ""
	// ModeToken: a JWT in the fragment of the URL returned to, for a page's script
	// (what every sign-in did before browser sessions).
	ModeToken Mode = "token"
)

// ParseMode reads the mode parameter of a sign-in's start ("" or "cookie", or
// "token"); anything else wraps ErrMode.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", "cookie":
		return ModeCookie, nil
	case string(ModeToken):
		return ModeToken, nil
	}
	return "", fmt.Errorf("%w: mode must be cookie or token, not %q", ErrMode, s)
}

// ErrMode is wrapped when a sign-in's mode is neither cookie nor token.
var ErrMode = errors.New("invalid sign-in mode")

// codec signs states into cookie values and checks them: base64url(JSON) "."
// base64url(HMAC-SHA256 of the first part).
type codec struct{ key []byte }

func (c codec) mac(payload string) []byte {
	h := hmac.New(sha256.New, c.key)
	h.Write([]byte(payload))
	return h.Sum(nil)
}

func (c codec) seal(s state) (string, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("encode sign-in state: %w", err)
	}
	payload := base64.RawURLEncoding.EncodeToString(b)
	return payload + "." + base64.RawURLEncoding.EncodeToString(c.mac(payload)), nil
}

// open returns the state a cookie value carries if this server signed it; it does
// not look at what the state says (Flow.Verify does).
func (c codec) open(v string) (state, error) {
	var s state
	payload, sig, ok := strings.Cut(v, ".")
	if !ok {
		return s, fmt.Errorf("%w: the state cookie is malformed; start the sign-in again", ErrState)
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, c.mac(payload)) {
		return s, fmt.Errorf("%w: the state cookie's signature does not match (it was altered, or made by another server); start the sign-in again", ErrState)
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return s, fmt.Errorf("%w: the state cookie is malformed; start the sign-in again", ErrState)
	}
	if err := json.Unmarshal(b, &s); err != nil || s.Nonce == "" {
		return s, fmt.Errorf("%w: the state cookie is malformed; start the sign-in again", ErrState)
	}
	return s, nil
}

// CheckNext checks where a sign-in returns to: a path on this server, starting with
// exactly one "/" ("" is "/"). Anything a browser could read as another host is
// refused rather than replaced, so a wrong link fails where it is made: "//host",
// "/\host" (browsers read "\" as "/"), a scheme, control characters and spaces
// (browsers drop tabs and newlines, turning "/\t/host" into "//host"), and "#",
// which would clash with the fragment the token is returned in.
func CheckNext(next string) (string, error) {
	if next == "" {
		return "/", nil
	}
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w: next must be a path on this server like /dashboard: %s", ErrNext, why)
	}
	switch {
	case len(next) > maxNext:
		return bad(fmt.Sprintf("longer than %d bytes", maxNext))
	case next[0] != '/':
		return bad("it does not start with /")
	case len(next) > 1 && (next[1] == '/' || next[1] == '\\'):
		return bad("it starts with // or /\\, which leaves this server")
	case strings.ContainsAny(next, `\#`):
		return bad(`it contains \ or #`)
	}
	for i := 0; i < len(next); i++ {
		if next[i] <= ' ' || next[i] == 0x7f {
			return bad("it contains a space or control character")
		}
	}
	if u, err := url.Parse(next); err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return bad("it does not parse as a path")
	}
	return next, nil
}

// Flow runs sign-ins: the configured providers, this server's public URL (where
// providers send browsers back), the state key, and Redis for used nonces.
type Flow struct {
	providers Registry
	public    string // WRENN_PUBLIC_URL without a trailing "/"
	secure    bool   // the public URL is https: the cookie is Secure
	codec     codec
	redis     *redis.Client
	now       func() time.Time
}

// Config is what a Flow runs on.
type Config struct {
	Providers []Provider
	// PublicURL is the URL users reach the control plane at (WRENN_PUBLIC_URL):
	// callbacks are PublicURL/v1/auth/oauth/{provider}/callback.
	PublicURL string
	// ServerSecret is WRENN_JWT_SECRET; the state key is derived from it.
	ServerSecret []byte
	Redis        *redis.Client // remembers used nonces
	Now          func() time.Time
}

// New returns a Flow over the providers.
func New(cfg Config) (*Flow, error) {
	reg, err := NewRegistry(cfg.Providers...)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(cfg.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("oauth: public URL %q: want http(s)://host[:port] with no path", cfg.PublicURL)
	}
	if len(cfg.ServerSecret) < 32 {
		return nil, errors.New("oauth: server secret must be at least 32 bytes")
	}
	if cfg.Redis == nil {
		return nil, errors.New("oauth: Redis is required (it remembers used sign-in states)")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Flow{providers: reg, public: strings.TrimSuffix(cfg.PublicURL, "/"), secure: u.Scheme == "https",
		codec: codec{auth.DeriveKey(cfg.ServerSecret, statePurpose)}, redis: cfg.Redis, now: cfg.Now}, nil
}

// Provider is the configured provider called name; a nil Flow (no provider
// configured) has none.
func (f *Flow) Provider(name string) (Provider, bool) {
	if f == nil {
		return nil, false
	}
	return f.providers.Get(name)
}

// RedirectURI is where the provider sends the browser back to: the URL to register
// with the provider.
func (f *Flow) RedirectURI(provider string) string {
	return f.public + RoutePrefix + provider + "/callback"
}

// Begin starts a sign-in that returns to next (CheckNext) with its session handed
// over as mode says: the provider's URL to send the browser to, and the state
// cookie to set on the way.
func (f *Flow) Begin(p Provider, next string, mode Mode) (string, *http.Cookie, error) {
	next, err := CheckNext(next)
	if err != nil {
		return "", nil, err
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("sign-in nonce: %w", err)
	}
	nonce := base64.RawURLEncoding.EncodeToString(b)
	v, err := f.codec.seal(state{Nonce: nonce, Provider: p.Name(), Next: next, Mode: mode, Expires: f.now().Add(StateTTL).Unix()})
	if err != nil {
		return "", nil, err
	}
	return p.AuthURL(nonce, f.RedirectURI(p.Name())), f.cookie(p.Name(), v, int(StateTTL/time.Second)), nil
}

// ClearCookie is the Set-Cookie that removes provider's state cookie.
func (f *Flow) ClearCookie(provider string) *http.Cookie { return f.cookie(provider, "", -1) }

// CookieName is the state cookie's name on this server (see SecureCookieName).
func (f *Flow) CookieName() string {
	if f.secure {
		return SecureCookieName
	}
	return CookieName
}

func (f *Flow) cookie(provider, value string, maxAge int) *http.Cookie {
	// Lax, not Strict: the callback is a top-level navigation from the provider's
	// site, which Strict would send without the cookie. Over https the __Host- form
	// must have Path=/; the state names its provider, which Verify checks, so the
	// narrower path of the plain-HTTP form is only tidiness.
	path := RoutePrefix + provider
	if f.secure {
		path = "/"
	}
	return &http.Cookie{Name: f.CookieName(), Value: value, Path: path, MaxAge: maxAge,
		HttpOnly: true, Secure: f.secure, SameSite: http.SameSiteLaxMode}
}

// Verify checks a callback of provider: cookie is the state cookie's value the
// browser sent, param the state the provider passed back. It returns the path to
// return to and the sign-in's mode, having used the state up: any later callback
// with it is refused. Every refusal wraps ErrState with what to do.
func (f *Flow) Verify(ctx context.Context, provider, cookie, param string) (string, Mode, error) {
	if cookie == "" {
		return "", "", fmt.Errorf("%w: this browser has no sign-in in progress (no state cookie: it expired, or the sign-in started elsewhere); start the sign-in again", ErrState)
	}
	st, err := f.codec.open(cookie)
	if err != nil {
		return "", "", err
	}
	left := time.Unix(st.Expires, 0).Sub(f.now())
	switch {
	case left <= 0:
		return "", "", fmt.Errorf("%w: the sign-in took longer than %v; start it again", ErrState, StateTTL)
	case st.Provider != provider:
		return "", "", fmt.Errorf("%w: the sign-in in progress is with %q, not %q; start it again", ErrState, st.Provider, provider)
	case subtle.ConstantTimeCompare([]byte(param), []byte(st.Nonce)) != 1:
		return "", "", fmt.Errorf("%w: the state parameter does not match this browser's sign-in (a link made elsewhere?); start the sign-in again", ErrState)
	}
	next, err := CheckNext(st.Next)
	if err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrState, err) // only a bug could sign a bad one
	}
	// Kept as long as the state would be accepted, so a replay finds it; never less
	// than Redis's smallest expiry.
	first, err := f.redis.SetNX(ctx, usedPrefix+st.Nonce, 1, max(left, time.Second)).Result()
	if err != nil {
		return "", "", fmt.Errorf("record sign-in state as used: %w", err)
	}
	if !first {
		return "", "", fmt.Errorf("%w: this sign-in was already completed (a callback is good once); start it again", ErrState)
	}
	if _, err := ParseMode(string(st.Mode)); err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrState, err) // only a bug could sign a bad one
	}
	return next, st.Mode, nil
}

// Return is the URL on this server the browser goes to after the sign-in: next
// with fragment (without "#"; "" for none).
func (f *Flow) Return(next, fragment string) string {
	if fragment == "" {
		return f.public + next
	}
	return f.public + next + "#" + fragment
}
