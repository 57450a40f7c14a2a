package hosts

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/redis/go-redis/v9"
	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/internal/hostproto"
	"github.com/wrennhq/wrenn/internal/ident"
	"github.com/wrennhq/wrenn/internal/server/auth"
	"github.com/wrennhq/wrenn/internal/server/core"
	"github.com/wrennhq/wrenn/internal/server/hostclient"
)

// RefreshTTL is how long a host's refresh token lives.
const RefreshTTL = 60 * 24 * time.Hour

var fingerprintPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// RegisterHost exchanges a one-time registration token for the host's credentials:
// its certificate fingerprint is pinned, a per-host secret is issued (kept sealed
// here; the agent keeps its hash), and a host token and refresh token are returned.
func (s *Service) RegisterHost(ctx context.Context, req hostproto.RegisterRequest) (*hostproto.RegisterResponse, error) {
	refused := fmt.Errorf("%w: registration token unknown, already used or expired", core.ErrUnauthorized)
	if !auth.ValidOpaqueToken(req.Token, auth.RegistrationTokenPrefix) {
		return nil, refused
	}
	host, port, err := net.SplitHostPort(req.Address)
	if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("%w: address must be host:port", core.ErrInvalid)
	}
	if !fingerprintPattern.MatchString(req.CertFingerprint) {
		return nil, fmt.Errorf("%w: cert_fingerprint must be 64 lowercase hex characters", core.ErrInvalid)
	}
	if req.Capacity.VCPUs < 0 || req.Capacity.MemoryMB < 0 || ident.CheckText("version", req.Version, 100) != nil || ident.CheckText("address", req.Address, 300) != nil {
		return nil, fmt.Errorf("%w: bad capacity, version or address", core.ErrInvalid)
	}
	hash := auth.HashToken(req.Token)
	// Single use across every replica: whoever deletes the key registers.
	hostID, err := s.st.Redis.GetDel(ctx, registrationKey(hash)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, refused
	}
	if err != nil {
		return nil, fmt.Errorf("registration token: %w", err)
	}
	secret, _ := auth.NewOpaqueToken(auth.HostSecretPrefix)
	var resp *hostproto.RegisterResponse
	err = s.st.Tx(ctx, func(q *db.Queries) error {
		tok, err := q.UseHostToken(ctx, hash)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && core.UUIDString(tok.HostID) != hostID) {
			return refused
		}
		if err != nil {
			return err
		}
		row, err := q.RegisterHost(ctx, db.RegisterHostParams{
			ID: tok.HostID, Address: req.Address, CertFingerprint: &req.CertFingerprint,
			SecretSealed: s.sealer.Seal([]byte(secret), hostID), AgentVersion: req.Version,
			Vcpus: int32(req.Capacity.VCPUs), MemoryMB: int32(req.Capacity.MemoryMB),
		})
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: host %s is already registered or deleted", core.ErrConflict, hostID)
		}
		if err != nil {
			return err
		}
		tokens, err := s.issueHostTokens(ctx, q, row.ID, pgtype.UUID{})
		if err != nil {
			return err
		}
		resp = &hostproto.RegisterResponse{HostID: hostID, HostSecret: secret, Tokens: *tokens}
		return core.Audit(ctx, q, &core.Principal{TeamID: core.UUIDString(row.TeamID)}, "host.register", "host", hostID,
			map[string]any{"address": req.Address, "cert_fingerprint": req.CertFingerprint})
	})
	if err != nil {
		return nil, fmt.Errorf("register host: %w", err)
	}
	s.conns.Evict(hostID)
	return resp, nil
}

// issueHostTokens makes a host JWT and a new refresh token (child of parent).
func (s *Service) issueHostTokens(ctx context.Context, q *db.Queries, hostID, parent pgtype.UUID) (*hostproto.Tokens, error) {
	refresh, hash := auth.NewOpaqueToken(auth.RefreshTokenPrefix)
	refreshExp := s.now().Add(RefreshTTL)
	if _, err := q.CreateHostRefreshToken(ctx, db.CreateHostRefreshTokenParams{HostID: hostID, TokenHash: hash, ParentID: parent, ExpiresAt: refreshExp}); err != nil {
		return nil, err
	}
	jwt, exp, err := s.tokens.IssueHost(core.UUIDString(hostID))
	if err != nil {
		return nil, err
	}
	return &hostproto.Tokens{Token: jwt, TokenExpiresAt: exp, RefreshToken: refresh, RefreshExpiresAt: refreshExp}, nil
}

