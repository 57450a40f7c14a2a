package sandboxes

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/wrennhq/wrenn/gen/db"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
	"github.com/wrennhq/wrenn/internal/lifecycle"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// Pause and resume. The host's agent does the work (PauseSandbox, ResumeSandbox) and
// undoes a failed transition itself: a failed pause leaves the sandbox running, a
// failed resume leaves it paused (or, when even that failed, in error). The database
// follows in steps — running → pausing → paused, paused → resuming → running — each
// written only while the row is still where the step starts, so a concurrent destroy
// or a verdict of the host monitor is never overwritten; after a failure it records
// what the agent says the sandbox is now. A paused sandbox is never recorded stopped:
// it keeps its disk and snapshot on its host, and with them its reservation there
// (placement's host load and the team's quota count it in full, since its resume
// needs that room on that host; see place.go and quota.go).
//
// The agent also pauses idle sandboxes on its own; the host monitor (monitor.go)
// records that, and an operation the agent refuses because the sandbox is paused
// records it at once (opError).

// hostSettleTimeout bounds asking a host what a sandbox is after a failed transition.
const hostSettleTimeout = 15 * time.Second

// PauseSandbox freezes a running sandbox of the principal's team into a snapshot on
// its host, freeing its CPU and memory there; its files and processes come back with
// ResumeSandbox. core.ErrConflict when it is not running, core.ErrNotImplemented when
// its host's VM driver cannot snapshot.
func (s *Service) PauseSandbox(ctx context.Context, p *core.Principal, id string) (*Sandbox, error) {
	return s.pause(ctx, p, id, nil)
}

// pause is PauseSandbox, with more to say in its audit entry (why).
func (s *Service) pause(ctx context.Context, p *core.Principal, id string, why map[string]any) (*Sandbox, error) {
	row, agent, err := s.begin(ctx, p, id, lifecycle.Running, lifecycle.Pausing, "pause")
	if err != nil {
		return nil, err
	}
	s.faultPoint("pause/begun")
	// Its charts until now, kept before the pause (the host's series stops there).
	s.flushMetrics(ctx, id, agent)
	resp, err := agent.PauseSandbox(ctx, connect.NewRequest(&pb.PauseSandboxRequest{SandboxId: id}))
	if err != nil {
		now := s.settle(ctx, row, agent, lifecycle.Running)
		return nil, transitionError(id, "pause", now, err)
	}
	s.faultPoint("pause/done")
	m := resp.Msg
	meta := map[string]any{"written_bytes": m.GetWrittenBytes(), "duration_ms": m.GetDurationUs() / 1000}
	for k, v := range why {
		meta[k] = v
	}
	// The monitor may have seen the host's view in the meantime (running before the
	// pause, paused after it): both are steps this pause may finish from.
	row, err = s.step(ctx, p, row, transition{
		to: lifecycle.Paused, from: []lifecycle.State{lifecycle.Pausing, lifecycle.Running, lifecycle.Paused}, op: "pause",
		audit: "sandbox.pause", meta: meta,
	})
	if err != nil {
		return nil, err
	}
	return toSandbox(row), nil
}

// ResumeSandbox restores a paused sandbox of the principal's team on its host and
// returns it running; timeoutSec > 0 replaces its idle timeout (0 keeps it). A resume
// that fails leaves the sandbox paused, so it can be retried. core.ErrConflict when
// the sandbox is not paused.
func (s *Service) ResumeSandbox(ctx context.Context, p *core.Principal, id string, timeoutSec int) (*Sandbox, error) {
	return s.resume(ctx, p, id, timeoutSec, nil)
}

