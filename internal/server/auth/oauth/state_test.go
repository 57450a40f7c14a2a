package oauth

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Run(m)) }

func TestCodecRoundTripAndTampering(t *testing.T) {
	c := codec{bytes.Repeat([]byte("k"), 32)}
	in := state{Nonce: "n0nce", Provider: "github", Next: "/dash?x=1", Expires: 1700000000}
	v, err := c.seal(in)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := c.open(v); err != nil || out != in {
		t.Fatalf("open(seal(%+v)) = %+v, %v", in, out, err)
	}
	payload, sig, _ := strings.Cut(v, ".")
	// The payload says another next; the signature is the original's.
	forged := base64.RawURLEncoding.EncodeToString([]byte(`{"n":"n0nce","p":"github","x":"/evil","e":1700000000}`))
	flipped := []byte(sig)
	flipped[0] ^= 1
	for name, bad := range map[string]string{
		"empty":             "",
		"no signature":      payload,
		"payload changed":   forged + "." + sig,
		"signature changed": payload + "." + string(flipped),
		"signature cut":     payload + "." + sig[:10],
		"not base64":        payload + ".***",
		"other key":         mustSeal(t, codec{bytes.Repeat([]byte("o"), 32)}, in),
		"signed garbage":    signed(c, "not json"),
		"no nonce":          signed(c, `{"p":"github","x":"/","e":1}`),
	} {
		if _, err := c.open(bad); !errors.Is(err, ErrState) {
			t.Errorf("%s: %v, want ErrState", name, err)
		}
	}
}