// RefreshHostToken rotates a host's refresh token, issue-then-revoke: the presented
// token gets a new child and stays valid until that child is first used (then it is
// revoked), so a host that crashed before saving the child can refresh again with
// the old token — which voids the unused child.
func (s *Service) RefreshHostToken(ctx context.Context, refresh string) (*hostproto.Tokens, error) {
	refused := fmt.Errorf("%w: refresh token unknown, revoked or expired", core.ErrUnauthorized)
	if !auth.ValidOpaqueToken(refresh, auth.RefreshTokenPrefix) {
		return nil, refused
	}
	var out *hostproto.Tokens
	err := s.st.Tx(ctx, func(q *db.Queries) error {
		row, err := q.GetHostRefreshToken(ctx, auth.HashToken(refresh))
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && (row.RevokedAt != nil || !row.ExpiresAt.After(s.now()))) {
			return refused
		}
		if err != nil {
			return err
		}
		if _, err := q.GetHost(ctx, row.HostID); errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: the host was deleted", core.ErrUnauthorized)
		} else if err != nil {
			return err
		}
		if row.UsedAt == nil && row.ParentID.Valid {
			// The child's first use completes the rotation that made it.
			if err := q.RevokeHostRefreshToken(ctx, row.ParentID); err != nil {
				return err
			}
		}
		if err := q.MarkHostRefreshTokenUsed(ctx, row.ID); err != nil {
			return err
		}
		if err := q.RevokeUnusedHostRefreshChildren(ctx, row.ID); err != nil {
			return err
		}
		out, err = s.issueHostTokens(ctx, q, row.HostID, row.ID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("refresh host token: %w", err)
	}
	return out, nil
}

// HostFromToken verifies a host JWT and returns the host id.
func (s *Service) HostFromToken(token string) (string, error) {
	id, err := s.tokens.VerifyHost(token)
	if err != nil {
		return "", fmt.Errorf("%w: %v", core.ErrUnauthorized, err)
	}
	return id, nil
}

// Heartbeat records that a host is alive (an unreachable host is online again; the
// monitor then restores its missing sandboxes).
func (s *Service) Heartbeat(ctx context.Context, hostID string, req hostproto.HeartbeatRequest) (*hostproto.HeartbeatResponse, error) {
	hid, err := core.ParseUUID(hostID)
	if err != nil {
		return nil, fmt.Errorf("%w: bad host", core.ErrUnauthorized)
	}
	if req.Capacity.VCPUs < 0 || req.Capacity.MemoryMB < 0 || ident.CheckText("version", req.Version, 100) != nil {
		return nil, fmt.Errorf("%w: bad capacity or version", core.ErrInvalid)
	}
	if host, err := s.q.GetHost(ctx, hid); err == nil && host.CertFingerprint != nil && req.CertFingerprint != *host.CertFingerprint {
		return nil, fmt.Errorf("%w: host %s serves a certificate (%.12s…) that does not match the pinned fingerprint (%.12s…): register it again", core.ErrForbidden, hostID, req.CertFingerprint, *host.CertFingerprint)
	}
	row, err := s.q.HostHeartbeat(ctx, db.HostHeartbeatParams{ID: hid, Vcpus: int32(req.Capacity.VCPUs), MemoryMB: int32(req.Capacity.MemoryMB), AgentVersion: req.Version})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: host %s is deleted", core.ErrForbidden, hostID)
	}
	if err != nil {
		return nil, fmt.Errorf("heartbeat of %s: %w", hostID, err)
	}
	return &hostproto.HeartbeatResponse{Status: row.Status, IntervalSec: int(s.heartbeat / time.Second)}, nil
}

// Lookup is how the control plane reaches registered hosts (hostclient.Pool's
// lookup): address, pinned certificate fingerprint and unsealed secret, read from the
// database. It needs no Service, so the pool can exist before the services using it.
func Lookup(st *core.Store, sealer *auth.Sealer) hostclient.Lookup {
	return func(ctx context.Context, hostID string) (hostclient.Host, error) {
		hid, err := core.ParseUUID(hostID)
		if err != nil {
			return hostclient.Host{}, err
		}
		row, err := st.Q.GetHost(ctx, hid)
		if err != nil {
			return hostclient.Host{}, fmt.Errorf("host %s: %w", hostID, err)
		}
		if row.SecretSealed == nil || row.CertFingerprint == nil {
			return hostclient.Host{}, fmt.Errorf("host %s has not registered", hostID)
		}
		secret, err := sealer.Open(row.SecretSealed, hostID)
		if err != nil {
			return hostclient.Host{}, fmt.Errorf("host %s: %w", hostID, err)
		}
		return hostclient.Host{ID: hostID, Address: row.Address, CertFingerprint: *row.CertFingerprint, Secret: string(secret)}, nil
	}
}

// HostConn is Lookup on the service's own store.
func (s *Service) HostConn(ctx context.Context, hostID string) (hostclient.Host, error) {
	return Lookup(s.st, s.sealer)(ctx, hostID)
}
