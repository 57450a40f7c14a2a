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
	"github.com/wrennhq/wrenn/internal/server/core"
	"github.com/wrennhq/wrenn/internal/server/scheduler"
)

// purgeCallTimeout bounds each call to a host while purging a deleted team.
const purgeCallTimeout = 30 * time.Second

// PurgeReport is what one purge of a deleted team did and left for the next round.
type PurgeReport struct {
	Stopped, SnapshotsDeleted, HostsDeleted int
	// Left: sandboxes, snapshot files or hosts that could not be removed now (a host
	// that does not answer); the host monitor tries again every round.
	Left int
}

// PurgeTeam removes what a deleted team (accounts.DeleteTeam) holds on hosts: it
// destroys its sandboxes and records them stopped, deletes its snapshots' files on
// every host holding them and then their records, and, once nothing of the team is
// left on them, deletes the team's own hosts. A sandbox on a host that does not
// answer is recorded stopped at once (the monitor stops it if the host comes back
// still running it, as for any destroy); a snapshot's files on such a host keep their
// record until they are deleted, so they are never forgotten. Safe to repeat.
func (s *Service) PurgeTeam(ctx context.Context, teamID pgtype.UUID) PurgeReport {
	var rep PurgeReport
	online := map[pgtype.UUID]bool{}
	isOnline := func(h pgtype.UUID) bool {
		up, ok := online[h]
		if !ok {
			host, err := s.q.GetHost(ctx, h)
			up = err == nil && scheduler.HostStatus(host.Status) == scheduler.StatusOnline
			online[h] = up
		}
		return up
	}
	sbs, err := s.q.ListPurgeSandboxes(ctx, teamID)
	if err != nil {
		s.log.Error("purge deleted team: list sandboxes", "team", core.UUIDString(teamID), "err", err)
		rep.Left++
		return rep
	}
	for _, sb := range sbs {
		if sb.HostID.Valid && isOnline(sb.HostID) && !s.destroyForPurge(ctx, sb) {
			rep.Left++
			continue
		}
		if n, err := s.q.StopPurgedSandbox(ctx, db.StopPurgedSandboxParams{ID: sb.ID, FromStatus: sb.Status}); err != nil || n == 0 {
			rep.Left++ // changed meanwhile (or the database failed): next round
			continue
		}
		rep.Stopped++
	}
	if len(sbs) > 0 {
		s.sandboxesChanged(ctx, teamID)
	}
	tpls, err := s.q.ListPurgeTemplates(ctx, teamID)
	if err != nil {
		s.log.Error("purge deleted team: list snapshots", "team", core.UUIDString(teamID), "err", err)
		rep.Left++
		return rep
	}
	filesLeft := map[pgtype.UUID]bool{} // hosts that still hold some of the team's files
	for _, t := range tpls {
		if s.purgeTemplate(ctx, t, isOnline, filesLeft) {
			rep.SnapshotsDeleted++
		} else {
			rep.Left++
		}
	}
	hosts, err := s.q.ListPurgeHosts(ctx, teamID)
	if err != nil {
		s.log.Error("purge deleted team: list hosts", "team", core.UUIDString(teamID), "err", err)
		rep.Left++
		return rep
	}
	for _, h := range hosts {
		if filesLeft[h.ID] || s.deleteTeamHost(ctx, h) != nil {
			rep.Left++
			continue
		}
		rep.HostsDeleted++
	}
	return rep
}

// destroyForPurge destroys a sandbox on its (online) host; gone already is done.
func (s *Service) destroyForPurge(ctx context.Context, sb db.Sandbox) bool {
	agent, err := s.agentOf(ctx, sb)
	if err == nil {
		dctx, cancel := context.WithTimeout(ctx, purgeCallTimeout)
		_, err = agent.DestroySandbox(dctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: sb.ID}))
		cancel()
	}
	if err != nil && connect.CodeOf(err) != connect.CodeNotFound {
		s.log.Warn("purge deleted team: destroy sandbox, tried again next round", "sandbox", sb.ID, "err", err)
		return false
	}
	return true
}

// purgeTemplate deletes a snapshot's files from every host holding them, forgetting
// each host as its files go, and the record when none is left; false: some are left.
func (s *Service) purgeTemplate(ctx context.Context, t db.Template, isOnline func(pgtype.UUID) bool, filesLeft map[pgtype.UUID]bool) bool {
	hosts, err := s.q.SnapshotHosts(ctx, t.ID)
	if err != nil {
		s.log.Error("purge deleted team: snapshot hosts", "snapshot", t.Name, "err", err)
		return false
	}
	left := 0
	for _, h := range hosts {
		var err error
		if t.HostName == nil || !isOnline(h) {
			err = errors.New("host not online")
		} else {
			dctx, cancel := context.WithTimeout(ctx, purgeCallTimeout)
			err = s.deleteOnHost(dctx, h, *t.HostName)
			cancel()
		}
		if err == nil {
			err = s.q.RemoveTemplateHost(ctx, db.RemoveTemplateHostParams{TemplateID: t.ID, HostID: h})
		}
		if err != nil {
			s.log.Warn("purge deleted team: snapshot files left on a host, tried again next round", "snapshot", t.Name, "host", core.UUIDString(h), "err", err)
			filesLeft[h] = true
			left++
		}
	}
	if left > 0 {
		return false
	}
	err = s.st.Tx(ctx, func(q *db.Queries) error {
		if err := q.DeleteTemplate(ctx, t.ID); err != nil {
			return err
		}
		return core.Audit(ctx, q, &core.Principal{TeamID: core.UUIDString(t.TeamID)}, "snapshot.delete", "snapshot", t.Name, map[string]any{"reason": "team deleted"})
	})
	if err != nil {
		s.log.Error("purge deleted team: delete snapshot record", "snapshot", t.Name, "err", err)
		return false
	}
	return true
}

// deleteTeamHost deletes one of a deleted team's own hosts once none of its sandboxes
// is live there: its credentials stop working, as at `wrenn host rm`.
func (s *Service) deleteTeamHost(ctx context.Context, h db.Host) error {
	live, err := s.q.ListHostSandboxes(ctx, h.ID)
	if err != nil {
		return err
	}
	if len(live) > 0 {
		return errors.New("sandboxes still on the host")
	}
	err = s.st.Tx(ctx, func(q *db.Queries) error {
		if _, err := q.DeleteHost(ctx, h.ID); err != nil {
			return err
		}
		if err := q.RevokeHostRefreshTokens(ctx, h.ID); err != nil {
			return err
		}
		return core.Audit(ctx, q, &core.Principal{TeamID: core.UUIDString(h.TeamID)}, "host.delete", "host", core.UUIDString(h.ID), map[string]any{"reason": "team deleted"})
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // deleted meanwhile
	}
	return err
}

// PurgeDeletedTeams purges every deleted team that still holds something on hosts
// (one round of the host monitor).
func (s *Service) PurgeDeletedTeams(ctx context.Context) {
	teams, err := s.q.ListDeletedTeams(ctx)
	if err != nil {
		s.log.Error("purge deleted teams: list", "err", err)
		return
	}
	for _, t := range teams {
		if rep := s.PurgeTeam(ctx, t); rep.Left > 0 {
			s.log.Warn("purge deleted team: some left for the next round", "team", core.UUIDString(t), "left", rep.Left)
		}
	}
}
