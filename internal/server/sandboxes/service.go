// Package sandboxes is the control plane's sandboxes: creating one (validation, the
// team's quota, placement on a host with its capacity reserved atomically, the agent's
// create), getting, listing (with a shared cache), pausing and resuming, destroying,
// and reaching a sandbox's agent for exec, files, ping and the port proxy's route; and
// the host monitor, which reconciles what PostgreSQL says should run with what each
// host runs.
//
// What lands here next: snapshots and templates, and sandbox metrics.
package sandboxes

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
	"github.com/wrennhq/wrenn/internal/server/core"
	"github.com/wrennhq/wrenn/internal/server/hostclient"
	"github.com/wrennhq/wrenn/internal/server/scheduler"
)

// Agents reaches the agents of registered hosts (hostclient.Pool).
type Agents interface {
	Agent(ctx context.Context, hostID string) (hostagentv1connect.HostAgentServiceClient, error)
	// Endpoint is how the port proxy reaches a host's agent.
	Endpoint(ctx context.Context, hostID string) (hostclient.Endpoint, error)
}

// APIKeys resolves a team API key (the accounts service); the port proxy lets a
// private sandbox's team in with one.
type APIKeys interface {
	FromAPIKey(ctx context.Context, key string) (*core.Principal, error)
}

// Service manages sandboxes.
type Service struct {
	st            *core.Store
	q             *db.Queries
	agents        Agents
	keys          APIKeys
	sched         scheduler.Scheduler
	allowInternet bool
	quota         core.Quota
	log           *slog.Logger
	now           func() time.Time
	lists         listCache
	envdTokenKey  []byte
	placements    PlacementObserver // nil: none
	faultAt       string            // Config.FaultPoint
	faultRelease  chan struct{}     // closed by ReleaseFaultPoint
	releaseOnce   sync.Once
	// bg counts the creates StartSandbox left booting (Wait).
	bg sync.WaitGroup
}

// Config is what the sandboxes service runs on.
type Config struct {
	Store   *core.Store
	Agents  Agents
	APIKeys APIKeys
	// Scheduler places sandboxes on hosts (default least-loaded).
	Scheduler scheduler.Scheduler
	// AllowInternetDefault is the egress of sandboxes whose create does not say.
	AllowInternetDefault bool
	// Quota is every team's default quota (WRENN_QUOTA_*); the zero Quota limits nothing.
	Quota core.Quota
	// EnvdTokenKey derives each sandbox's envd access token from its id (see
	// EnvdAccessToken). Every control plane of an install must have the same key (the
	// server derives it from WRENN_JWT_SECRET); nil: a random one, for tests.
	EnvdTokenKey []byte
	// Placements learns the outcome of every placement decision (metrics); nil: none.
	Placements PlacementObserver
	// FaultPoint, for fault-injection tests only, holds every operation that reaches
	// it (one of FaultPoints) until the server is killed or ReleaseFaultPoint.
	FaultPoint string
	Log        *slog.Logger
}

// New returns the sandboxes service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Agents == nil || cfg.APIKeys == nil {
		return nil, errors.New("sandboxes: Store, Agents and APIKeys are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.FaultPoint != "" && !slices.Contains(FaultPoints, cfg.FaultPoint) {
		return nil, fmt.Errorf("sandboxes: unknown fault point %q: want one of %v", cfg.FaultPoint, FaultPoints)
	}
	if cfg.Scheduler == nil {
		cfg.Scheduler, _ = scheduler.New(scheduler.LeastLoaded)
	}
	if cfg.EnvdTokenKey == nil {
		cfg.EnvdTokenKey = make([]byte, 32)
		if _, err := rand.Read(cfg.EnvdTokenKey); err != nil {
			return nil, err
		}
	}
	return &Service{st: cfg.Store, q: cfg.Store.Q, agents: cfg.Agents, keys: cfg.APIKeys, sched: cfg.Scheduler,
		allowInternet: cfg.AllowInternetDefault, quota: cfg.Quota, log: cfg.Log, now: time.Now, envdTokenKey: cfg.EnvdTokenKey,
		placements: cfg.Placements, faultAt: cfg.FaultPoint, faultRelease: make(chan struct{})}, nil
}

func (s *Service) agentOf(ctx context.Context, row db.Sandbox) (hostagentv1connect.HostAgentServiceClient, error) {
	if !row.HostID.Valid {
		return nil, fmt.Errorf("%w: sandbox %s is on no host", core.ErrNotFound, row.ID)
	}
	agent, err := s.agents.Agent(ctx, core.UUIDString(row.HostID))
	if err != nil {
		return nil, fmt.Errorf("host of %s: %w", row.ID, err)
	}
	return agent, nil
}

// agentError maps an agent's answer to the service's errors: what the agent or the
// guest refused because of the request (invalid, missing, not permitted, disk full,
// not possible on that host) keeps that meaning and the guest's message; the rest is
// ours.
func agentError(err error) error {
	if errors.Is(err, hostclient.ErrFingerprint) {
		return fmt.Errorf("%w: the host's agent presents another certificate than the one pinned at registration", core.ErrUnavailable)
	}
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable:
		return fmt.Errorf("%w: the sandbox's host does not answer", core.ErrUnavailable)
	case connect.CodeInvalidArgument:
		return fmt.Errorf("%w: %s", core.ErrInvalid, agentMessage(err))
	case connect.CodeNotFound:
		return fmt.Errorf("%w: %s", core.ErrNotFound, agentMessage(err))
	case connect.CodeFailedPrecondition, connect.CodeAlreadyExists:
		return fmt.Errorf("%w: %s", core.ErrConflict, agentMessage(err))
	case connect.CodePermissionDenied:
		return fmt.Errorf("%w: %s", core.ErrForbidden, agentMessage(err))
	case connect.CodeResourceExhausted:
		return fmt.Errorf("%w: %s", core.ErrNoSpace, agentMessage(err))
	case connect.CodeUnimplemented:
		return fmt.Errorf("%w: %s", core.ErrNotImplemented, agentMessage(err))
	}
	return err
}

// agentMessage is the agent's own message, without Connect's code prefix or the
// agent's error class (the caller adds its own).
func agentMessage(err error) string {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return err.Error()
	}
	msg := ce.Message()
	for _, class := range []string{"invalid request: ", "sandbox not found: ", "template not found: ", "not supported on this host: "} {
		msg = strings.TrimPrefix(msg, class)
	}
	return msg
}
