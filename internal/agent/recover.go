package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/wrennhq/wrenn/internal/ident"
	"github.com/wrennhq/wrenn/internal/lifecycle"
	"github.com/wrennhq/wrenn/internal/vmm"
)

// RecoverReport says what Recover found.
type RecoverReport struct {
	Adopted []string // live sandboxes taken over with their VM
	Kept    []string // sandboxes without a VM kept as they are (paused, error)
	Cleaned []string // half-made sandboxes removed
	Skipped []string // sandboxes this agent may not judge (another slot range or driver), untouched
}

// Recover rebuilds the sandbox table from WRENN_DIR after a (re)start. Running
// sandboxes whose VM is alive are adopted with their slot and disk; paused ones are
// kept (their disk and snapshot stay); ones whose VM died while no agent watched are
// kept in the error state, with their disk, until destroyed. Only sandboxes caught
// half-way through a create or destroy are cleaned. Ones whose record's sealed secrets
// do not open are kept in the error state (see refuse). Call it before serving.
func (m *Manager) Recover(ctx context.Context) (*RecoverReport, error) {
	root := filepath.Join(m.cfg.Dir, "sandboxes")
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("recover: %w", err)
	}
	rep := &RecoverReport{}
	m.cleanWarmBuilds(ctx)
	m.cleanSnapshotLeftovers()
	for _, e := range entries {
		if !e.IsDir() || !ident.ValidSandboxID(e.Name()) {
			continue
		}
		id, dir := e.Name(), filepath.Join(root, e.Name())
		rec, err := readRecord(m.sealer, id, dir)
		var unopened error
		if errors.Is(err, errRecordSealed) {
			unopened, err = err, nil
		}
		if err != nil {
			m.log.Warn("cleaning sandbox left behind", "sandbox", id, "reason", "no readable record: "+err.Error())
			m.cleanLeftover(ctx, id, dir, nil)
			rep.Cleaned = append(rep.Cleaned, id)
			continue
		}
		if why := m.notOurs(rec); why != "" {
			m.log.Warn("sandbox left alone: "+why, "sandbox", id, "slot", rec.Slot, "vmm", rec.VMM)
			rep.Skipped = append(rep.Skipped, id)
			continue
		}
		if unopened != nil {
			m.refuse(id, rec, unopened) // before cleaning: a half-made one is kept too
		}
		switch rec.State {
		case lifecycle.Starting, lifecycle.Stopping:
			m.log.Warn("cleaning sandbox left behind", "sandbox", id, "reason", "caught while "+string(rec.State))
			m.cleanLeftover(ctx, id, dir, rec)
			rep.Cleaned = append(rep.Cleaned, id)
			continue
		}
		sb := newSandbox(id, dir, *rec, m.sealer)
		if m.recoverOne(ctx, sb) {
			rep.Adopted = append(rep.Adopted, id)
		} else {
			rep.Kept = append(rep.Kept, id)
		}
		if rec.inClear {
			// Written before records were sealed: seal it now rather than on its next
			// change, which for a paused sandbox may be far off.
			m.logFailure(sb, "seal a record written in the clear", sb.persist())
		}
		m.mu.Lock()
		m.boxes[id] = sb
		m.mu.Unlock()
	}
	return rep, nil
}

// refuse puts a sandbox whose record's secrets do not open in the error state: without
// its envd token the agent cannot drive its VM, so the VM is stopped, and its disk and
// the sealed secrets are kept as they are (a record key put back later opens them).
// Nothing else in such a record is trusted either: the slot it names may be another
// sandbox's (a record copied from there), so it is not touched; the slot pool reclaims
// a namespace that no sandbox owns.
func (m *Manager) refuse(id string, rec *record, why error) {
	rec.State, rec.Slot = lifecycle.Error, 0
	rec.Error = fmt.Sprintf("its record was not opened: %v — it was sealed with another record key, altered, or copied from another sandbox's directory", why)
	m.log.Error("sandbox record refused: the sandbox is kept in the error state", "sandbox", id, "err", why)
}

// notOurs says why a sandbox is not this agent's to judge, or "".
func (m *Manager) notOurs(rec *record) string {
	switch {
	case rec.Slot > 0 && !m.cfg.Slots.Owns(rec.Slot):
		// Another agent's sandbox, or a changed --first-slot/--last-slot.
		return "its slot is outside this agent's range"
	case rec.VMM != "" && rec.VMM != m.cfg.Driver.Name():
		return fmt.Sprintf("its vm is run by %s, this agent by %s", rec.VMM, m.cfg.Driver.Name())
	}
	return ""
}

