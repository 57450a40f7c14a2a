package sandboxes

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/wrennhq/wrenn/internal/envd/envdapi"
	"github.com/wrennhq/wrenn/internal/ident"
	"github.com/wrennhq/wrenn/internal/lifecycle"
	"github.com/wrennhq/wrenn/internal/server/auth"
	"github.com/wrennhq/wrenn/internal/server/core"
	"github.com/wrennhq/wrenn/internal/server/hostclient"
)

// ProxyCredentials are what a proxied request may carry to reach a private sandbox.
type ProxyCredentials struct {
	APIKey       string // X-API-Key of the sandbox's team
	TrafficToken string // e2b-traffic-access-token
}

// ProxyDeniedError is a refused proxied request (403), saying which credential is
// missing or wrong.
type ProxyDeniedError struct{ Message string }

func (e *ProxyDeniedError) Error() string { return e.Message }
func (e *ProxyDeniedError) Unwrap() error { return core.ErrForbidden }

// TrafficTokenHeader carries a private sandbox's traffic token.
const TrafficTokenHeader = "E2b-Traffic-Access-Token"

// ErrPaused: a proxied request for a sandbox that is paused (or pausing, resuming).
// Nothing resumes it on traffic (yet): the caller resumes it through the API.
var ErrPaused = errors.New("the sandbox is paused")

// ProxyRoute decides whether a request may reach port of sandbox id and returns the
// endpoint of the agent that runs it. core.ErrNotFound: no such running sandbox;
// ErrPaused: the sandbox is paused (the proxy answers 502 to both, as E2B's does,
// saying which). Port 49983 (envd) is never gated here: envd checks its own access
// token. Other ports of a sandbox created with allow_public_traffic=false need the
// sandbox's traffic token or an API key of its team.
func (s *Service) ProxyRoute(ctx context.Context, id string, port int, c ProxyCredentials) (hostclient.Endpoint, error) {
	if !ident.ValidSandboxID(id) {
		return hostclient.Endpoint{}, fmt.Errorf("%w: sandbox %s", core.ErrNotFound, id)
	}
	row, err := s.q.GetSandboxForProxy(ctx, id)
	if err == nil && pausedConflict(id, lifecycle.State(row.Status)) != nil {
		return hostclient.Endpoint{}, fmt.Errorf("%w: sandbox %s is %s", ErrPaused, id, row.Status)
	}
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && (lifecycle.State(row.Status) != lifecycle.Running || !row.HostID.Valid)) {
		return hostclient.Endpoint{}, fmt.Errorf("%w: sandbox %s", core.ErrNotFound, id)
	}
	if err != nil {
		return hostclient.Endpoint{}, fmt.Errorf("proxy to %s: %w", id, err)
	}
	if port != envdapi.Port && !row.AllowPublicTraffic {
		switch {
		case c.TrafficToken != "":
			if row.TrafficTokenHash == nil || subtle.ConstantTimeCompare(auth.HashToken(c.TrafficToken), row.TrafficTokenHash) != 1 {
				return hostclient.Endpoint{}, &ProxyDeniedError{"Invalid " + TrafficTokenHeader + " header"}
			}
		case c.APIKey != "":
			p, err := s.keys.FromAPIKey(ctx, c.APIKey)
			if err != nil || p.TeamID != core.UUIDString(row.TeamID) {
				return hostclient.Endpoint{}, &ProxyDeniedError{"Invalid X-API-Key header: not a key of the sandbox's team"}
			}
		default:
			return hostclient.Endpoint{}, &ProxyDeniedError{"Missing " + TrafficTokenHeader + " header: the sandbox's traffic is private"}
		}
	}
	ep, err := s.agents.Endpoint(ctx, core.UUIDString(row.HostID))
	if err != nil {
		return hostclient.Endpoint{}, fmt.Errorf("host of %s: %w", id, err)
	}
	return ep, nil
}
