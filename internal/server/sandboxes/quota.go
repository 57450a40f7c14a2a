package sandboxes

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// A team's quota (core.Quota) is checked twice on create. First without locks, before
// a host is picked, so that a team at its limit hears so (429) rather than, say, that
// no host has room. Then authoritatively in reserve's transaction, with the team's row
// locked before the host's (LockTeam): creates of one team count what it holds
// one after another, each seeing every sandbox reserved before it, so a burst of
// parallel creates cannot pass a limit together. Teams lock only their own rows, and
// always before a host's, so they neither wait for each other nor deadlock.

// lockTeamQuota locks the team's row in q's transaction and returns the team's quota
// and what it holds now.
func (s *Service) lockTeamQuota(ctx context.Context, q *db.Queries, teamID pgtype.UUID) (core.Quota, db.TeamSandboxUsageRow, error) {
	team, err := q.LockTeam(ctx, teamID)
	if errors.Is(err, pgx.ErrNoRows) {
		return core.Quota{}, db.TeamSandboxUsageRow{}, fmt.Errorf("%w: team %s", core.ErrNotFound, core.UUIDString(teamID))
	}
	if err != nil {
		return core.Quota{}, db.TeamSandboxUsageRow{}, fmt.Errorf("lock team for its quota: %w", err)
	}
	used, err := q.TeamSandboxUsage(ctx, teamID)
	if err != nil {
		return core.Quota{}, db.TeamSandboxUsageRow{}, fmt.Errorf("sandboxes the team holds: %w", err)
	}
	return s.quota.For(team), used, nil
}

// precheckQuota is the first, unlocked check: it saves a full team the host pick.
func (s *Service) precheckQuota(ctx context.Context, teamID pgtype.UUID, spec SandboxSpec) error {
	team, err := s.q.GetTeam(ctx, teamID)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: team %s", core.ErrNotFound, core.UUIDString(teamID))
	}
	if err != nil {
		return fmt.Errorf("team's quota: %w", err)
	}
	used, err := s.q.TeamSandboxUsage(ctx, teamID)
	if err != nil {
		return fmt.Errorf("sandboxes the team holds: %w", err)
	}
	return checkQuota(s.quota.For(team), used, spec)
}

// quotaHint is what a team at a sandbox limit can do about it.
const quotaHint = "destroy a sandbox, or ask a platform administrator to raise the limit"

// checkQuota refuses a sandbox of spec that would take the team, holding used, past
// its quota: 429 (core.ErrQuota) naming the limit, or 403 when the sandbox alone is
// bigger than a limit, since no wait would let it in.
func checkQuota(quota core.Quota, used db.TeamSandboxUsageRow, spec SandboxSpec) error {
	for _, l := range []struct {
		limit, used, n int
		what           string
	}{
		{quota.VCPUs, int(used.Vcpus), spec.VCPUs, "vCPUs"},
		{quota.MemoryMB, int(used.MemoryMB), spec.MemoryMB, "MB of memory"},
	} {
		if core.Exceeds(l.limit, 0, l.n) {
			return fmt.Errorf("%w: a sandbox of %d %s is over the team's quota of %d %s; ask a platform administrator to raise the limit",
				core.ErrForbidden, l.n, l.what, l.limit, l.what)
		}
	}
	if core.Exceeds(quota.Sandboxes, int(used.Sandboxes), 1) {
		return fmt.Errorf("%w: %d concurrent sandboxes (limit %d); %s", core.ErrQuota, used.Sandboxes, quota.Sandboxes, quotaHint)
	}
	if core.Exceeds(quota.VCPUs, int(used.Vcpus), spec.VCPUs) {
		return fmt.Errorf("%w: %d vCPUs in use + %d requested (limit %d); %s", core.ErrQuota, used.Vcpus, spec.VCPUs, quota.VCPUs, quotaHint)
	}
	if core.Exceeds(quota.MemoryMB, int(used.MemoryMB), spec.MemoryMB) {
		return fmt.Errorf("%w: %d MB of memory in use + %d requested (limit %d MB); %s", core.ErrQuota, used.MemoryMB, spec.MemoryMB, quota.MemoryMB, quotaHint)
	}
	return nil
}