// recoverOne brings one sandbox with a complete record back: a live VM is adopted
// (true); otherwise the sandbox is kept without one (false) — paused as it was, a
// resume interrupted before its VM ran back to paused, anything else in the error
// state with the reason, its runtime resources freed and its disk kept.
func (m *Manager) recoverOne(ctx context.Context, sb *sandbox) bool {
	state := sb.state()
	// A pause's unfinished snapshot is never a sandbox's state.
	m.logFailure(sb, "remove unfinished snapshot", os.RemoveAll(filepath.Join(sb.dir, newSnapshotDir)))
	if state == lifecycle.Pausing && hasSnapshot(sb.dir) {
		// The pause got as far as a complete snapshot: finish it.
		m.releaseRuntime(ctx, sb)
		sb.set(func(sb *sandbox) { sb.rec.State, sb.rec.Slot = lifecycle.Paused, 0 })
		m.logFailure(sb, "record recovered state", sb.persist())
		state = lifecycle.Paused
	}
	if state == lifecycle.Paused {
		m.logFailure(sb, "find disk of paused sandbox", m.adoptDisk(sb))
		return false
	}
	err := m.adoptRunning(ctx, sb)
	if err == nil {
		return true
	}
	m.releaseRuntime(ctx, sb)
	to, reason := lifecycle.Error, ""
	switch state {
	case lifecycle.Resuming:
		to = lifecycle.Paused // the snapshot it resumed from is intact
	case lifecycle.Error:
		reason = sb.rec.Error
	default:
		reason = fmt.Sprintf("lost while the agent was away (%s): %v", state, err)
	}
	sb.set(func(sb *sandbox) { sb.rec.State, sb.rec.Error, sb.rec.Slot = to, reason, 0 })
	m.logFailure(sb, "record recovered state", sb.persist())
	m.log.Warn("sandbox kept without a vm", "sandbox", sb.id, "state", to, "reason", reason, "adopt", err)
	return false
}

// adoptRunning takes over a sandbox whose VM should still run: VM, slot, disk, envd.
func (m *Manager) adoptRunning(ctx context.Context, sb *sandbox) (err error) {
	if sb.state() == lifecycle.Error {
		return errors.New("in the error state")
	}
	var undo rollback
	defer func() {
		if err != nil {
			undo.run()
		}
	}()
	undoVM, err := m.adoptVM(ctx, sb)
	if err != nil {
		return fmt.Errorf("vm: %w", err)
	}
	undo.add(undoVM)
	was := sb.state()
	// Its vCPUs may be stopped: caught mid-pause, mid-resume, or mid-snapshot (which
	// stops a running sandbox's vCPUs for a moment). Resuming running ones is a no-op.
	sb.mu.Lock()
	machine := sb.machine
	sb.mu.Unlock()
	if err := machine.Resume(ctx); err != nil {
		return fmt.Errorf("run vcpus: %w", err)
	}
	undoSlot, err := m.adoptSlot(sb, sb.rec.Slot)
	if err != nil {
		return err
	}
	undo.add(undoSlot)
	if err := m.adoptDisk(sb); err != nil {
		return err
	}
	if err := m.connectEnvd(ctx, sb, 10*time.Second); err != nil {
		return fmt.Errorf("envd does not answer: %w", err)
	}
	// Pausing or resuming when the agent went away, but the VM runs: it is running,
	// and a resume's snapshot is spent (the guest has run on from it).
	if was == lifecycle.Resuming {
		m.logFailure(sb, "remove spent snapshot", os.RemoveAll(filepath.Join(sb.dir, snapshotDir)))
	}
	sb.set(func(sb *sandbox) { sb.rec.State = lifecycle.Running })
	m.logFailure(sb, "record adopted sandbox", sb.persist())
	// The idle clock restarts: time the agent was away is not the user's idleness.
	sb.touch(m.cfg.Now())
	m.watch(sb)
	return nil
}

// releaseRuntime frees what a sandbox without a VM must not hold: a VM process still
// around and its network slot.
func (m *Manager) releaseRuntime(ctx context.Context, sb *sandbox) {
	switch machine, err := m.cfg.Driver.Adopt(ctx, sb.dir); {
	case err == nil:
		m.attachVM(sb, machine)
		m.logFailure(sb, "stop vm", m.stopVM(ctx, sb))
	case !errors.Is(err, vmm.ErrNotRunning):
		m.log.Warn("look for a vm left behind", "sandbox", sb.id, "err", err)
	}
	sb.set(func(sb *sandbox) { sb.machine = nil })
	m.adoptCgroup(sb)
	m.logFailure(sb, "remove cgroup", m.releaseCgroup(sb))
	if index := sb.rec.Slot; index > 0 && sb.slot == nil {
		if _, err := m.adoptSlot(sb, index); err != nil {
			return // the namespace is gone already
		}
	}
	m.logFailure(sb, "release slot", m.releaseSlot(sb))
}

// cleanLeftover removes whatever a half-made sandbox had: its VM (if one runs), its
// slot (if the record got that far), its disk and its directory.
func (m *Manager) cleanLeftover(ctx context.Context, id, dir string, rec *record) {
	if rec == nil {
		rec = &record{}
	}
	sb := newSandbox(id, dir, *rec, m.sealer)
	m.releaseRuntime(ctx, sb)
	m.logFailure(sb, "release disk", m.releaseDisk(sb))
	m.logFailure(sb, "remove directory", m.removeDir(sb))
}

// hasSnapshot reports whether the sandbox in dir has a complete snapshot (its meta is
// written last).
func hasSnapshot(dir string) bool {
	_, err := vmm.ReadSnapshotMeta(filepath.Join(dir, snapshotDir))
	return err == nil
}
