package sandboxes

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/wrennhq/wrenn/gen/db"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
	"github.com/wrennhq/wrenn/internal/lifecycle"
	"github.com/wrennhq/wrenn/internal/server/core"
	"github.com/wrennhq/wrenn/internal/server/hostclient"
	"github.com/wrennhq/wrenn/internal/server/scheduler"
)

// MonitorConfig tunes the host monitor.
type MonitorConfig struct {
	Interval time.Duration // how often hosts are checked (default 10 s)
	Stale    time.Duration // silence after which a host is unreachable (default 90 s)
	// Grace: a sandbox still being created younger than this is never judged lost.
	Grace time.Duration // default 2 minutes
}

func (c *MonitorConfig) defaults() {
	if c.Interval <= 0 {
		c.Interval = 10 * time.Second
	}
	if c.Stale <= 0 {
		c.Stale = 90 * time.Second
	}
	if c.Grace <= 0 {
		c.Grace = 2 * time.Minute
	}
}

// RunHostMonitor closes the gap between what should exist (PostgreSQL) and what the
// hosts run, until ctx ends. Each round: hosts silent for longer than Stale become
// unreachable and their sandboxes missing (reversible); every online host is asked
// what it runs, so missing sandboxes it still runs are restored, sandboxes it paused
// (idle) or runs again are recorded so, sandboxes it lost are marked failed, and
// sandboxes nobody should run are stopped; and what deleted teams still hold on hosts
// is removed (PurgeDeletedTeams). With several control planes, a Redis lease
// lets one of them do each round.
func (s *Service) RunHostMonitor(ctx context.Context, cfg MonitorConfig) {
	cfg.defaults()
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	for {
		if ok, err := s.st.Redis.SetNX(ctx, "wrenn:host-monitor-lease", 1, cfg.Interval*9/10).Result(); err == nil && ok {
			s.MonitorRound(ctx, cfg)
		} else if err != nil && ctx.Err() == nil {
			s.log.Warn("host monitor lease", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// MonitorRound runs one round of the monitor.
func (s *Service) MonitorRound(ctx context.Context, cfg MonitorConfig) {
	cfg.defaults()
	stale, err := s.q.MarkStaleHostsUnreachable(ctx, cfg.Stale.Seconds())
	if err != nil {
		s.log.Error("mark stale hosts", "err", err)
		return
	}
	for _, h := range stale {
		s.log.Warn("host unreachable: no heartbeat", "host", core.UUIDString(h), "for", cfg.Stale)
	}
	s.markMissing(ctx)
	hosts, err := s.q.ListHosts(ctx)
	if err != nil {
		s.log.Error("list hosts", "err", err)
		return
	}
	for _, h := range hosts {
		if scheduler.HostStatus(h.Status) == scheduler.StatusOnline {
			s.reconcile(ctx, h, cfg)
		}
	}
	s.PurgeDeletedTeams(ctx)
}

// reconcile compares one online host's sandboxes with the database.
func (s *Service) reconcile(ctx context.Context, h db.Host, cfg MonitorConfig) {
	hostID := core.UUIDString(h.ID)
	agent, err := s.agents.Agent(ctx, hostID)
	if err != nil {
		s.log.Warn("reconcile: reach host", "host", hostID, "err", err)
		return
	}
	// The rows are read first: a sandbox created after this snapshot may be on the
	// host but not in the rows, and Grace protects it; the other order could judge a
	// just-created sandbox lost.
	rows, err := s.q.ListHostSandboxes(ctx, h.ID)
	if err != nil {
		s.log.Error("reconcile: sandboxes of host", "host", hostID, "err", err)
		return
	}
	lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	resp, err := agent.ListSandboxes(lctx, connect.NewRequest(&pb.ListSandboxesRequest{}))
	cancel()
	if errors.Is(err, hostclient.ErrFingerprint) {
		// Whatever answers there is not the registered host: take it out of placement.
		s.markUnreachable(ctx, h.ID)
		s.log.Error("reconcile: host presents another certificate than the pinned one: marked unreachable", "host", hostID, "err", err)
		return
	}
	if err != nil {
		s.log.Warn("reconcile: list sandboxes", "host", hostID, "err", err)
		return
	}
	listed := map[string]*pb.Sandbox{} // running, paused and any other state: alive on the host
	for _, sb := range resp.Msg.GetSandboxes() {
		listed[sb.GetId()] = sb
	}
	known := map[string]bool{}
	for _, row := range rows {
		known[row.ID] = true
		onHost, ok := listed[row.ID]
		hostSays := hostState(onHost.GetState())
		switch {
		case ok && hostSays == lifecycle.Error && stateOf(row) != lifecycle.Error:
			msg := onHost.GetError()
			s.setByHost(ctx, row, lifecycle.Error, &msg, nil, nil)
		case ok && settledOnHost(hostSays) && hostSays != stateOf(row) &&
			(followsHost(stateOf(row)) || stateOf(row) == lifecycle.Starting && s.now().Sub(row.CreatedAt) >= cfg.Grace):
			// A host back from being unreachable, a pause the agent made on its own
			// (idle timeout), or a create, pause or resume whose control plane went
			// away before it recorded the end (a create only once past Grace: until
			// then it may still be recording it): the host's word is what the sandbox
			// is. A paused sandbox is alive — listed, with no address — never lost or
			// stopped.
			ip := onHost.GetHostIp()
			s.setByHost(ctx, row, hostSays, nil, &ip, limitsJSON(onHost.GetLimits()))
			s.log.Info("reconcile: sandbox state from its host", "sandbox", row.ID, "host", hostID, "was", stateOf(row), "now", hostSays)
		case !ok && stateOf(row) != lifecycle.Error && !(stateOf(row) == lifecycle.Starting && s.now().Sub(row.CreatedAt) < cfg.Grace):
			msg := "lost: its host no longer runs it"
			s.setByHost(ctx, row, lifecycle.Error, &msg, nil, nil)
			s.log.Warn("reconcile: sandbox lost", "sandbox", row.ID, "host", hostID)
		}
	}
	for id, sb := range listed {
		if known[id] {
			continue
		}
		// Young sandboxes may be a create whose row is not visible yet.
		if created := sb.GetCreatedAt(); created != nil && s.now().Sub(created.AsTime()) < cfg.Grace {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := agent.DestroySandbox(dctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: id}))
		cancel()
		s.log.Warn("reconcile: stopped an orphan sandbox", "sandbox", id, "host", hostID, "err", err)
	}
	s.reconcileSnapshots(ctx, h, agent, cfg)
}

// reconcileSnapshots removes from a host the snapshot versions of Wrenn's (snap-…)
// that no record names: one whose create's control plane died between the host
// making it and the record, or an overwrite's replaced version whose removal was
// never done. One younger than Grace may be a create still recording it.
func (s *Service) reconcileSnapshots(ctx context.Context, h db.Host, agent hostagentv1connect.HostAgentServiceClient, cfg MonitorConfig) {
	hostID := core.UUIDString(h.ID)
	// The host first, then the records: a version recorded after this listing is
	// among the records read next, so it is never taken for an orphan.
	lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	resp, err := agent.ListSnapshots(lctx, connect.NewRequest(&pb.ListSnapshotsRequest{}))
	cancel()
	if err != nil {
		s.log.Warn("reconcile: list snapshots", "host", hostID, "err", err)
		return
	}
	names, err := s.q.HostSnapshotNames(ctx, h.ID)
	if err != nil {
		s.log.Error("reconcile: snapshots of host", "host", hostID, "err", err)
		return
	}
	recorded := make(map[string]bool, len(names))
	for _, n := range names {
		recorded[n] = true
	}
	for _, snap := range resp.Msg.GetSnapshots() {
		name := snap.GetName()
		if !hostNamePattern.MatchString(name) || recorded[name] {
			continue
		}
		if created := snap.GetCreatedAt(); created == nil || s.now().Sub(created.AsTime()) < cfg.Grace {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := agent.DeleteSnapshot(dctx, connect.NewRequest(&pb.DeleteSnapshotRequest{Name: name}))
		cancel()
		s.log.Warn("reconcile: removed an orphan snapshot", "snapshot", name, "host", hostID, "err", err)
	}
}

// markUnreachable takes a host out of placement and marks its sandboxes missing.
func (s *Service) markUnreachable(ctx context.Context, hostID pgtype.UUID) {
	if err := s.q.MarkHostUnreachable(ctx, hostID); err != nil {
		s.log.Error("mark host unreachable", "host", core.UUIDString(hostID), "err", err)
		return
	}
	s.markMissing(ctx)
}

// markMissing marks the live sandboxes of every unreachable host missing (idempotent,
// so an interrupted round is caught up by the next).
func (s *Service) markMissing(ctx context.Context) {
	missing, err := s.q.MarkUnreachableSandboxesMissing(ctx)
	if err != nil {
		s.log.Error("mark sandboxes of unreachable hosts missing", "err", err)
	}
	teams := map[pgtype.UUID]bool{}
	for _, m := range missing {
		teams[m.TeamID] = true
	}
	for t := range teams {
		s.sandboxesChanged(ctx, t)
	}
}

// settledOnHost: the states an agent reports that the database takes over as they
// are (a sandbox between them, pausing or resuming on its host, is judged next round).
func settledOnHost(st lifecycle.State) bool { return st == lifecycle.Running || st == lifecycle.Paused }

// followsHost: the recorded states the host's running or paused replaces at once. Not
// starting (its create records the end itself; past Grace, reconcile takes the host's
// word), error (final), nor stopped (not listed here).
func followsHost(st lifecycle.State) bool {
	switch st {
	case lifecycle.Running, lifecycle.Paused, lifecycle.Pausing, lifecycle.Resuming, lifecycle.Missing:
		return true
	}
	return false
}

// setByHost records status for row — with error msg, and host address ip and limits
// when the host reported them (nil keeps them; paused clears the address) — if the
// row is still as read.
func (s *Service) setByHost(ctx context.Context, row db.Sandbox, status lifecycle.State, msg, ip *string, limits []byte) {
	if ip != nil && *ip == "" {
		ip = nil
	}
	if _, err := s.q.SetSandboxStatusByHost(ctx, db.SetSandboxStatusByHostParams{ID: row.ID, HostID: row.HostID, Status: string(status), Error: msg, HostIP: ip, Limits: limits, FromStatus: row.Status}); errors.Is(err, pgx.ErrNoRows) {
		return // changed meanwhile (e.g. destroyed): the next round judges again
	} else if err != nil {
		s.log.Error("reconcile: record status", "sandbox", row.ID, "err", err)
		return
	}
	s.sandboxesChanged(ctx, row.TeamID)
}
