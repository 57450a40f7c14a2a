package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/wrennhq/wrenn/internal/ident"
	"github.com/wrennhq/wrenn/internal/image"
	"github.com/wrennhq/wrenn/internal/lifecycle"
)

// Timings splits a create into its steps.
type Timings struct {
	Slot, Disk, VMStart, Boot, Init, Total time.Duration
	// Restored: the VM was restored from its template's warm snapshot, not booted
	// (VMStart is then the restore, Boot the wait for envd).
	Restored bool
}

// Create boots a sandbox and returns once envd is initialised with the sandbox's token
// and identity. On failure nothing of it remains.
func (m *Manager) Create(ctx context.Context, spec Spec) (_ *Info, token string, tm Timings, err error) {
	begin := time.Now()
	var snap *SnapshotInfo
	if spec.Snapshot != "" {
		if snap, err = m.snapshotSpec(&spec); err != nil {
			return nil, "", tm, err
		}
	}
	if err := m.cfg.Limits.Validate(&spec); err != nil {
		return nil, "", tm, err
	}
	var tmpl *image.Template
	var boot bootSource
	if snap != nil {
		boot = bootSource{kernel: snap.Kernel, initrd: snap.Initrd}
	} else {
		if tmpl, err = image.Load(m.cfg.Dir, spec.Template); err != nil {
			class := ErrInvalid
			if errors.Is(err, image.ErrNotBuilt) {
				class = ErrNoTemplate
			}
			return nil, "", tm, fmt.Errorf("%w: template %q: %v", class, spec.Template, err)
		}
		boot = bootSource{kernel: tmpl.Kernel, initrd: tmpl.Initrd}
	}
	if spec.ID == "" {
		spec.ID = ident.NewSandboxID()
	}
	if token = spec.AccessToken; token == "" {
		if token, err = randomHex(24); err != nil {
			return nil, "", tm, err
		}
	} else if !validAccessToken(token) {
		return nil, "", tm, invalid("envd access token: want 16..128 of [A-Za-z0-9_-]")
	}
	spec.AccessToken = ""
	// A guest restored from a named snapshot holds its source's envd token until
	// /init gives it the sandbox's own.
	guestToken := ""
	if snap != nil {
		if guestToken, err = m.guestToken(snap); err != nil {
			return nil, "", tm, err
		}
	}
	now := m.cfg.Now()
	sb, undoReserve, err := m.reserve(record{Spec: spec, State: lifecycle.Starting, Token: guestToken, Kernel: boot.kernel, Initrd: boot.initrd, CreatedAt: now, LastActive: now})
	if err != nil {
		return nil, "", tm, err
	}
	defer sb.op.Unlock()
	// From here on it is a create that ran, whatever its end (refusals above are not).
	defer func() { m.observeOp(OpCreate, begin, err) }()
	var undo rollback
	undo.add(undoReserve)
	defer func() {
		if err != nil {
			undo.run()
			err = fmt.Errorf("create %s: %w", spec.ID, err)
		}
	}()

	start := time.Now()
	type step struct {
		took *time.Duration
		run  func() (func(), error)
	}
	points := map[*time.Duration]string{&tm.Slot: "create/slot", &tm.Disk: "create/disk", &tm.VMStart: "create/vm", &tm.Boot: "create/boot", &tm.Init: "create/init"}
	run := func(r *rollback, steps ...step) error {
		for _, st := range steps {
			t := time.Now()
			undoStep, err := st.run()
			*st.took += time.Since(t)
			if err != nil {
				return err
			}
			r.add(undoStep)
			m.faultPoint(points[st.took], sb)
		}
		return nil
	}
	if err := run(&undo, step{&tm.Slot, func() (func(), error) { return m.takeSlot(ctx, sb, spec.AllowInternet) }}); err != nil {
		return nil, "", tm, err
	}
	if snap != nil {
		// Its files are read while its disk is cloned and its VM restored; a delete
		// or overwrite of the snapshot waits for that.
		disk, vm, ready := m.restoreSteps(ctx, sb, filepath.Join(m.snapshotsDir(), spec.Snapshot))
		m.snapMu.RLock()
		err := run(&undo, step{&tm.Disk, disk}, step{&tm.VMStart, vm})
		m.snapMu.RUnlock()
		if err != nil {
			return nil, "", tm, err
		}
		if err := run(&undo, step{&tm.Boot, ready}); err != nil {
			return nil, "", tm, err
		}
		tm.Restored = true
	} else if warm := m.warmFor(tmpl, spec); warm != "" {
		disk, vm, boot := m.restoreSteps(ctx, sb, warm)
		var restored rollback
		err := run(&restored, step{&tm.Disk, disk}, step{&tm.VMStart, vm}, step{&tm.Boot, boot})
		if err == nil {
			tm.Restored = true
			undo = append(undo, restored...)
		} else {
			restored.run()
			if ctx.Err() != nil {
				return nil, "", tm, err
			}
			m.dropWarm(warm, err)
		}
	}
	if !tm.Restored {
		cold := []step{
			{&tm.Disk, func() (func(), error) { return m.makeDisk(ctx, sb, tmpl.RootFS, spec.DiskMiB) }},
			{&tm.VMStart, func() (func(), error) { return m.startVM(ctx, sb, boot) }},
			{&tm.Boot, func() (func(), error) { return nil, m.connectEnvd(ctx, sb, m.cfg.BootTimeout) }},
		}
		if err := run(&undo, cold...); err != nil {
			return nil, "", tm, err
		}
		defer m.buildWarmLater(tmpl, spec)
	}
	if err := run(&undo, step{&tm.Init, func() (func(), error) { return nil, m.initGuest(ctx, sb, token, spec.Template) }}); err != nil {
		return nil, "", tm, err
	}
	// A VM that died after the guest answered is no sandbox to hand out: roll back
	// (one that dies later is the watcher's).
	sb.mu.Lock()
	machine := sb.machine
	sb.mu.Unlock()
	if exited(machine) {
		return nil, "", tm, fmt.Errorf("vm exited as it was being readied: %v", machine.Err())
	}
	// Idleness counts from when the sandbox is usable, not from when its create began.
	sb.touch(m.cfg.Now())
	if err := sb.moveTo(lifecycle.Running); err != nil {
		return nil, "", tm, err
	}
	tm.Total = time.Since(start)
	m.watch(sb)
	m.log.Info("sandbox created", "sandbox", spec.ID, "template", spec.Template, "snapshot", spec.Snapshot, "slot", sb.rec.Slot, "restored", tm.Restored, "total", tm.Total)
	return sb.info(), token, tm, nil
}

