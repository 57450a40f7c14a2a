package sandboxes

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
	"github.com/wrennhq/wrenn/internal/server/core"
	"github.com/wrennhq/wrenn/internal/server/scheduler"
)

// Placement is optimistic per host. The scheduler picks from a snapshot of every
// host's load, taken without locks; then one transaction locks the picked host's row,
// re-reads its load, re-checks with the scheduler's own rule (scheduler.Eligible) and
// inserts the sandbox row, which is the reservation: every load counts the rows of
// live sandboxes. Creates aimed at one host therefore reserve one after another and
// never overcommit it, while creates on different hosts do not wait for each other.
// A create that finds its host filled in the meantime picks again from a fresh
// snapshot — which now shows that host fuller — so it lands elsewhere or gets the
// scheduler's "no host" answer.
//
// The same transaction first checks the team's quota, with the team's row locked
// before the host's (see quota.go), so a team's parallel creates cannot pass its
// limits together either.
//
// A paused sandbox keeps its reservation, in full: it holds no CPU or memory on its
// host while paused, but its disk and snapshot are there and it can resume nowhere
// else, so freeing its room for new sandboxes would let a full host refuse its
// resume. Host load (HostLoad, HostLoads) and the team's usage (TeamSandboxUsage)
// both count every sandbox but stopped and failed ones, paused included, and agree
// on it. (Overcommitting paused sandboxes, with resume as the one that may wait for
// room, is a possible later choice; it would change both counts together.)

// maxPlaceAttempts bounds the picks of one create. Each lost race means another
// create reserved first, so only heavy contention gets this far; the answer is then
// a 503 to retry.
const maxPlaceAttempts = 5

// templateKindSnapshot is a template whose files exist only on the hosts that made
// or received them (templates.kind; see snapshots.go).
const templateKindSnapshot = "snapshot"

// PlacementObserver learns the outcome of each placement decision (promx.ControlPlane
// counts them for Prometheus). It is called on the creating request's goroutine, so it
// must be cheap and safe for concurrent use.
type PlacementObserver interface {
	ObservePlacement(outcome string)
}

// Placement outcomes: a create whose quota allows it makes one pick, or more when it
// loses a race (each lost one is PlacementLostRace), and ends with the outcome of its
// last; a create its quota refuses makes none.
const (
	PlacementPlaced     = "placed"         // reserved on the picked host
	PlacementNoCapacity = "no_capacity"    // no host could take it (scheduler.ErrNoHost)
	PlacementLostRace   = "lost_race"      // the picked host was filled meanwhile
	PlacementQuota      = "quota_exceeded" // the team's quota refused it
	PlacementError      = "error"          // PostgreSQL or the host's agent failed
)

// PlacementOutcomes lists every outcome, for metrics that start each at zero.
func PlacementOutcomes() []string {
	return []string{PlacementPlaced, PlacementNoCapacity, PlacementLostRace, PlacementQuota, PlacementError}
}

// placementOutcome is how a placement that ended with err is counted.
func placementOutcome(err error) string {
	switch {
	case err == nil:
		return PlacementPlaced
	case errors.Is(err, core.ErrQuota), errors.Is(err, core.ErrForbidden):
		return PlacementQuota
	case errors.Is(err, scheduler.ErrNoHost):
		return PlacementNoCapacity
	case errors.Is(err, errHostTaken):
		return PlacementLostRace
	}
	return PlacementError
}

// observePlacement reports one decision, when something listens.
func (s *Service) observePlacement(err error) {
	if s.placements != nil {
		s.placements.ObservePlacement(placementOutcome(err))
	}
}

// errHostTaken: the picked host could no longer take the sandbox when it was locked.
var errHostTaken = errors.New("the picked host was filled or changed by a concurrent create")

// place picks a host for the sandbox described by params (all but its host) and
// reserves the capacity there by recording the sandbox, with its audit entry. It
// returns the row and the host's agent.
func (s *Service) place(ctx context.Context, p *core.Principal, spec SandboxSpec, params db.CreateSandboxParams) (db.Sandbox, hostagentv1connect.HostAgentServiceClient, error) {
	if err := s.precheckQuota(ctx, params.TeamID, spec); err != nil {
		s.observePlacement(err)
		return db.Sandbox{}, nil, err
	}
	req := s.placementRequest(p, spec)
	for attempt := 1; ; attempt++ {
		hosts, err := s.candidates(ctx)
		if err != nil {
			s.observePlacement(err)
			return db.Sandbox{}, nil, err
		}
		h, err := s.sched.Pick(req, hosts)
		if err != nil {
			s.observePlacement(err)
			return db.Sandbox{}, nil, fmt.Errorf("%w: %v", core.ErrUnavailable, err)
		}
		agent, err := s.agents.Agent(ctx, h.ID)
		if err != nil {
			s.observePlacement(err)
			return db.Sandbox{}, nil, fmt.Errorf("reach host %s: %w", h.ID, err)
		}
		row, err := s.reserve(ctx, p, spec, req, h, params)
		s.observePlacement(err)
		switch {
		case err == nil:
			return row, agent, nil
		case errors.Is(err, core.ErrQuota), errors.Is(err, core.ErrForbidden), errors.Is(err, core.ErrNotFound):
			return db.Sandbox{}, nil, err // the team's own answer, whatever the host
		case !errors.Is(err, errHostTaken):
			return db.Sandbox{}, nil, fmt.Errorf("place sandbox %s on %s: %w", params.ID, h.ID, err)
		case attempt == maxPlaceAttempts:
			return db.Sandbox{}, nil, fmt.Errorf("%w: every host picked for this sandbox was filled by concurrent creates (%d attempts): try again", core.ErrUnavailable, attempt)
		}
		s.log.Debug("placement lost a race: picking again", "sandbox", params.ID, "host", h.ID, "attempt", attempt)
	}
}