func mustSeal(t *testing.T, c codec, s state) string {
	t.Helper()
	v, err := c.seal(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// signed is a correctly signed cookie around an arbitrary payload.
func signed(c codec, payload string) string {
	p := base64.RawURLEncoding.EncodeToString([]byte(payload))
	return p + "." + base64.RawURLEncoding.EncodeToString(c.mac(p))
}

func TestCheckNext(t *testing.T) {
	for in, want := range map[string]string{"": "/", "/": "/", "/dashboard": "/dashboard", "/a/b?tab=keys&x=%2F": "/a/b?tab=keys&x=%2F", "/é": "/é"} {
		if got, err := CheckNext(in); err != nil || got != want {
			t.Errorf("CheckNext(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"https://evil.example", "//evil.example", "/\\evil.example", "\\\\evil", "evil.example/x",
		"javascript:alert(1)", "/\t/evil.example", "/a b", "/x#frag", "/x\x00", "/x\n", strings.Repeat("/a", 600)} {
		if got, err := CheckNext(bad); !errors.Is(err, ErrNext) {
			t.Errorf("CheckNext(%q) = %q, %v; want ErrNext", bad, got, err)
		}
	}
}

type fakeProvider struct{ name string }

func (p fakeProvider) Name() string { return p.name }
func (p fakeProvider) AuthURL(state, redirectURI string) string {
	return "https://idp.example/auth?" + url.Values{"state": {state}, "redirect_uri": {redirectURI}}.Encode()
}
func (fakeProvider) Identify(context.Context, string, string) (Identity, error) {
	return Identity{}, errors.New("not used")
}

// clock is a settable time for the flow.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newFlow(t *testing.T, public string, now func() time.Time) *Flow {
	t.Helper()
	f, err := New(Config{Providers: []Provider{fakeProvider{"github"}, fakeProvider{"other"}}, PublicURL: public,
		ServerSecret: bytes.Repeat([]byte("s"), 32), Redis: redistest.NewClient(t), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFlow(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Now()}
	f := newFlow(t, "https://wrenn.example/", clk.now)
	gh, _ := f.Provider("github")
	if _, ok := f.Provider("gitlab"); ok {
		t.Error("an unconfigured provider is found")
	}
	if _, ok := (*Flow)(nil).Provider("github"); ok {
		t.Error("a nil Flow has a provider")
	}

	authURL, cookie, err := f.Begin(gh, "/after", ModeToken)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(authURL)
	nonce := u.Query().Get("state")
	if u.Query().Get("redirect_uri") != "https://wrenn.example/v1/auth/oauth/github/callback" || nonce == "" {
		t.Errorf("auth URL %s", authURL)
	}
	// https: the __Host- form, which a sandbox's subdomain cannot set for this host.
	if cookie.Name != SecureCookieName || !cookie.HttpOnly || !cookie.Secure || cookie.SameSite != http.SameSiteLaxMode ||
		cookie.Path != "/" || cookie.Domain != "" || cookie.MaxAge != 600 || strings.Contains(cookie.Value, nonce+".") {
		t.Errorf("state cookie %+v", cookie)
	}
	if _, _, err := f.Begin(gh, "//evil.example", ModeCookie); !errors.Is(err, ErrNext) {
		t.Errorf("Begin with //evil.example: %v", err)
	}

	// Every refusal leaves the state usable: only a good callback uses it up.
	for name, try := range map[string]func() error{
		"no cookie":      func() error { _, _, err := f.Verify(ctx, "github", "", nonce); return err },
		"other nonce":    func() error { _, _, err := f.Verify(ctx, "github", cookie.Value, nonce+"x"); return err },
		"no state":       func() error { _, _, err := f.Verify(ctx, "github", cookie.Value, ""); return err },
		"other provider": func() error { _, _, err := f.Verify(ctx, "other", cookie.Value, nonce); return err },
	} {
		if err := try(); !errors.Is(err, ErrState) {
			t.Errorf("%s: %v, want ErrState", name, err)
		}
	}
	next, mode, err := f.Verify(ctx, "github", cookie.Value, nonce)
	if err != nil || next != "/after" || mode != ModeToken {
		t.Fatalf("Verify: %q, %q, %v", next, mode, err)
	}
	if _, _, err := f.Verify(ctx, "github", cookie.Value, nonce); !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "already") {
		t.Errorf("replay: %v", err)
	}
	if ttl := f.redis.TTL(ctx, usedPrefix+nonce).Val(); ttl <= 9*time.Minute || ttl > StateTTL {
		t.Errorf("used nonce kept %v, want about the state's remaining %v", ttl, StateTTL)
	}
	if got := f.Return(next, "token=x"); got != "https://wrenn.example/after#token=x" {
		t.Errorf("Return: %s", got)
	}

	_, cookie, _ = f.Begin(gh, "", ModeCookie)
	nonce = mustOpen(t, f, cookie.Value).Nonce
	clk.add(StateTTL + time.Second)
	if _, _, err := f.Verify(ctx, "github", cookie.Value, nonce); !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("expired state: %v", err)
	}
	if c := f.ClearCookie("github"); c.MaxAge >= 0 || c.Path != "/" || c.Name != SecureCookieName || c.Value != "" {
		t.Errorf("clear cookie %+v", c)
	}
}

func mustOpen(t *testing.T, f *Flow, v string) state {
	t.Helper()
	s, err := f.codec.open(v)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPlainHTTPCookieIsNotSecure(t *testing.T) {
	f := newFlow(t, "http://127.0.0.1:8080", nil)
	gh, _ := f.Provider("github")
	if _, c, err := f.Begin(gh, "/", ModeCookie); err != nil || c.Secure {
		t.Errorf("cookie over http: %+v %v", c, err)
	}
}

func TestNewRefuses(t *testing.T) {
	good := Config{PublicURL: "https://w.example", ServerSecret: bytes.Repeat([]byte("s"), 32), Redis: redistest.NewClient(t)}
	for name, change := range map[string]func(*Config){
		"path":         func(c *Config) { c.PublicURL = "https://w.example/base" },
		"query":        func(c *Config) { c.PublicURL = "https://w.example/?a=1" },
		"no host":      func(c *Config) { c.PublicURL = "https:///x" },
		"scheme":       func(c *Config) { c.PublicURL = "ftp://w.example" },
		"short secret": func(c *Config) { c.ServerSecret = []byte("short") },
		"no redis":     func(c *Config) { c.Redis = nil },
		"twice":        func(c *Config) { c.Providers = []Provider{fakeProvider{"github"}, fakeProvider{"github"}} },
		"bad name":     func(c *Config) { c.Providers = []Provider{fakeProvider{"Git Hub"}} },
	} {
		c := good
		change(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(good); err != nil {
		t.Error(err)
	}
}
