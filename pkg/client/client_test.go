package client_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/pgtest"
	"github.com/wrennhq/wrenn/internal/server/api"
	"github.com/wrennhq/wrenn/internal/server/auth"
	"github.com/wrennhq/wrenn/internal/server/service"
	"github.com/wrennhq/wrenn/internal/server/store"
	"github.com/wrennhq/wrenn/pkg/client"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

// The SDK against a real control plane (accounts and keys; sandboxes are covered by
// the end-to-end tests, which need VMs).
func TestAccountsAndKeys(t *testing.T) {
	ctx := context.Background()
	pool, err := store.Open(ctx, pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	log := slog.New(slog.DiscardHandler)
	if _, err := store.Migrate(ctx, pool, log); err != nil {
		t.Fatal(err)
	}
	tokens, _ := auth.NewTokens(bytes.Repeat([]byte("k"), 32), time.Minute)
	srv := httptest.NewServer(api.New(service.New(pool, tokens, log), log))
	defer srv.Close()

	anon := client.New(srv.URL)
	s, err := anon.Signup(ctx, "ann@example.com", "Ann", "correct horse battery")
	if err != nil || s.Token == "" || s.Role != "owner" {
		t.Fatalf("signup: %+v %v", s, err)
	}
	_, err = anon.Login(ctx, "ann@example.com", "wrong password!")
	var apiErr *client.Error
	if !errors.As(err, &apiErr) || apiErr.Status != 401 || apiErr.Code != "unauthorized" {
		t.Fatalf("wrong password: %v", err)
	}
	ann := client.New(srv.URL, client.WithToken(s.Token))
	k, err := ann.CreateAPIKey(ctx, "sdk")
	if err != nil || !auth.ValidAPIKey(k.Key) {
		t.Fatalf("create key: %+v %v", k, err)
	}
	keys, err := ann.ListAPIKeys(ctx)
	if err != nil || len(keys) != 1 || keys[0].Key != "" || keys[0].ID != k.ID {
		t.Fatalf("list keys: %+v %v", keys, err)
	}
	if _, err := ann.SwitchTeam(ctx, s.TeamID); err != nil {
		t.Errorf("switch to own team: %v", err)
	}
	// A key can list sandboxes but not manage keys.
	byKey := client.New(srv.URL, client.WithAPIKey(k.Key))
	if list, err := byKey.ListSandboxes(ctx); err != nil || len(list) != 0 {
		t.Errorf("list sandboxes with a key: %v %v", list, err)
	}
	if _, err := byKey.ListAPIKeys(ctx); !errors.As(err, &apiErr) || apiErr.Status != 403 {
		t.Errorf("key listing keys: %v", err)
	}
	if _, err := byKey.GetSandbox(ctx, "sb0123456789abcdefgh"); !client.IsNotFound(err) {
		t.Errorf("missing sandbox: %v", err)
	}
	if err := ann.RevokeAPIKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := byKey.ListSandboxes(ctx); !errors.As(err, &apiErr) || apiErr.Status != 401 {
		t.Errorf("revoked key: %v", err)
	}
}
