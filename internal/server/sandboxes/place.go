package sandboxes

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/internal/server/core"
	"github.com/wrennhq/wrenn/internal/server/scheduler"
)

func (s *Service) hostLoads(ctx context.Context) (map[pgtype.UUID]db.HostLoadsRow, error) {
	loads, err := s.q.HostLoads(ctx)
	if err != nil {
		return nil, fmt.Errorf("host loads: %w", err)
	}
	out := make(map[pgtype.UUID]db.HostLoadsRow, len(loads))
	for _, l := range loads {
		out[l.HostID] = l
	}
	return out, nil
}

// place picks the host for a new sandbox.
func (s *Service) place(ctx context.Context, p *core.Principal, spec SandboxSpec) (pgtype.UUID, error) {
	rows, err := s.q.ListHosts(ctx)
	if err != nil {
		return pgtype.UUID{}, fmt.Errorf("list hosts: %w", err)
	}
	loads, err := s.hostLoads(ctx)
	if err != nil {
		return pgtype.UUID{}, err
	}
	req := scheduler.Request{TeamID: p.TeamID, BYOC: p.TeamBYOC, VCPUs: spec.VCPUs, MemoryMB: spec.MemoryMB}
	teamID, _ := core.ParseUUID(p.TeamID)
	if kind, err := s.q.TemplateKind(ctx, db.TemplateKindParams{Name: spec.Template, TeamID: teamID}); err == nil && kind == "snapshot" {
		ids, err := s.q.TemplateHosts(ctx, db.TemplateHostsParams{Name: spec.Template, TeamID: teamID})
		if err != nil {
			return pgtype.UUID{}, fmt.Errorf("template hosts: %w", err)
		}
		req.OnlyHosts = map[string]bool{}
		for _, id := range ids {
			req.OnlyHosts[core.UUIDString(id)] = true
		}
	} else if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return pgtype.UUID{}, fmt.Errorf("template %s: %w", spec.Template, err)
	}
	byID := map[string]pgtype.UUID{}
	hosts := make([]scheduler.Host, 0, len(rows))
	for _, r := range rows {
		l := loads[r.ID]
		id := core.UUIDString(r.ID)
		byID[id] = r.ID
		hosts = append(hosts, scheduler.Host{
			ID: id, TeamID: core.UUIDString(r.TeamID), Status: scheduler.HostStatus(r.Status), VCPUs: int(r.Vcpus), MemoryMB: int(r.MemoryMB),
			UsedVCPUs: int(l.Vcpus), UsedMemoryMB: int(l.MemoryMB), Sandboxes: int(l.Sandboxes),
		})
	}
	h, err := s.sched.Pick(req, hosts)
	if err != nil {
		return pgtype.UUID{}, fmt.Errorf("%w: %v", core.ErrUnavailable, err)
	}
	return byID[h.ID], nil
}
