package accounts

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// TeamQuota is a team's quota as its members and platform administrators see it.
type TeamQuota struct {
	TeamID string
	Limits core.Quota // in force (0: no limit)
	Used   core.Quota // what the team holds now, counted as the limits count
	// Overrides are the platform administrators' limits for this team; nil: the
	// server's default.
	Overrides QuotaOverrides
}

// QuotaOverrides is one team's overrides of the default quota; nil is the default.
type QuotaOverrides struct {
	Sandboxes, VCPUs, MemoryMB, APIKeys *int
}

// QuotaChange is one limit of a change of overrides: Set false leaves the override as
// it is; Set with a nil Limit returns the limit to the server's default.
type QuotaChange struct {
	Set   bool
	Limit *int
}

// QuotaChanges is a change of a team's overrides, limit by limit.
type QuotaChanges struct {
	Sandboxes, VCPUs, MemoryMB, APIKeys QuotaChange
}

// TeamQuota returns a team's limits and usage: to its members, and to platform
// administrators for any team. Anyone else is told the team does not exist.
func (s *Service) TeamQuota(ctx context.Context, p *core.Principal, teamID string) (*TeamQuota, error) {
	if !p.Admin {
		if p.UserID == "" {
			return nil, fmt.Errorf("%w: team %s", core.ErrNotFound, teamID)
		}
		if _, err := s.membership(ctx, p.UserID, teamID); err != nil {
			return nil, err
		}
	}
	tid, err := core.ParseUUID(teamID)
	if err != nil {
		return nil, err
	}
	team, err := s.q.GetTeam(ctx, tid)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: team %s", core.ErrNotFound, teamID)
	}
	if err != nil {
		return nil, fmt.Errorf("get team %s: %w", teamID, err)
	}
	return s.teamQuota(ctx, s.q, team)
}

func (s *Service) teamQuota(ctx context.Context, q *db.Queries, team db.Team) (*TeamQuota, error) {
	used, err := q.TeamSandboxUsage(ctx, team.ID)
	if err != nil {
		return nil, fmt.Errorf("sandboxes of team %s: %w", core.UUIDString(team.ID), err)
	}
	keys, err := q.CountLiveAPIKeys(ctx, team.ID)
	if err != nil {
		return nil, fmt.Errorf("api keys of team %s: %w", core.UUIDString(team.ID), err)
	}
	return &TeamQuota{
		TeamID: core.UUIDString(team.ID),
		Limits: s.quota.For(team),
		Used:   core.Quota{Sandboxes: int(used.Sandboxes), VCPUs: int(used.Vcpus), MemoryMB: int(used.MemoryMB), APIKeys: int(keys)},
		Overrides: QuotaOverrides{
			Sandboxes: intOf(team.QuotaSandboxes), VCPUs: intOf(team.QuotaVcpus), MemoryMB: intOf(team.QuotaMemoryMB), APIKeys: intOf(team.QuotaAPIKeys),
		},
	}, nil
}

// SetTeamQuota changes a team's overrides (platform administrators only) and returns
// the team's quota after the change. Lowering a limit below what the team holds stops
// nothing that runs; it refuses new sandboxes or keys until the team is below it.
func (s *Service) SetTeamQuota(ctx context.Context, p *core.Principal, teamID string, c QuotaChanges) (*TeamQuota, error) {
	if !p.Admin {
		return nil, fmt.Errorf("%w: platform administrators only", core.ErrForbidden)
	}
	tid, err := core.ParseUUID(teamID)
	if err != nil {
		return nil, err
	}
	for _, l := range []struct {
		name   string
		change QuotaChange
		max    int
	}{
		{"sandboxes", c.Sandboxes, core.MaxQuotaSandboxes}, {"vcpus", c.VCPUs, core.MaxQuotaVCPUs},
		{"memory_mb", c.MemoryMB, core.MaxQuotaMemoryMB}, {"api_keys", c.APIKeys, core.MaxQuotaAPIKeys},
	} {
		if v := l.change.Limit; v != nil && (*v < 0 || *v > l.max) {
			return nil, fmt.Errorf("%w: %s %d out of range 0..%d (0: no limit, null: the server's default)", core.ErrInvalid, l.name, *v, l.max)
		}
	}
	var out *TeamQuota
	err = s.st.Tx(ctx, func(q *db.Queries) error {
		// Locked as quota checks lock it, so a check never sees half a change.
		team, err := q.LockTeam(ctx, tid)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: team %s", core.ErrNotFound, teamID)
		}
		if err != nil {
			return fmt.Errorf("lock team %s: %w", teamID, err)
		}
		params := db.SetTeamQuotasParams{
			ID:             tid,
			QuotaSandboxes: c.Sandboxes.apply(team.QuotaSandboxes), QuotaVcpus: c.VCPUs.apply(team.QuotaVcpus),
			QuotaMemoryMB: c.MemoryMB.apply(team.QuotaMemoryMB), QuotaAPIKeys: c.APIKeys.apply(team.QuotaAPIKeys),
		}
		if team, err = q.SetTeamQuotas(ctx, params); err != nil {
			return fmt.Errorf("set quota of team %s: %w", teamID, err)
		}
		if out, err = s.teamQuota(ctx, q, team); err != nil {
			return err
		}
		o := out.Overrides
		return core.Audit(ctx, q, p.In(teamID), "team.quota", "team", teamID, map[string]any{
			"sandboxes": o.Sandboxes, "vcpus": o.VCPUs, "memory_mb": o.MemoryMB, "api_keys": o.APIKeys,
		})
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("team quota changed", "team", teamID, "by", p.UserID, "limits", out.Limits)
	return out, nil
}

// apply is the override after the change, from the one before it.
func (c QuotaChange) apply(old *int32) *int32 {
	switch {
	case !c.Set:
		return old
	case c.Limit == nil:
		return nil
	}
	v := int32(*c.Limit) // within range: checked against core.MaxQuota*
	return &v
}

func intOf(v *int32) *int {
	if v == nil {
		return nil
	}
	n := int(*v)
	return &n
}
