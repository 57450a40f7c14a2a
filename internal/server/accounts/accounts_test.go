package accounts

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/pgtest"
	"github.com/wrennhq/wrenn/internal/redistest"
	"github.com/wrennhq/wrenn/internal/server/auth"
	"github.com/wrennhq/wrenn/internal/server/core"
	"github.com/wrennhq/wrenn/internal/server/store"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(redistest.Around(m))) }

// newService returns a service on a fresh database; opts change its Config.
func newService(t *testing.T, opts ...func(*Config)) *Service {
	t.Helper()
	ctx := context.Background()
	pool, err := store.Open(ctx, pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := store.Migrate(ctx, pool, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	tokens, err := auth.NewTokens(bytes.Repeat([]byte("s"), 32), 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	st, err := core.NewStore(pool, redistest.NewClient(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Store: st, Tokens: tokens, Log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSignupLoginSwitchTeam(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	ann, err := s.Signup(ctx, " Ann@Example.com ", "Ann", "correct horse battery", "")
	if err != nil {
		t.Fatal(err)
	}
	if ann.Role != core.Owner || ann.Token == "" || ann.TeamID == "" {
		t.Fatalf("signup: %+v", ann)
	}
	for name, err := range map[string]error{
		"duplicate":      errOnly(s.Signup(ctx, "ann@example.com", "Ann2", "another password", "")),
		"bad email":      errOnly(s.Signup(ctx, "not-an-email", "", "correct horse battery", "")),
		"short password": errOnly(s.Signup(ctx, "c@example.com", "", "short", "")),
	} {
		want := core.ErrInvalid
		if name == "duplicate" {
			want = core.ErrConflict
		}
		if !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}

	login, err := s.Login(ctx, "ANN@example.com", "correct horse battery", "")
	if err != nil || login.TeamID != ann.TeamID || login.UserID != ann.UserID {
		t.Fatalf("login: %+v %v", login, err)
	}
	for _, tc := range [][2]string{{"ann@example.com", "wrong password"}, {"nobody@example.com", "correct horse battery"}, {"junk", "x"}} {
		if _, err := s.Login(ctx, tc[0], tc[1], ""); !errors.Is(err, core.ErrUnauthorized) {
			t.Errorf("login %v: %v", tc, err)
		}
	}

	p, err := s.FromToken(ctx, login.Token)
	if err != nil || p.UserID != ann.UserID || p.Role != core.Owner {
		t.Fatalf("principal from token: %+v %v", p, err)
	}
	if _, err := s.FromToken(ctx, login.Token+"x"); !errors.Is(err, core.ErrUnauthorized) {
		t.Errorf("tampered token: %v", err)
	}

	// Switching to a team one is not a member of is not found; to one's own works.
	bob, err := s.Signup(ctx, "bob@example.com", "Bob", "bob's long password", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SwitchTeam(ctx, p, bob.TeamID); !errors.Is(err, core.ErrNotFound) {
		t.Errorf("switch to a foreign team: %v", err)
	}
	if sw, err := s.SwitchTeam(ctx, p, ann.TeamID); err != nil || sw.TeamID != ann.TeamID {
		t.Errorf("switch to own team: %+v %v", sw, err)
	}
	// A token naming a team the user is not in (forged claims, or removed since) fails.
	forged, _, _ := s.tokens.Issue(ann.UserID, bob.TeamID)
	if _, err := s.FromToken(ctx, forged); !errors.Is(err, core.ErrUnauthorized) {
		t.Errorf("token for a team the user is not in: %v", err)
	}
}

func errOnly[T any](_ T, err error) error { return err }

func TestAPIKeys(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	ann, _ := s.Signup(ctx, "ann@example.com", "Ann", "correct horse battery", "")
	bob, _ := s.Signup(ctx, "bob@example.com", "Bob", "bob's long password", "")
	annP, _ := s.FromToken(ctx, ann.Token)
	bobP, _ := s.FromToken(ctx, bob.Token)

	k, err := s.CreateAPIKey(ctx, annP, "ci")
	if err != nil {
		t.Fatal(err)
	}
	if !auth.ValidAPIKey(k.Key) || k.Prefix != k.Key[:len(k.Prefix)] {
		t.Fatalf("key %+v", k)
	}
	kp, err := s.FromAPIKey(ctx, k.Key)
	if err != nil || kp.TeamID != ann.TeamID || kp.APIKeyID != k.ID || kp.UserID != "" || kp.CanManage() {
		t.Fatalf("principal from key: %+v %v", kp, err)
	}
	// A key cannot manage keys; another team cannot see or revoke it.
	if _, err := s.CreateAPIKey(ctx, kp, "x"); !errors.Is(err, core.ErrForbidden) {
		t.Errorf("key creating a key: %v", err)
	}
	if keys, _ := s.ListAPIKeys(ctx, bobP); len(keys) != 0 {
		t.Errorf("bob sees %d keys of ann's team", len(keys))
	}
	if err := s.RevokeAPIKey(ctx, bobP, k.ID); !errors.Is(err, core.ErrNotFound) {
		t.Errorf("bob revoking ann's key: %v", err)
	}
	if keys, _ := s.ListAPIKeys(ctx, annP); len(keys) != 1 || keys[0].ID != k.ID {
		t.Errorf("ann's keys: %+v", keys)
	}
	if err := s.RevokeAPIKey(ctx, annP, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FromAPIKey(ctx, k.Key); !errors.Is(err, core.ErrUnauthorized) {
		t.Errorf("revoked key: %v", err)
	}
	if err := s.RevokeAPIKey(ctx, annP, k.ID); !errors.Is(err, core.ErrNotFound) {
		t.Errorf("revoking twice: %v", err)
	}
	if _, err := s.FromAPIKey(ctx, "wrn_"+"0123456789abcdef0123456789abcdef"); !errors.Is(err, core.ErrUnauthorized) {
		t.Errorf("unknown key: %v", err)
	}
	// Every step above that changed something is in the audit log.
	var n int
	if err := s.st.DB.QueryRow(ctx, `SELECT count(*) FROM audit_logs WHERE action IN ('api_key.create', 'api_key.revoke', 'user.signup')`).Scan(&n); err != nil || n != 4 {
		t.Errorf("audit entries: %d %v, want 2 signups + create + revoke", n, err)
	}
}

// With sign-up closed every sign-up is refused alike, before anything is looked up or
// counted, and nothing is created; an operator's CreateUser still makes accounts, who
// then log in.
func TestSignupClosed(t *testing.T) {
	s := newService(t, func(c *Config) { c.SignupClosed = true })
	ctx := context.Background()
	if _, _, err := CreateUser(ctx, s.st.DB, "Ann@Example.com", "Ann", "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	for _, email := range []string{"ann@example.com", "new@example.com", "not-an-email"} {
		_, err := s.Signup(ctx, email, "", "correct horse battery", "10.0.0.1")
		if !errors.Is(err, core.ErrForbidden) || !strings.Contains(err.Error(), "sign-up is closed") {
			t.Errorf("signup %s with sign-up closed: %v, want forbidden", email, err)
		}
	}
	var users int
	if err := s.st.DB.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&users); err != nil || users != 1 {
		t.Errorf("users: %d %v, want only the operator's", users, err)
	}
	if keys, err := s.st.Redis.Keys(ctx, "wrenn:*").Result(); err != nil || len(keys) != 0 {
		t.Errorf("closed sign-ups were counted: %v %v", keys, err)
	}
	sess, err := s.Login(ctx, "ann@example.com", "correct horse battery", "10.0.0.1")
	if err != nil || sess.Role != core.Owner {
		t.Fatalf("login of the operator-made user: %+v %v", sess, err)
	}
	if _, _, err := CreateUser(ctx, s.st.DB, "ann@example.com", "", "another long password"); !errors.Is(err, core.ErrConflict) {
		t.Errorf("operator making a taken email: %v", err)
	}
	var audited int
	if err := s.st.DB.QueryRow(ctx, `SELECT count(*) FROM audit_logs WHERE action = 'user.create' AND actor_user_id IS NULL`).Scan(&audited); err != nil || audited != 1 {
		t.Errorf("audit entries of operator-made users: %d %v", audited, err)
	}
}