// resume is ResumeSandbox; endInSec, when set, gives a sandbox with an end a new one
// that many seconds from when it runs again (E2B's connect).
func (s *Service) resume(ctx context.Context, p *core.Principal, id string, timeoutSec int, endInSec *int32) (*Sandbox, error) {
	if timeoutSec < 0 || timeoutSec > maxTimeoutSec {
		return nil, fmt.Errorf("%w: timeout_sec %d out of range 0..%d", core.ErrInvalid, timeoutSec, maxTimeoutSec)
	}
	row, agent, err := s.begin(ctx, p, id, lifecycle.Paused, lifecycle.Resuming, "resume")
	if err != nil {
		return nil, err
	}
	s.faultPoint("resume/begun")
	resp, err := agent.ResumeSandbox(ctx, connect.NewRequest(&pb.ResumeSandboxRequest{SandboxId: id, TimeoutSec: int32(timeoutSec)}))
	if err != nil {
		now := s.settle(ctx, row, agent, lifecycle.Paused)
		return nil, transitionError(id, "resume", now, err)
	}
	s.faultPoint("resume/done")
	m := resp.Msg
	hostIP := m.GetSandbox().GetHostIp()
	t := transition{
		to: lifecycle.Running, from: []lifecycle.State{lifecycle.Resuming, lifecycle.Paused, lifecycle.Running}, op: "resume",
		hostIP: &hostIP, limits: limitsJSON(m.GetSandbox().GetLimits()), audit: "sandbox.resume", meta: map[string]any{"duration_ms": m.GetDurationUs() / 1000}, endInSec: endInSec,
	}
	if timeoutSec > 0 {
		n := int32(timeoutSec)
		t.timeoutSec, t.meta["timeout_sec"] = &n, timeoutSec
	}
	row, err = s.step(ctx, p, row, t)
	if err != nil {
		return nil, err
	}
	return toSandbox(row), nil
}

// transition is one recorded step of a pause or resume.
type transition struct {
	to         lifecycle.State
	from       []lifecycle.State // the states the row may be in for the step to apply
	op         string            // "pause" or "resume", for a conflict's message
	hostIP     *string           // the address the host reports (nil keeps it)
	limits     []byte            // the limits the host reports, as JSON (nil keeps them)
	timeoutSec *int32            // a new idle timeout (nil keeps it)
	endInSec   *int32            // a new end, seconds from now, for a sandbox with one (nil keeps it)
	audit      string            // the audit action written with the step ("" none)
	meta       map[string]any
}

// begin starts a pause or resume of a sandbox of the principal's team: it must be in
// from (else core.ErrConflict), its host reachable, and it moves to the transitional
// state to; it returns the row as moved and the host's agent.
func (s *Service) begin(ctx context.Context, p *core.Principal, id string, from, to lifecycle.State, op string) (db.Sandbox, hostagentv1connect.HostAgentServiceClient, error) {
	row, err := s.sandboxRow(ctx, p, id)
	if err != nil {
		return db.Sandbox{}, nil, err
	}
	if stateOf(row) != from {
		return db.Sandbox{}, nil, stateConflict(id, stateOf(row), op)
	}
	agent, err := s.agentOf(ctx, row)
	if err != nil {
		return db.Sandbox{}, nil, err
	}
	row, err = s.step(ctx, p, row, transition{to: to, from: []lifecycle.State{from}, op: op})
	if err != nil {
		return db.Sandbox{}, nil, err
	}
	return row, agent, nil
}