// reserve enters a new sandbox in the table with its transition lock held, makes its
// directory and writes its first record. The record exists before any resource, so a
// crash from here on leaves a "starting" sandbox that Recover knows to clean. The
// returned undo removes all of that again (the caller still unlocks op).
func (m *Manager) reserve(rec record) (*sandbox, func(), error) {
	id := rec.Spec.ID
	sb := newSandbox(id, filepath.Join(m.cfg.Dir, "sandboxes", id), rec, m.sealer)
	sb.op.Lock()
	m.mu.Lock()
	if _, dup := m.boxes[id]; dup {
		m.mu.Unlock()
		sb.op.Unlock()
		return nil, nil, fmt.Errorf("%w: %s", ErrAlreadyExists, id)
	}
	m.boxes[id] = sb
	m.mu.Unlock()
	fail := func(err error) (*sandbox, func(), error) {
		m.forget(sb)
		sb.op.Unlock()
		return nil, nil, err
	}
	if err := os.Mkdir(sb.dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fail(fmt.Errorf("%w: %s (its directory exists)", ErrAlreadyExists, id))
		}
		return fail(fmt.Errorf("create %s: %w", id, err))
	}
	if err := sb.persist(); err != nil {
		_ = os.RemoveAll(sb.dir)
		return fail(err)
	}
	return sb, func() {
		m.logFailure(sb, "remove directory", m.removeDir(sb))
		m.forget(sb)
	}, nil
}

// watch notices a VM that exits without being asked to (crash, OOM kill, kill -9): the
// sandbox moves to the error state with the reason, so callers get a clear answer
// instead of timeouts; Destroy then frees what is left.
func (m *Manager) watch(sb *sandbox) {
	sb.mu.Lock()
	machine := sb.machine
	sb.mu.Unlock()
	go func() {
		<-machine.Done()
		sb.op.Lock()
		defer sb.op.Unlock()
		sb.mu.Lock()
		replaced, state := sb.machine != machine, sb.rec.State
		sb.mu.Unlock()
		if replaced || state == lifecycle.Stopping || state == lifecycle.Stopped {
			return // stopped on purpose, or replaced
		}
		sb.endConns()
		reason := m.oomReason(sb)
		if reason == "" {
			reason = fmt.Sprintf("vm exited unexpectedly: %v", machine.Err())
		}
		sb.set(func(sb *sandbox) { sb.rec.Error = reason })
		if err := sb.moveTo(lifecycle.Error); err != nil {
			m.log.Warn("record vm exit", "sandbox", sb.id, "err", err)
		}
		m.log.Error("sandbox vm died", "sandbox", sb.id, "reason", reason)
	}()
}

// Destroy stops a sandbox's VM and removes its slot, disk and files.
func (m *Manager) Destroy(ctx context.Context, id string) error {
	sb, err := m.lookup(id)
	if err != nil {
		return err
	}
	sb.op.Lock()
	defer sb.op.Unlock()
	if !m.current(sb) {
		return fmt.Errorf("%w: %s", ErrNotFound, id) // a failed create or another destroy got there first
	}
	if err := sb.moveTo(lifecycle.Stopping); err != nil {
		// Only a failed record write gets here; tear down anyway — a crash now still
		// leads to cleanup, as the directory goes too.
		m.log.Warn("record stopping state", "sandbox", id, "err", err)
	}
	err = m.teardown(ctx, sb)
	sb.set(func(sb *sandbox) { sb.rec.State = lifecycle.Stopped }) // the record went with the directory
	m.forget(sb)
	if err != nil {
		return fmt.Errorf("destroy %s: %w", id, err)
	}
	m.log.Info("sandbox destroyed", "sandbox", id)
	return nil
}

// validAccessToken: a token the caller chose is what envd compares and headers carry.
func validAccessToken(t string) bool {
	if len(t) < 16 || len(t) > 128 {
		return false
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