// reserve records the sandbox on h if, with the team locked, the team's quota allows
// it (else core.ErrQuota or ErrForbidden) and, with h locked, h can still take it
// (else errHostTaken); otherwise nothing is recorded.
func (s *Service) reserve(ctx context.Context, p *core.Principal, spec SandboxSpec, req scheduler.Request, h scheduler.Host, params db.CreateSandboxParams) (db.Sandbox, error) {
	hostID, err := core.ParseUUID(h.ID)
	if err != nil {
		return db.Sandbox{}, err
	}
	var row db.Sandbox
	err = s.st.Tx(ctx, func(q *db.Queries) error {
		quota, used, err := s.lockTeamQuota(ctx, q, params.TeamID)
		if err != nil {
			return err
		}
		if err := checkQuota(quota, used, spec); err != nil {
			return err
		}
		locked, err := q.LockHostForPlacement(ctx, hostID)
		if errors.Is(err, pgx.ErrNoRows) {
			return errHostTaken // deleted since the pick
		}
		if err != nil {
			return fmt.Errorf("lock host: %w", err)
		}
		load, err := q.HostLoad(ctx, hostID)
		if err != nil {
			return fmt.Errorf("load of host: %w", err)
		}
		// The host as it is now; its tags are the pick's (tags are not capacity).
		now := h
		now.TeamID, now.Status = core.UUIDString(locked.TeamID), scheduler.HostStatus(locked.Status)
		now.VCPUs, now.MemoryMB = int(locked.Vcpus), int(locked.MemoryMB)
		now.UsedVCPUs, now.UsedMemoryMB, now.Sandboxes = int(load.Vcpus), int(load.MemoryMB), int(load.Sandboxes)
		if len(scheduler.Eligible(req, []scheduler.Host{now})) == 0 {
			return errHostTaken
		}
		params.HostID = locked.ID
		if row, err = q.CreateSandbox(ctx, params); err != nil {
			return fmt.Errorf("record sandbox: %w", err)
		}
		return core.Audit(ctx, q, p, "sandbox.create", "sandbox", params.ID, map[string]any{"template": params.Template})
	})
	return row, err
}

// placementRequest is what the scheduler needs to know about the sandbox: its size,
// the team's pool, the hosts holding a snapshot template, and the tags it asks for.
func (s *Service) placementRequest(p *core.Principal, spec SandboxSpec) scheduler.Request {
	req := scheduler.Request{TeamID: p.TeamID, BYOC: p.TeamBYOC, VCPUs: spec.VCPUs, MemoryMB: spec.MemoryMB, RequiredTags: spec.HostTags}
	if spec.snapshot != nil {
		req.OnlyHosts = spec.snapshot.hosts
	}
	return req
}

// candidates is every host with its reserved load and tags, as the scheduler takes
// them (it filters by pool, status, tags and capacity itself).
func (s *Service) candidates(ctx context.Context) ([]scheduler.Host, error) {
	rows, err := s.q.ListHosts(ctx)
	if err != nil {
		return nil, fmt.Errorf("list hosts: %w", err)
	}
	loads, err := s.q.HostLoads(ctx)
	if err != nil {
		return nil, fmt.Errorf("host loads: %w", err)
	}
	tags, err := s.q.ListAllHostTags(ctx)
	if err != nil {
		return nil, fmt.Errorf("host tags: %w", err)
	}
	hosts := make([]scheduler.Host, 0, len(rows))
	byID := make(map[string]int, len(rows))
	for _, r := range rows {
		id := core.UUIDString(r.ID)
		byID[id] = len(hosts)
		hosts = append(hosts, scheduler.Host{
			ID: id, TeamID: core.UUIDString(r.TeamID), Status: scheduler.HostStatus(r.Status), VCPUs: int(r.Vcpus), MemoryMB: int(r.MemoryMB),
		})
	}
	for _, l := range loads {
		if i, ok := byID[core.UUIDString(l.HostID)]; ok {
			hosts[i].UsedVCPUs, hosts[i].UsedMemoryMB, hosts[i].Sandboxes = int(l.Vcpus), int(l.MemoryMB), int(l.Sandboxes)
		}
	}
	for _, t := range tags {
		if i, ok := byID[core.UUIDString(t.HostID)]; ok {
			hosts[i].Tags = append(hosts[i].Tags, t.Tag)
		}
	}
	return hosts, nil
}
