package accounts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/internal/ident"
	"github.com/wrennhq/wrenn/internal/server/auth"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// APIKey is a key as listed; the secret itself is only in CreatedAPIKey, once.
type APIKey struct {
	ID         string
	Name       string
	Prefix     string
	CreatedBy  string
	CreatedAt  time.Time
	LastUsedAt *time.Time
}

// CreatedAPIKey carries the secret, shown to the user exactly once.
type CreatedAPIKey struct {
	APIKey
	Key string
}

// CreateAPIKey makes a key for the principal's team; owners and admins only. The
// team's API-key quota is checked with the team's row locked in the same transaction
// as the insert, so parallel creates cannot pass it together.
func (s *Service) CreateAPIKey(ctx context.Context, p *core.Principal, name string) (*CreatedAPIKey, error) {
	if !p.CanManage() {
		return nil, fmt.Errorf("%w: only team owners and admins manage API keys", core.ErrForbidden)
	}
	name = strings.TrimSpace(name)
	if err := ident.CheckText("name", name, 100); err != nil {
		return nil, fmt.Errorf("%w: %v", core.ErrInvalid, err)
	}
	key, hash, prefix, err := auth.NewAPIKey()
	if err != nil {
		return nil, err
	}
	teamID, err := core.ParseUUID(p.TeamID)
	if err != nil {
		return nil, err
	}
	params := db.CreateAPIKeyParams{TeamID: teamID, Name: name, KeyHash: hash, KeyPrefix: prefix}
	if p.UserID != "" {
		params.CreatedBy, _ = core.ParseUUID(p.UserID)
	}
	var out *CreatedAPIKey
	err = s.st.Tx(ctx, func(q *db.Queries) error {
		if err := s.checkAPIKeyQuota(ctx, q, teamID); err != nil {
			return err
		}
		row, err := q.CreateAPIKey(ctx, params)
		if err != nil {
			return err
		}
		out = &CreatedAPIKey{Key: key, APIKey: APIKey{
			ID: core.UUIDString(row.ID), Name: row.Name, Prefix: row.KeyPrefix, CreatedBy: core.UUIDString(row.CreatedBy), CreatedAt: row.CreatedAt,
		}}
		return core.Audit(ctx, q, p, "api_key.create", "api_key", out.ID, map[string]any{"name": name, "prefix": prefix})
	})
	if errors.Is(err, core.ErrQuota) || errors.Is(err, core.ErrNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("create api key: %w", err)
	}
	return out, nil
}

// checkAPIKeyQuota locks the team's row in q's transaction (LockTeam) and
// refuses one more key past the team's limit.
func (s *Service) checkAPIKeyQuota(ctx context.Context, q *db.Queries, teamID pgtype.UUID) error {
	team, err := q.LockTeam(ctx, teamID)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: team %s", core.ErrNotFound, core.UUIDString(teamID))
	}
	if err != nil {
		return fmt.Errorf("lock team for its quota: %w", err)
	}
	limit := s.quota.For(team).APIKeys
	if limit == 0 {
		return nil
	}
	n, err := q.CountLiveAPIKeys(ctx, teamID)
	if err != nil {
		return fmt.Errorf("count api keys: %w", err)
	}
	if core.Exceeds(limit, int(n), 1) {
		return fmt.Errorf("%w: %d API keys (limit %d); revoke a key, or ask a platform administrator to raise the limit", core.ErrQuota, n, limit)
	}
	return nil
}

// ListAPIKeys lists the team's working keys (never their secrets).
func (s *Service) ListAPIKeys(ctx context.Context, p *core.Principal) ([]APIKey, error) {
	teamID, err := core.ParseUUID(p.TeamID)
	if err != nil {
		return nil, err
	}
	rows, err := s.q.ListAPIKeys(ctx, teamID)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	out := make([]APIKey, 0, len(rows))
	for _, r := range rows {
		out = append(out, APIKey{ID: core.UUIDString(r.ID), Name: r.Name, Prefix: r.KeyPrefix, CreatedBy: core.UUIDString(r.CreatedBy), CreatedAt: r.CreatedAt, LastUsedAt: r.LastUsedAt})
	}
	return out, nil
}

// RevokeAPIKey revokes a key of the principal's team; another team's key is not found.
func (s *Service) RevokeAPIKey(ctx context.Context, p *core.Principal, id string) error {
	if !p.CanManage() {
		return fmt.Errorf("%w: only team owners and admins manage API keys", core.ErrForbidden)
	}
	keyID, err := core.ParseUUID(id)
	if err != nil {
		return err
	}
	teamID, err := core.ParseUUID(p.TeamID)
	if err != nil {
		return err
	}
	return s.st.Tx(ctx, func(q *db.Queries) error {
		n, err := q.RevokeAPIKey(ctx, db.RevokeAPIKeyParams{ID: keyID, TeamID: teamID})
		if err != nil {
			return fmt.Errorf("revoke api key: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("%w: api key %s", core.ErrNotFound, id)
		}
		return core.Audit(ctx, q, p, "api_key.revoke", "api_key", id, nil)
	})
}
