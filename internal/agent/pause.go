package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/wrennhq/wrenn/internal/lifecycle"
	"github.com/wrennhq/wrenn/internal/vmm"
)

// A paused sandbox is its disk plus a memory snapshot in its directory:
//
//	<dir>/snapshot      the snapshot a resume restores (complete: its meta is written last)
//	<dir>/snapshot.new  a pause's snapshot being written; renamed over snapshot when done
//
// A complete <dir>/snapshot exists only while the sandbox is paused (and between a
// pause's snapshot and its end): a resume that ran the guest removes it, since the
// guest's memory has moved on from it. Recover relies on that.
const (
	snapshotDir    = "snapshot"
	newSnapshotDir = "snapshot.new"
)

// resumeHealthTimeout bounds a restored guest's envd answering: it was running when
// paused, so it answers at once or not at all.
const resumeHealthTimeout = 30 * time.Second

// PauseStats says what a pause cost.
type PauseStats struct {
	// Written is what the pause wrote to disk, in bytes: device state and the guest
	// memory pages flushed to the file the VM keeps its memory in.
	Written  int64
	Duration time.Duration
}

// Pause freezes a running sandbox into a memory snapshot and frees its VM and network
// slot; its disk and the snapshot stay. A pause that fails after the vCPUs stopped runs
// them again: the sandbox stays running and usable.
func (m *Manager) Pause(ctx context.Context, id string) (*Info, PauseStats, error) {
	start := time.Now()
	sb, err := m.lookup(id)
	if err != nil {
		return nil, PauseStats{}, err
	}
	sb.op.Lock()
	defer sb.op.Unlock()
	if !m.current(sb) {
		return nil, PauseStats{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if state := sb.state(); state != lifecycle.Running {
		return nil, PauseStats{}, &ErrState{ID: id, State: state, Op: "pause"}
	}
	sb.mu.Lock()
	machine := sb.machine
	sb.mu.Unlock()
	snapshotter, err := m.snapshotter(machine)
	if err != nil {
		return nil, PauseStats{}, err
	}
	written, err := m.pause(ctx, sb, snapshotter)
	m.observeOp(OpPause, start, err)
	if err != nil {
		return nil, PauseStats{}, fmt.Errorf("pause %s: %w", id, err)
	}
	stats := PauseStats{Written: written, Duration: time.Since(start)}
	m.log.Info("sandbox paused", "sandbox", id, "written_bytes", written, "took", stats.Duration)
	return sb.info(), stats, nil
}

// pause is Pause's transition, the caller holding op on a running sandbox.
func (m *Manager) pause(ctx context.Context, sb *sandbox, snapshotter vmm.Snapshotter) (written int64, err error) {
	if err := sb.moveTo(lifecycle.Pausing); err != nil {
		return 0, err
	}
	sb.mu.Lock()
	machine := sb.machine
	sb.mu.Unlock()
	// Until the VM is gone, any failure leaves the sandbox running as it was.
	vcpusStopped := false
	defer func() {
		if err == nil {
			return
		}
		if vcpusStopped {
			if rerr := machine.Resume(context.WithoutCancel(ctx)); rerr != nil {
				err = errors.Join(err, fmt.Errorf("run the vm again: %w", rerr))
				m.fail(sb, fmt.Sprintf("a pause failed and the vm could not run again: %v", err))
				return
			}
		}
		sb.set(func(sb *sandbox) { sb.conns = newConnGate() })
		if merr := sb.moveTo(lifecycle.Running); merr != nil {
			m.log.Warn("record running state after a failed pause", "sandbox", sb.id, "err", merr)
		}
	}()
	// Proxied connections end first: the guest would stop answering them anyway.
	sb.endConns()
	if err := machine.Pause(ctx); err != nil {
		return 0, fmt.Errorf("stop vcpus: %w", err)
	}
	vcpusStopped = true
	m.faultPoint("pause/vcpus", sb)
	newDir := filepath.Join(sb.dir, newSnapshotDir)
	if err := os.RemoveAll(newDir); err != nil {
		return 0, fmt.Errorf("clear %s: %w", newDir, err)
	}
	if err := os.Mkdir(newDir, 0o700); err != nil {
		return 0, fmt.Errorf("snapshot dir: %w", err)
	}
	opts := vmm.SnapshotOptions{Dir: newDir, Kind: vmm.SnapshotFull}
	if d, ok := machine.(vmm.Differ); ok {
		// Only the pages dirtied since the VM's memory last matched a snapshot
		// (the driver merges a long chain into one full generation).
		if base := d.DiffBase(); base != "" {
			opts.Kind, opts.Parent = vmm.SnapshotDiff, base
		}
	}
	snap, err := snapshotter.Snapshot(ctx, opts)
	if err != nil {
		_ = os.RemoveAll(newDir)
		return 0, fmt.Errorf("snapshot: %w", err)
	}
	written = snapshotWritten(snap)
	final := filepath.Join(sb.dir, snapshotDir)
	if err := os.RemoveAll(final); err != nil {
		_ = os.RemoveAll(newDir)
		return 0, fmt.Errorf("replace %s: %w", final, err)
	}
	if err := os.Rename(newDir, final); err != nil {
		_ = os.RemoveAll(newDir)
		return 0, fmt.Errorf("replace %s: %w", final, err)
	}
	m.faultPoint("pause/snapshot", sb)
	// The snapshot is complete: from here the sandbox is paused whatever else fails,
	// and a leftover VM or slot is freed, never left running.
	err = nil
	vcpusStopped = false
	m.logFailure(sb, "stop paused vm", m.stopVM(ctx, sb))
	m.logFailure(sb, "release slot of paused sandbox", m.releaseSlot(sb))
	sb.set(func(sb *sandbox) { sb.machine, sb.envd, sb.rec.Slot = nil, nil, 0 })
	m.faultPoint("pause/stopped", sb)
	if err := sb.moveTo(lifecycle.Paused); err != nil {
		return written, err
	}
	return written, nil
}

// restorer is the driver's Restorer, or ErrUnsupported naming the driver.
func (m *Manager) restorer() (vmm.Restorer, error) {
	r, ok := m.cfg.Driver.(vmm.Restorer)
	if !ok {
		return nil, fmt.Errorf("%w: the %s driver cannot restore a vm", ErrUnsupported, m.cfg.Driver.Name())
	}
	return r, nil
}

// snapshotter is a VM's Snapshotter, or ErrUnsupported naming the driver.
func (m *Manager) snapshotter(machine vmm.Machine) (vmm.Snapshotter, error) {
	s, ok := machine.(vmm.Snapshotter)
	if !ok {
		return nil, fmt.Errorf("%w: the %s driver cannot snapshot a vm", ErrUnsupported, m.cfg.Driver.Name())
	}
	return s, nil
}

// snapshotWritten is what taking a snapshot wrote: as the driver counted it, else the
// size of its files other than guest memory (which lives in a file the VM kept
// writing while it ran, flushed rather than copied by a pause).
func snapshotWritten(snap *vmm.Snapshot) int64 {
	if snap.Written > 0 {
		return snap.Written
	}
	var n int64
	for _, f := range snap.Meta.Files {
		if f.Role == vmm.FileMemory {
			continue
		}
		n += f.Size
	}
	return n
}

// Resume restores a paused sandbox on a new network slot and returns once envd answers
// with the current time set; timeoutSec > 0 replaces its idle timeout. A resume that
// fails leaves the sandbox paused, so a retry can succeed.
func (m *Manager) Resume(ctx context.Context, id string, timeoutSec int) (*Info, string, time.Duration, error) {
	start := time.Now()
	sb, err := m.lookup(id)
	if err != nil {
		return nil, "", 0, err
	}
	sb.op.Lock()
	defer sb.op.Unlock()
	if !m.current(sb) {
		return nil, "", 0, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if state := sb.state(); state != lifecycle.Paused {
		return nil, "", 0, &ErrState{ID: id, State: state, Op: "resume"}
	}
	restorer, err := m.restorer()
	if err != nil {
		return nil, "", 0, err
	}
	if timeoutSec < 0 || timeoutSec > maxTimeoutSec {
		return nil, "", 0, invalid("timeout_sec %d out of range 0..%d", timeoutSec, maxTimeoutSec)
	}
	err = m.resume(ctx, sb, restorer, timeoutSec)
	m.observeOp(OpResume, start, err)
	if err != nil {
		return nil, "", 0, fmt.Errorf("resume %s: %w", id, err)
	}
	took := time.Since(start)
	m.log.Info("sandbox resumed", "sandbox", id, "slot", sb.rec.Slot, "took", took)
	sb.mu.Lock()
	token := sb.rec.Token
	sb.mu.Unlock()
	return sb.info(), token, took, nil
}

// resume is Resume's transition, the caller holding op on a paused sandbox.
func (m *Manager) resume(ctx context.Context, sb *sandbox, restorer vmm.Restorer, timeoutSec int) (err error) {
	if err := sb.moveTo(lifecycle.Resuming); err != nil {
		return err
	}
	var undo rollback
	guestRan := false
	defer func() {
		if err == nil {
			return
		}
		if guestRan {
			// The guest ran, so its memory moved on from the snapshot: only a new
			// snapshot keeps the sandbox paused and resumable.
			err = m.repause(ctx, sb, err)
			return
		}
		undo.run()
		sb.set(func(sb *sandbox) { sb.machine, sb.envd, sb.rec.Slot = nil, nil, 0 })
		if merr := sb.moveTo(lifecycle.Paused); merr != nil {
			m.log.Warn("record paused state after a failed resume", "sandbox", sb.id, "err", merr)
		}
	}()
	sb.mu.Lock()
	spec, token := sb.rec.Spec, sb.rec.Token
	sb.mu.Unlock()
	undoSlot, err := m.takeSlot(ctx, sb, spec.AllowInternet)
	if err != nil {
		return err
	}
	undo.add(undoSlot)
	m.faultPoint("resume/slot", sb)
	if err := m.adoptDisk(sb); err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	undoVM, err := m.restoreVM(ctx, sb, restorer, filepath.Join(sb.dir, snapshotDir))
	if err != nil {
		return err
	}
	undo.add(undoVM)
	m.faultPoint("resume/vm", sb)
	sb.mu.Lock()
	machine := sb.machine
	sb.conns = newConnGate()
	sb.mu.Unlock()
	if exited(machine) {
		// Its guest never ran: the snapshot is still the truth, and stays.
		return fmt.Errorf("run vcpus: the restored vm exited before it ran: %v", machine.Err())
	}
	guestRan = true
	if err := machine.Resume(ctx); err != nil {
		return fmt.Errorf("run vcpus: %w", err)
	}
	m.faultPoint("resume/running", sb)
	if err := m.connectEnvd(ctx, sb, resumeHealthTimeout); err != nil {
		return err
	}
	if err := m.initGuest(ctx, sb, token, spec.Template); err != nil {
		return err
	}
	// The snapshot is spent: the guest's memory has moved on from it.
	m.logFailure(sb, "remove spent snapshot", os.RemoveAll(filepath.Join(sb.dir, snapshotDir)))
	if timeoutSec > 0 {
		sb.set(func(sb *sandbox) { sb.rec.Spec.TimeoutSec = timeoutSec })
	}
	sb.touch(m.cfg.Now())
	if err := sb.moveTo(lifecycle.Running); err != nil {
		return err
	}
	m.watch(sb)
	return nil
}

// restoreVM starts the sandbox's VM from the snapshot in snapDir (its own, or its
// template's warm one), paused, on its slot.
func (m *Manager) restoreVM(ctx context.Context, sb *sandbox, restorer vmm.Restorer, snapDir string) (func(), error) {
	sb.mu.Lock()
	boot := bootSource{kernel: sb.rec.Kernel, initrd: sb.rec.Initrd}
	sb.mu.Unlock()
	return m.runVM(sb, boot, func(cfg vmm.Config) (vmm.Machine, error) {
		machine, err := restorer.Restore(ctx, cfg, snapDir)
		if err != nil {
			return nil, fmt.Errorf("restore vm: %w", err)
		}
		return machine, nil
	})
}

// repause puts a sandbox whose resume failed after its guest ran back to paused with a
// fresh snapshot. If even that fails, the sandbox is in the error state: its guest's
// memory and the old snapshot no longer agree.
func (m *Manager) repause(ctx context.Context, sb *sandbox, cause error) error {
	ctx = context.WithoutCancel(ctx)
	sb.mu.Lock()
	machine := sb.machine
	sb.mu.Unlock()
	snapshotter, ok := machine.(vmm.Snapshotter)
	if ok {
		// pause moves Running → Pausing; the sandbox is Resuming, which may go to Paused
		// only through a pause of a running VM, so it is running for that moment.
		sb.set(func(sb *sandbox) { sb.rec.State = lifecycle.Running })
		if _, err := m.pause(ctx, sb, snapshotter); err == nil {
			return fmt.Errorf("%w (the sandbox is paused again, with a new snapshot)", cause)
		} else {
			cause = errors.Join(cause, fmt.Errorf("pause again: %w", err))
		}
	}
	m.fail(sb, fmt.Sprintf("a resume failed after the guest ran, and it could not be paused again: %v", cause))
	return cause
}

// fail moves a sandbox to the error state with a reason, stopping its VM and freeing
// its slot; its disk stays until it is destroyed.
func (m *Manager) fail(sb *sandbox, reason string) {
	sb.endConns()
	m.logFailure(sb, "stop vm", m.stopVM(context.Background(), sb))
	m.logFailure(sb, "release slot", m.releaseSlot(sb))
	sb.set(func(sb *sandbox) {
		sb.machine, sb.envd, sb.rec.Slot, sb.rec.Error, sb.rec.State = nil, nil, 0, reason, lifecycle.Error
	})
	m.logFailure(sb, "record error state", sb.persist())
	m.log.Error("sandbox failed", "sandbox", sb.id, "reason", reason)
}
