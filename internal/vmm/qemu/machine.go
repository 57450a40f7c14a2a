package qemu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wrennhq/wrenn/internal/vmm"
	"github.com/wrennhq/wrenn/internal/vmm/vmproc"
)

var _ vmm.Machine = (*Machine)(nil)

// Timings are start-up measurements of one VM, for benchmarks and logs.
type Timings struct {
	// Spawned is when QEMU was exec'd.
	Spawned time.Time
	// QMPReady is spawn → QMP greeting and capabilities negotiated.
	QMPReady time.Duration
	// Running is spawn → query-status answered "running" (Start returned); for a
	// restored VM, spawn → device state loaded, paused (Restore returned).
	Running time.Duration
}

// ExitError says why a VM's QEMU exited when nobody asked it to.
type ExitError struct {
	ID  string
	PID int
	// Status is the exit status when QEMU was our child; nil for an adopted VM
	// (its exit status went to whoever reaped it).
	Status *os.ProcessState
	// Stderr and Console are the tails of QEMU's stderr and the guest's console.
	Stderr, Console string
}

func (e *ExitError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "qemu vm %s (pid %d) exited", e.ID, e.PID)
	switch {
	case e.Status == nil:
		b.WriteString(" (adopted, exit status unknown)")
	default:
		b.WriteString(": " + e.Status.String())
		if e.Status.Success() {
			b.WriteString(" (guest shut down, rebooted or panicked)")
		}
	}
	if e.Stderr != "" {
		b.WriteString("\nqemu stderr: " + e.Stderr)
	}
	if e.Console != "" {
		b.WriteString("\nconsole tail:\n" + e.Console)
	}
	return b.String()
}

// Signal returns the signal that killed QEMU, if one did.
func (e *ExitError) Signal() (syscall.Signal, bool) {
	if e.Status == nil {
		return 0, false
	}
	ws, ok := e.Status.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return 0, false
	}
	return ws.Signal(), true
}

// Machine is one QEMU VM, started by this process or adopted from an earlier one.
type Machine struct {
	id, dir   string
	pid       int
	procStart uint64 // /proc/<pid>/stat start time: the process's identity
	log       *slog.Logger
	qmp       *qmpClient
	kill      func() error // SIGKILL without pid-reuse races (child handle or pidfd)
	timings   Timings

	// snapMu serializes Snapshot and Resume, which both change st.Shared and
	// must not interleave with a migration.
	snapMu sync.Mutex

	done     chan struct{}
	mu       sync.Mutex
	err      error
	stopping bool
	// st is the state file's content (rewritten when st.Shared changes); memory
	// is the guest RAM file QEMU maps, identified when the machine was made so Stop
	// never removes a file that a later VM in the same Dir created.
	st     state
	memory os.FileInfo
}

func newMachine(id, dir string, pid int, procStart uint64, log *slog.Logger, kill func() error) *Machine {
	return &Machine{
		id:        id,
		dir:       dir,
		pid:       pid,
		procStart: procStart,
		log:       log.With("vm", id, "pid", pid),
		qmp:       &qmpClient{path: filepath.Join(dir, qmpSocketName)},
		kill:      kill,
		done:      make(chan struct{}),
	}
}

// setState records the VM's state file content and identifies its memory file.
func (m *Machine) setState(st state) {
	var mem os.FileInfo
	if st.Boot != nil {
		mem, _ = os.Stat(st.Boot.Memory) // nil: nothing to clean up at Stop
	}
	m.mu.Lock()
	m.st, m.memory = st, mem
	m.mu.Unlock()
}

// exited records the end of the process; status is nil for adopted VMs. An exit
// that Stop asked for is not an error.
func (m *Machine) exited(status *os.ProcessState) {
	m.mu.Lock()
	if !m.stopping {
		m.err = &ExitError{
			ID:      m.id,
			PID:     m.pid,
			Status:  status,
			Stderr:  vmproc.ReadTail(filepath.Join(m.dir, stderrName), 2048),
			Console: vmproc.ReadTail(m.ConsoleLog(), 2048),
		}
	}
	err := m.err
	m.mu.Unlock()
	if err != nil {
		m.log.Warn("qemu exited", "err", err)
	} else {
		m.log.Info("qemu exited")
	}
	close(m.done)
}

