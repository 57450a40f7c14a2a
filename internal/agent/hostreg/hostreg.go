package hostreg

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/wrennhq/wrenn/internal/atomicfile"
	"github.com/wrennhq/wrenn/internal/hostproto"
)

// credentialsFile under the agent's directory.
const credentialsFile = "host.json"

// Credentials are what registration gave this host. The control plane's secret is
// kept only as its SHA-256.
type Credentials struct {
	HostID     string `json:"host_id"`
	Server     string `json:"server"`
	SecretHash string `json:"secret_sha256"`
	hostproto.Tokens
}

// LoadCredentials reads dir/host.json; os.ErrNotExist when the host never registered.
func LoadCredentials(dir string) (*Credentials, error) {
	b, err := os.ReadFile(filepath.Join(dir, credentialsFile))
	if err != nil {
		return nil, err
	}
	var c Credentials
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("host credentials %s: %w", filepath.Join(dir, credentialsFile), err)
	}
	if c.HostID == "" || c.Server == "" || c.SecretHash == "" {
		return nil, fmt.Errorf("host credentials %s are incomplete", filepath.Join(dir, credentialsFile))
	}
	return &c, nil
}

// Save writes the credentials atomically (0600) and durably, before they are used.
func (c *Credentials) Save(dir string) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, credentialsFile), b, 0o600)
}

// CheckSecret reports whether bearer is the control plane's secret (constant time).
func (c *Credentials) CheckSecret(bearer string) bool {
	sum := sha256.Sum256([]byte(bearer))
	want, err := hex.DecodeString(c.SecretHash)
	return err == nil && subtle.ConstantTimeCompare(sum[:], want) == 1
}

// HTTPError is a non-2xx answer of the control plane.
type HTTPError struct {
	Status  int
	Message string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("control plane: %d: %s", e.Status, e.Message) }

// post sends a JSON request and decodes the JSON answer.
func post(ctx context.Context, hc *http.Client, url, bearer string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct{ Message string } `json:"error"`
		}
		msg := strings.TrimSpace(string(raw))
		if json.Unmarshal(raw, &e) == nil && e.Error.Message != "" {
			msg = e.Error.Message
		}
		return &HTTPError{Status: resp.StatusCode, Message: msg}
	}
	return json.Unmarshal(raw, out)
}

// Register exchanges a one-time token for this host's credentials and saves them
// under dir before returning.
func Register(ctx context.Context, hc *http.Client, server, dir string, req hostproto.RegisterRequest) (*Credentials, error) {
	server = strings.TrimRight(server, "/")
	var resp hostproto.RegisterResponse
	if err := post(ctx, hc, server+hostproto.RegisterPath, "", req, &resp); err != nil {
		return nil, fmt.Errorf("register with %s: %w", server, err)
	}
	sum := sha256.Sum256([]byte(resp.HostSecret))
	c := &Credentials{HostID: resp.HostID, Server: server, SecretHash: hex.EncodeToString(sum[:]), Tokens: resp.Tokens}
	if err := c.Save(dir); err != nil {
		return nil, fmt.Errorf("save host credentials: %w", err)
	}
	return c, nil
}

// Heartbeat keeps the host online: it reports every interval and renews the host
// token when the control plane refuses it (refresh token rotated, new credentials
// saved before use).
type Heartbeat struct {
	Dir      string
	HTTP     *http.Client
	Log      *slog.Logger
	Interval time.Duration
	Report   func() hostproto.HeartbeatRequest
	// Fingerprint of the agent's certificate, sent with each heartbeat so the control
	// plane notices a host that serves another certificate than the pinned one.
	Fingerprint string

	mu    sync.Mutex
	creds *Credentials
}

// NewHeartbeat returns a heartbeat for creds.
func NewHeartbeat(dir string, creds *Credentials, hc *http.Client, log *slog.Logger, report func() hostproto.HeartbeatRequest) *Heartbeat {
	return &Heartbeat{Dir: dir, HTTP: hc, Log: log, Interval: 30 * time.Second, Report: report, creds: creds}
}

// Credentials returns the current credentials.
func (h *Heartbeat) Credentials() *Credentials {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.creds
}

// Run beats until ctx ends.
func (h *Heartbeat) Run(ctx context.Context) {
	for {
		if err := h.Beat(ctx); err != nil && ctx.Err() == nil {
			h.Log.Error("HOST CREDENTIALS: heartbeat failed; sandboxes keep running, but the control plane will mark this host unreachable",
				"host", h.Credentials().HostID, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(h.Interval):
		}
	}
}

// renewBefore is how long before its expiry a host token is renewed unasked.
const renewBefore = 24 * time.Hour

// Beat sends one heartbeat, refreshing the token first when it is about to expire
// and once more if it is refused.
func (h *Heartbeat) Beat(ctx context.Context) error {
	if exp := h.Credentials().TokenExpiresAt; !exp.IsZero() && time.Until(exp) < renewBefore {
		if err := h.Refresh(ctx); err != nil {
			h.Log.Warn("renew host token before it expires", "err", err)
		}
	}
	err := h.send(ctx)
	var he *HTTPError
	if !errors.As(err, &he) || (he.Status != http.StatusUnauthorized && he.Status != http.StatusForbidden) {
		return err
	}
	if rerr := h.Refresh(ctx); rerr != nil {
		return fmt.Errorf("token refused (%v) and refresh failed: %w", err, rerr)
	}
	return h.send(ctx)
}

func (h *Heartbeat) send(ctx context.Context) error {
	c := h.Credentials()
	var resp hostproto.HeartbeatResponse
	report := h.Report()
	report.CertFingerprint = h.Fingerprint
	if err := post(ctx, h.HTTP, c.Server+hostproto.HeartbeatPath, c.Token, report, &resp); err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	if resp.IntervalSec > 0 {
		h.Interval = time.Duration(resp.IntervalSec) * time.Second
	}
	return nil
}

// Refresh exchanges the refresh token for new tokens, saved before they replace the
// old ones (a crash in between leaves the old refresh token, which still works).
func (h *Heartbeat) Refresh(ctx context.Context) error {
	c := h.Credentials()
	var tokens hostproto.Tokens
	if err := post(ctx, h.HTTP, c.Server+hostproto.RefreshPath, "", hostproto.RefreshRequest{RefreshToken: c.RefreshToken}, &tokens); err != nil {
		return fmt.Errorf("refresh host token: %w", err)
	}
	next := *c
	next.Tokens = tokens
	if err := next.Save(h.Dir); err != nil {
		return fmt.Errorf("save refreshed credentials: %w", err)
	}
	h.mu.Lock()
	h.creds = &next
	h.mu.Unlock()
	h.Log.Info("host token refreshed", "host", c.HostID, "expires", tokens.TokenExpiresAt)
	return nil
}
