package hostreg

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/wrennhq/wrenn/internal/hostproto"
)

func TestIdentityIsStable(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreateIdentity(dir)
	if err != nil || a.Fingerprint != b.Fingerprint || len(a.Fingerprint) != 64 {
		t.Fatalf("reloaded identity: %v %s vs %s", err, a.Fingerprint, b.Fingerprint)
	}
	if fi, err := os.Stat(filepath.Join(dir, "tls.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", fi, err)
	}
	if c, _ := LoadOrCreateIdentity(t.TempDir()); c.Fingerprint == a.Fingerprint {
		t.Error("two hosts got the same identity")
	}
}

// fakeControlPlane answers register, refresh and heartbeat like the control plane:
// only the newest host token is accepted.
type fakeControlPlane struct {
	mu        sync.Mutex
	token     string // the host token heartbeats must carry
	refreshes int
	beats     int
	dir       string
	onDisk    []string // the token saved on disk at each refresh answer's next heartbeat
}

func (f *fakeControlPlane) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.URL.Path {
	case hostproto.RegisterPath:
		f.token = "jwt-0"
		json.NewEncoder(w).Encode(hostproto.RegisterResponse{HostID: "h1", HostSecret: "wrs_s", Tokens: hostproto.Tokens{Token: "jwt-0", RefreshToken: "r0"}})
	case hostproto.RefreshPath:
		var req hostproto.RefreshRequest
		json.NewDecoder(r.Body).Decode(&req)
		f.refreshes++
		f.token = "jwt-new"
		json.NewEncoder(w).Encode(hostproto.Tokens{Token: "jwt-new", RefreshToken: "r-new"})
	case hostproto.HeartbeatPath:
		if r.Header.Get("Authorization") != "Bearer "+f.token {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"code":"unauthorized","message":"bad host token"}}`)
			return
		}
		c, _ := LoadCredentials(f.dir)
		f.onDisk = append(f.onDisk, c.Token)
		f.beats++
		json.NewEncoder(w).Encode(hostproto.HeartbeatResponse{Status: "online", IntervalSec: 30})
	}
}

func TestRegisterAndHeartbeatRefresh(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cp := &fakeControlPlane{dir: dir}
	srv := httptest.NewServer(cp)
	defer srv.Close()
	creds, err := Register(ctx, srv.Client(), srv.URL, dir, hostproto.RegisterRequest{Token: "wrh_x", Address: "10.0.0.1:50051"})
	if err != nil {
		t.Fatal(err)
	}
	if !creds.CheckSecret("wrs_s") || creds.CheckSecret("wrs_t") || creds.CheckSecret("") {
		t.Error("secret check")
	}
	saved, err := LoadCredentials(dir)
	if err != nil || saved.HostID != "h1" || saved.RefreshToken != "r0" {
		t.Fatalf("saved credentials: %+v %v", saved, err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "host.json"))
	if !json.Valid(raw) || containsSecret(raw) {
		t.Errorf("host.json holds the secret itself: %s", raw)
	}
	hb := NewHeartbeat(dir, creds, srv.Client(), slog.New(slog.DiscardHandler), func() hostproto.HeartbeatRequest { return hostproto.HeartbeatRequest{} })
	if err := hb.Beat(ctx); err != nil || cp.beats != 1 {
		t.Fatalf("first beat: %v (%d beats)", err, cp.beats)
	}
	// The control plane stops accepting the token: one refresh, saved before use.
	cp.mu.Lock()
	cp.token = "something else"
	cp.mu.Unlock()
	if err := hb.Beat(ctx); err != nil {
		t.Fatalf("beat after refusal: %v", err)
	}
	if cp.refreshes != 1 || cp.beats != 2 || cp.onDisk[1] != "jwt-new" {
		t.Errorf("refresh: %d refreshes, %d beats, on disk %v", cp.refreshes, cp.beats, cp.onDisk)
	}
	if c, _ := LoadCredentials(dir); c.RefreshToken != "r-new" || c.HostID != "h1" || c.SecretHash != creds.SecretHash {
		t.Errorf("credentials after refresh: %+v", c)
	}
}

func TestHeartbeatWithoutWorkingCredentials(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":{"code":"unauthorized","message":"refresh token unknown, revoked or expired"}}`)
	}))
	defer srv.Close()
	dir := t.TempDir()
	c := &Credentials{HostID: "h", Server: srv.URL, SecretHash: "00", Tokens: hostproto.Tokens{Token: "t", RefreshToken: "r"}}
	hb := NewHeartbeat(dir, c, srv.Client(), slog.New(slog.DiscardHandler), func() hostproto.HeartbeatRequest { return hostproto.HeartbeatRequest{} })
	err := hb.Beat(context.Background())
	var he *HTTPError
	if !errors.As(err, &he) || he.Status != 401 {
		t.Fatalf("beat with dead credentials: %v", err)
	}
	if _, err := LoadCredentials(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed refresh wrote credentials: %v", err)
	}
}

func containsSecret(b []byte) bool {
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	for _, v := range m {
		if v == "wrs_s" {
			return true
		}
	}
	return false
}