// ID is the VM's id from its Config.
func (m *Machine) ID() string { return m.id }

// Dir is the VM's runtime directory (what Adopt takes).
func (m *Machine) Dir() string { return m.dir }

// PID of the QEMU process.
func (m *Machine) PID() int { return m.pid }

// Done is closed once the QEMU process has exited.
func (m *Machine) Done() <-chan struct{} { return m.done }

// ConsoleLog is the guest's serial console output; it survives Stop.
func (m *Machine) ConsoleLog() string { return filepath.Join(m.dir, consoleName) }

// QMPSocket is the path of QEMU's QMP socket (for snapshot code and debugging).
func (m *Machine) QMPSocket() string { return m.qmp.path }

// Timings are the start-up measurements; zero for an adopted VM except Spawned.
func (m *Machine) Timings() Timings { return m.timings }

func (m *Machine) exitedAlready() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// Err is nil while the VM runs and after an exit requested by Stop; otherwise an
// *ExitError.
func (m *Machine) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Status is QEMU's run state ("running", "paused", …) from query-status. QEMU's
// "postmigrate" (a paused VM whose state a snapshot saved) reads as "paused": to
// the caller it is a paused VM that Resume runs.
func (m *Machine) Status(ctx context.Context) (string, error) {
	if m.exitedAlready() {
		return "", fmt.Errorf("status of qemu %s: %w", m.id, vmm.ErrNotRunning)
	}
	st, err := m.qmp.status(ctx)
	if err != nil {
		return "", fmt.Errorf("status of qemu %s: %w", m.id, err)
	}
	if st.Status == "postmigrate" {
		return "paused", nil
	}
	return st.Status, nil
}

// ErrRestoreUnfinished: the VM is still waiting for its snapshot to load.
var ErrRestoreUnfinished = errors.New("its restore did not finish loading the snapshot")

// Pause stops the vCPUs (QMP stop). QEMU answers after the vCPUs have stopped.
func (m *Machine) Pause(ctx context.Context) error {
	if err := m.command(ctx, "stop"); err != nil {
		return fmt.Errorf("pause qemu %s: %w", m.id, err)
	}
	return nil
}

// Resume continues the vCPUs (QMP cont). Pause snapshots that share the VM's memory
// file are withdrawn first, since the guest is about to change that memory; they
// are put back only when QEMU refuses cont (then the guest surely did not run).
func (m *Machine) Resume(ctx context.Context) error {
	m.snapMu.Lock()
	defer m.snapMu.Unlock()
	if m.exitedAlready() {
		return fmt.Errorf("resume qemu %s: %w", m.id, vmm.ErrNotRunning)
	}
	// A VM whose restore never finished loading (its restorer was killed, and it was
	// adopted) has no guest to run: cont would only arm it to start once a load that
	// never comes completes, and withdrawing its snapshot would lose the sandbox.
	if st, err := m.qmp.status(ctx); err != nil {
		return fmt.Errorf("resume qemu %s: status: %w", m.id, err)
	} else if st.Status == "inmigrate" {
		return fmt.Errorf("resume qemu %s: %w", m.id, ErrRestoreUnfinished)
	}
	withdrawn, err := m.withdrawShared()
	if err != nil {
		return fmt.Errorf("resume qemu %s: %w", m.id, err)
	}
	if err := m.command(ctx, "cont"); err != nil {
		var qe *QMPError
		if errors.As(err, &qe) {
			m.reinstate(withdrawn)
		} else {
			m.forgetShared()
		}
		return fmt.Errorf("resume qemu %s: %w", m.id, err)
	}
	m.forgetShared()
	return nil
}