// step records t for row, with its audit entry in the same transaction. A row no
// longer in t.from (destroyed, or judged by the monitor, meanwhile) is left alone, and
// the conflict names what it is now. A step after the host acted is recorded whether
// or not the caller still waits: the host did it.
func (s *Service) step(ctx context.Context, p *core.Principal, row db.Sandbox, t transition) (db.Sandbox, error) {
	if t.to != lifecycle.Pausing && t.to != lifecycle.Resuming {
		ctx = context.WithoutCancel(ctx)
	}
	from := make([]string, len(t.from))
	for i, st := range t.from {
		from[i] = string(st)
	}
	var out db.Sandbox
	err := s.st.Tx(ctx, func(q *db.Queries) error {
		var err error
		out, err = q.TransitionSandbox(ctx, db.TransitionSandboxParams{
			ID: row.ID, TeamID: row.TeamID, Status: string(t.to), FromStatuses: from, HostIP: t.hostIP, Limits: t.limits, TimeoutSec: t.timeoutSec, EndInSec: t.endInSec,
		})
		if err != nil || t.audit == "" {
			return err
		}
		return core.Audit(ctx, q, p, t.audit, "sandbox", row.ID, t.meta)
	})
	s.sandboxesChanged(ctx, row.TeamID)
	if errors.Is(err, pgx.ErrNoRows) {
		now, gerr := s.q.GetSandbox(ctx, db.GetSandboxParams{ID: row.ID, TeamID: row.TeamID})
		if gerr != nil {
			return db.Sandbox{}, fmt.Errorf("%w: sandbox %s changed while it was asked to %s", core.ErrConflict, row.ID, t.op)
		}
		return db.Sandbox{}, stateConflict(row.ID, stateOf(now), t.op)
	}
	if err != nil {
		err = fmt.Errorf("record %s sandbox %s: %w", t.to, row.ID, err)
		if t.to == lifecycle.Paused || t.to == lifecycle.Running { // the host did it
			err = core.Unrecorded(err, fmt.Sprintf("sandbox %s is %s on its host", row.ID, t.to))
		}
		return db.Sandbox{}, err
	}
	return out, nil
}

// settle records where a failed pause or resume left the sandbox: what its host says
// it is, or else fallback (what the agent leaves after a failure it survives); the
// monitor corrects a wrong guess in its next round. It returns the state the host
// reported ("" when it did not say).
func (s *Service) settle(ctx context.Context, row db.Sandbox, agent hostagentv1connect.HostAgentServiceClient, fallback lifecycle.State) lifecycle.State {
	now := s.fromHost(ctx, row, agent)
	if now == "" {
		s.setByHost(context.WithoutCancel(ctx), row, fallback, nil, nil, nil)
	}
	return now
}

// fromHost asks a sandbox's host what the sandbox is and, when that is running,
// paused or error and the row says otherwise, records it (only if the row is unchanged
// since it was read). It returns the host's state, "" when the host did not answer or
// no longer has the sandbox (the monitor judges those).
func (s *Service) fromHost(ctx context.Context, row db.Sandbox, agent hostagentv1connect.HostAgentServiceClient) lifecycle.State {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), hostSettleTimeout)
	defer cancel()
	resp, err := agent.GetSandbox(ctx, connect.NewRequest(&pb.GetSandboxRequest{SandboxId: row.ID}))
	if err != nil {
		s.log.Warn("ask host for sandbox state", "sandbox", row.ID, "err", err)
		return ""
	}
	sb := resp.Msg.GetSandbox()
	now := hostState(sb.GetState())
	switch {
	case now == stateOf(row):
	case now == lifecycle.Running || now == lifecycle.Paused:
		ip := sb.GetHostIp()
		s.setByHost(ctx, row, now, nil, &ip, limitsJSON(sb.GetLimits()))
	case now == lifecycle.Error:
		msg := sb.GetError()
		s.setByHost(ctx, row, now, &msg, nil, nil)
	}
	return now
}

// transitionError is a failed pause's or resume's answer: a host that cannot snapshot
// is not implemented there; a refusal for the sandbox's state names the state the
// host reported; the rest maps as any agent error.
func transitionError(id, op string, now lifecycle.State, err error) error {
	switch connect.CodeOf(err) {
	case connect.CodeUnimplemented:
		return fmt.Errorf("%w: sandbox %s cannot %s: its host cannot snapshot VMs (%s)", core.ErrNotImplemented, id, op, agentMessage(err))
	case connect.CodeFailedPrecondition:
		if now != "" {
			return stateConflict(id, now, op)
		}
	}
	return fmt.Errorf("%s sandbox %s: %w", op, id, agentError(err))
}

