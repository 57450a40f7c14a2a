// Package hosts is the machines sandboxes run on, as the control plane knows them:
// creating a host and its one-time registration token, the agent's registration
// (certificate pinning, per-host secret, host JWT + rotating refresh token),
// heartbeats, how to reach a registered agent (Lookup, for hostclient.Pool), and
// listing, tagging and deleting hosts.
//
// What lands here next: Firecracker hosts and their capabilities, draining, and
// host metrics. Placing sandboxes on hosts is the sandboxes package's (it reads the
// hosts table); this package never talks to an agent except through Sandboxes when a
// host is deleted with its sandboxes.
package hosts

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/internal/server/auth"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// DefaultHeartbeatInterval is how often agents report unless configured.
const DefaultHeartbeatInterval = 30 * time.Second

// Sandboxes is what deleting a host needs from the sandboxes service.
type Sandboxes interface {
	// StopOnHost destroys a sandbox on its host as far as the host answers (only
	// tried when reachable) and records it stopped with why.
	StopOnHost(ctx context.Context, sb db.Sandbox, why string, reachable bool)
}

// Conns is the cache of connections to agents (hostclient.Pool): a deleted or
// re-registered host's connection must not be reused.
type Conns interface {
	Evict(hostID string)
}

// Service manages hosts.
type Service struct {
	st        *core.Store
	q         *db.Queries
	tokens    *auth.Tokens
	sealer    *auth.Sealer
	conns     Conns
	sandboxes Sandboxes
	heartbeat time.Duration
	log       *slog.Logger
	now       func() time.Time
}

// Config is what the hosts service runs on.
type Config struct {
	Store  *core.Store
	Tokens *auth.Tokens // issues and verifies host JWTs
	// Sealer protects the per-host secrets at rest.
	Sealer    *auth.Sealer
	Conns     Conns
	Sandboxes Sandboxes
	// HeartbeatInterval is how often agents are told to report (default 30 s; whole
	// seconds).
	HeartbeatInterval time.Duration
	Log               *slog.Logger
}

// New returns the hosts service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Tokens == nil || cfg.Sealer == nil || cfg.Conns == nil || cfg.Sandboxes == nil {
		return nil, errors.New("hosts: Store, Tokens, Sealer, Conns and Sandboxes are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.HeartbeatInterval < time.Second {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	return &Service{st: cfg.Store, q: cfg.Store.Q, tokens: cfg.Tokens, sealer: cfg.Sealer, conns: cfg.Conns,
		sandboxes: cfg.Sandboxes, heartbeat: cfg.HeartbeatInterval, log: cfg.Log, now: time.Now}, nil
}