// QMP runs any QMP command (for snapshot and migration code): args become
// "arguments", the "return" value is decoded into out. QEMU errors are *QMPError.
func (m *Machine) QMP(ctx context.Context, cmd string, args, out any) error {
	if m.exitedAlready() {
		return fmt.Errorf("qmp %s on qemu %s: %w", cmd, m.id, vmm.ErrNotRunning)
	}
	return m.qmp.do(ctx, cmd, args, out)
}

func (m *Machine) command(ctx context.Context, cmd string) error {
	if m.exitedAlready() {
		return vmm.ErrNotRunning
	}
	return m.qmp.do(ctx, cmd, nil, nil)
}

// Upper bounds for Stop when ctx has no deadline of its own: how long a QMP quit
// may take, and how long a SIGKILLed process may take to disappear.
const (
	quitGrace = 30 * time.Second
	killGrace = 10 * time.Second
)

// Stop asks QEMU to quit over QMP, kills it if ctx ends (or the quit cannot be
// delivered) first, waits until the process is gone and removes the VM's socket,
// pidfile and state file, and its memory file unless a pause snapshot shares it. The
// console log and QEMU's stderr stay.
func (m *Machine) Stop(ctx context.Context) error {
	m.mu.Lock()
	m.stopping = true
	m.mu.Unlock()

	if m.exitedAlready() {
		m.removeOwnRuntimeFiles()
		return nil
	}
	qctx, cancel := context.WithTimeout(ctx, quitGrace)
	defer cancel()
	if err := m.qmp.do(qctx, "quit", nil, nil); err != nil && !m.exitedAlready() {
		// QEMU often closes the socket before answering quit; give it a moment
		// before treating the failure as real.
		select {
		case <-m.done:
		case <-time.After(2 * time.Second):
			m.log.Warn("qmp quit failed; killing", "err", err)
			cancel()
		}
	}
	select {
	case <-m.done:
	case <-qctx.Done():
		if !m.exitedAlready() {
			m.log.Warn("qemu did not quit in time; killing")
			if err := m.kill(); err != nil {
				m.log.Error("kill qemu", "err", err)
			}
		}
	}
	select {
	case <-m.done:
	case <-time.After(killGrace):
		return fmt.Errorf("stop qemu %s: pid %d still alive %s after SIGKILL", m.id, m.pid, killGrace)
	}
	m.removeOwnRuntimeFiles()
	m.log.Info("qemu stopped")
	return nil
}

// removeUnsharedMemory deletes the guest RAM file of an ended VM unless a snapshot
// shares it (a hard link: the sandbox's pause snapshot, which a later Restore into
// this Dir continues from in place). Only the file this machine's QEMU mapped is
// removed, never one a later VM in the same Dir created.
func (m *Machine) removeUnsharedMemory() {
	m.mu.Lock()
	mem, boot := m.memory, m.st.Boot
	m.mu.Unlock()
	if mem == nil || boot == nil {
		return
	}
	cur, err := os.Stat(boot.Memory)
	if err != nil || !os.SameFile(cur, mem) {
		return
	}
	if st, ok := cur.Sys().(*syscall.Stat_t); !ok || st.Nlink != 1 {
		return
	}
	if err := os.Remove(boot.Memory); err != nil {
		m.log.Warn("remove guest memory file", "path", boot.Memory, "err", err)
	}
}

// removeOwnRuntimeFiles removes the runtime files unless the Dir's state file now
// names another process: a stale handle must never delete the sockets of a VM that
// was started in the same Dir later.
func (m *Machine) removeOwnRuntimeFiles() {
	if st, err := readState(m.dir); err == nil && (st.PID != m.pid || st.ProcStart != m.procStart) {
		return
	}
	removeRuntimeFiles(m.log, m.dir)
	m.removeUnsharedMemory()
}

// removeRuntimeFiles deletes what only makes sense while QEMU runs.
func removeRuntimeFiles(log *slog.Logger, dir string) {
	for _, n := range []string{qmpSocketName, pidFileName, stateFileName} {
		if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Warn("remove qemu runtime file", "path", filepath.Join(dir, n), "err", err)
		}
	}
}