// stateConflict refuses op on a sandbox in state, saying which state it is in.
func stateConflict(id string, state lifecycle.State, op string) error {
	if state == lifecycle.Missing {
		return fmt.Errorf("%w: sandbox %s is missing (its host does not answer): cannot %s", core.ErrConflict, id, op)
	}
	return fmt.Errorf("%w: sandbox %s is %s: cannot %s", core.ErrConflict, id, state, op)
}

// pausedConflict is the answer to a command, file transfer, ping or proxied request
// for a sandbox that is paused or on its way in or out of it; nil in any other state.
func pausedConflict(id string, state lifecycle.State) error {
	switch state {
	case lifecycle.Paused:
		return fmt.Errorf("%w: sandbox %s is paused; resume it first", core.ErrConflict, id)
	case lifecycle.Pausing:
		return fmt.Errorf("%w: sandbox %s is pausing; resume it once it is paused", core.ErrConflict, id)
	case lifecycle.Resuming:
		return fmt.Errorf("%w: sandbox %s is resuming; try again once it runs", core.ErrConflict, id)
	}
	return nil
}

// NotRunning explains why a sandbox cannot take a command now (a conflict), or is nil
// when it runs; a paused one is told to be resumed first.
func NotRunning(sb *Sandbox) error {
	if sb.Status == lifecycle.Running {
		return nil
	}
	if err := pausedConflict(sb.ID, sb.Status); err != nil {
		return err
	}
	return fmt.Errorf("%w: sandbox %s is %s", core.ErrConflict, sb.ID, sb.Status)
}

// liveAgent returns a sandbox of the principal's team and its host's agent, for a
// command, a file transfer or a ping. A sandbox the database knows to be paused (or
// pausing, resuming) is refused here with the advice to resume it; other states are
// the agent's to judge, as they always were.
func (s *Service) liveAgent(ctx context.Context, p *core.Principal, id string) (db.Sandbox, hostagentv1connect.HostAgentServiceClient, error) {
	row, err := s.sandboxRow(ctx, p, id)
	if err != nil {
		return db.Sandbox{}, nil, err
	}
	if err := pausedConflict(id, stateOf(row)); err != nil {
		return db.Sandbox{}, nil, err
	}
	agent, err := s.agentOf(ctx, row)
	if err != nil {
		return db.Sandbox{}, nil, err
	}
	return row, agent, nil
}

// opError maps an agent's refusal of an operation (what: "exec in sb…" and the like).
// A failed_precondition may mean the agent paused the sandbox on its own (its idle
// timeout) before the monitor noticed: the database learns it now, and the caller is
// told to resume the sandbox rather than that it is in some state.
func (s *Service) opError(ctx context.Context, row db.Sandbox, agent hostagentv1connect.HostAgentServiceClient, what string, err error) error {
	if connect.CodeOf(err) == connect.CodeFailedPrecondition {
		if perr := pausedConflict(row.ID, s.fromHost(ctx, row, agent)); perr != nil {
			return perr
		}
	}
	return fmt.Errorf("%s: %w", what, agentError(err))
}

// hostState is an agent's state of a sandbox as the control plane names it ("" for
// one it does not know).
func hostState(st pb.SandboxState) lifecycle.State {
	switch st {
	case pb.SandboxState_SANDBOX_STATE_STARTING:
		return lifecycle.Starting
	case pb.SandboxState_SANDBOX_STATE_RUNNING:
		return lifecycle.Running
	case pb.SandboxState_SANDBOX_STATE_PAUSING:
		return lifecycle.Pausing
	case pb.SandboxState_SANDBOX_STATE_PAUSED:
		return lifecycle.Paused
	case pb.SandboxState_SANDBOX_STATE_RESUMING:
		return lifecycle.Resuming
	case pb.SandboxState_SANDBOX_STATE_STOPPING:
		return lifecycle.Stopping
	case pb.SandboxState_SANDBOX_STATE_STOPPED:
		return lifecycle.Stopped
	case pb.SandboxState_SANDBOX_STATE_ERROR:
		return lifecycle.Error
	}
	return ""
}
