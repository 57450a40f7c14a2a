package vmmtest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/vmm"
	"github.com/wrennhq/wrenn/internal/vmm/vmproc"
)

// The suite's own test runs it against a fake driver that implements every
// capability, so the snapshot and restore cases are exercised before any real driver
// implements them. Its "VMM" is this test binary re-executed: it writes a console log
// and sleeps; pause is SIGSTOP, resume SIGCONT; a snapshot is a few files.

const fakeFlag = "-vmmtest-fakevm"

func TestMain(m *testing.M) {
	if len(os.Args) == 4 && os.Args[1] == fakeFlag {
		dir, id := os.Args[2], os.Args[3]
		if strings.HasPrefix(id, "fail") {
			fmt.Fprintln(os.Stderr, "fake vmm: cannot boot")
			os.Exit(1)
		}
		os.WriteFile(filepath.Join(dir, "console.log"), []byte("booting "+id+"\n"), 0o600)
		for {
			time.Sleep(time.Hour)
		}
	}
	os.Exit(m.Run())
}

func TestConformanceFake(t *testing.T) {
	n := 0
	cfg := func(prefix string) func(t *testing.T) vmm.Config {
		return func(t *testing.T) vmm.Config {
			n++
			base := t.TempDir()
			kernel := filepath.Join(base, "vmlinux")
			os.WriteFile(kernel, []byte("kernel"), 0o600)
			return vmm.Config{ID: fmt.Sprintf("%s-%d", prefix, n), Dir: filepath.Join(base, "vm"), Kernel: kernel, VCPUs: 1, MemoryMiB: 64}
		}
	}
	Run(t, Harness{
		New:           func(t *testing.T) vmm.Driver { return fakeDriver{} },
		Config:        cfg("vm"),
		FailingConfig: cfg("fail"),
		Timeout:       5 * time.Second,
	})
}

type fakeDriver struct{}

type fakeState struct {
	ID string `json:"id"`
	vmproc.Identity
	Config vmm.Config `json:"config"` // what an adopted machine snapshots as
}

func (fakeDriver) Name() string { return "fake" }

func (d fakeDriver) Start(ctx context.Context, cfg vmm.Config) (vmm.Machine, error) {
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start fake %s: %w", cfg.ID, err)
	}
	var st fakeState
	if vmproc.ReadState(filepath.Join(cfg.Dir, "state.json"), &st) == nil {
		if h, err := vmproc.Attach(st.Identity); err == nil {
			h.Close()
			return nil, fmt.Errorf("start fake %s: dir already has a running vm", cfg.ID)
		}
	}
	os.Remove(filepath.Join(cfg.Dir, "console.log"))
	self, _ := os.Executable()
	argv := []string{self, fakeFlag, cfg.Dir, cfg.ID}
	cmd, err := vmproc.Spawn(vmproc.Spec{Argv: argv, Dir: cfg.Dir, Output: os.Stderr})
	if err != nil {
		return nil, fmt.Errorf("start fake %s: %w", cfg.ID, err)
	}
	start, _ := vmproc.StartTime(cmd.Process.Pid)
	m := newFakeMachine(cfg, cmd.Process.Pid, cmd.Process.Kill)
	go func() { cmd.Wait(); m.exited() }()
	st = fakeState{ID: cfg.ID, Identity: vmproc.Identity{PID: cmd.Process.Pid, ProcStart: start, Binary: self, Argv: argv}, Config: cfg}
	if err := vmproc.WriteState(filepath.Join(cfg.Dir, "state.json"), st); err != nil {
		m.Stop(ctx)
		return nil, err
	}
	for {
		select {
		case <-m.done:
			m.Stop(ctx)
			return nil, fmt.Errorf("start fake %s: exited: %s", cfg.ID, vmproc.ExitReason(cmd))
		case <-time.After(5 * time.Millisecond):
		}
		if _, err := os.Stat(m.ConsoleLog()); err == nil {
			return m, nil
		}
	}
}

func (d fakeDriver) Adopt(ctx context.Context, dir string) (vmm.Machine, error) {
	var st fakeState
	if err := vmproc.ReadState(filepath.Join(dir, "state.json"), &st); err != nil {
		return nil, fmt.Errorf("adopt fake: %w: %v", vmm.ErrNotRunning, err)
	}
	h, err := vmproc.Attach(st.Identity)
	if err != nil {
		return nil, fmt.Errorf("adopt fake: %w: %v", vmm.ErrNotRunning, err)
	}
	m := newFakeMachine(st.Config, st.PID, h.Kill)
	go func() { h.Wait(); h.Close(); m.exited() }()
	return m, nil
}

func (d fakeDriver) Restore(ctx context.Context, cfg vmm.Config, snapDir string) (vmm.Machine, error) {
	meta, err := vmm.ReadSnapshotMeta(snapDir)
	if err != nil {
		return nil, fmt.Errorf("restore fake %s: %w", cfg.ID, err)
	}
	want, err := fakeMeta(cfg, vmm.SnapshotFull, "")
	if err != nil {
		return nil, err
	}
	if err := vmm.CheckCompatible(meta, want); err != nil {
		return nil, fmt.Errorf("restore fake %s from %s: %w", cfg.ID, snapDir, err)
	}
	for _, f := range meta.Files {
		b, err := os.ReadFile(filepath.Join(snapDir, f.Name))
		if err != nil || int64(len(b)) != f.Size || (f.SHA256 != "" && fmt.Sprintf("%x", sha256.Sum256(b)) != f.SHA256) {
			return nil, fmt.Errorf("restore fake %s from %s: %s file damaged (%v)", cfg.ID, snapDir, f.Role, err)
		}
	}
	vm, err := d.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	m := vm.(*fakeMachine)
	if err := m.Pause(ctx); err != nil {
		m.Stop(ctx)
		return nil, err
	}
	// Like QEMU's in-place restore, the restored VM now owns the snapshot of its
	// own pause, which is withdrawn when it resumes.
	if origin, err := os.ReadFile(filepath.Join(snapDir, "origin")); err == nil && string(origin) == cfg.Dir {
		m.shared = []string{snapDir}
	}
	return m, nil
}

func fakeMeta(cfg vmm.Config, kind vmm.SnapshotKind, parent string) (vmm.SnapshotMeta, error) {
	k, err := vmm.FileSHA256(cfg.Kernel)
	if err != nil {
		return vmm.SnapshotMeta{}, err
	}
	return vmm.SnapshotMeta{
		Format: vmm.SnapshotMetaFormat, VMM: "fake", VMMVersion: "1", Kind: kind, Parent: parent,
		KernelSHA256: k, VCPUs: cfg.VCPUs, MemoryMiB: cfg.MemoryMiB, MachineArgs: []string{"-fake"},
	}, nil
}

type fakeMachine struct {
	cfg  vmm.Config
	pid  int
	kill func() error
	done chan struct{}

	mu       sync.Mutex
	stopping bool
	err      error
	shared   []string // pause snapshots withdrawn by Resume
}

func newFakeMachine(cfg vmm.Config, pid int, kill func() error) *fakeMachine {
	return &fakeMachine{cfg: cfg, pid: pid, kill: kill, done: make(chan struct{})}
}

func (m *fakeMachine) exited() {
	m.mu.Lock()
	if !m.stopping {
		m.err = fmt.Errorf("fake vm %s (pid %d) exited", m.cfg.ID, m.pid)
	}
	m.mu.Unlock()
	close(m.done)
}

func (m *fakeMachine) PID() int              { return m.pid }
func (m *fakeMachine) Done() <-chan struct{} { return m.done }
func (m *fakeMachine) ConsoleLog() string    { return filepath.Join(m.cfg.Dir, "console.log") }

func (m *fakeMachine) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

func (m *fakeMachine) signal(sig syscall.Signal) error {
	select {
	case <-m.done:
		return vmm.ErrNotRunning
	default:
		return syscall.Kill(m.pid, sig)
	}
}

func (m *fakeMachine) Pause(ctx context.Context) error {
	if err := m.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	for { // SIGSTOP is asynchronous; pausing returns once the process has stopped
		if st, err := m.Status(ctx); err != nil || st == "paused" {
			return err
		}
		time.Sleep(time.Millisecond)
	}
}

func (m *fakeMachine) Resume(ctx context.Context) error {
	m.mu.Lock()
	for _, dir := range m.shared {
		os.Remove(filepath.Join(dir, vmm.MetaFileName))
	}
	m.shared = nil
	m.mu.Unlock()
	return m.signal(syscall.SIGCONT)
}

func (m *fakeMachine) Status(ctx context.Context) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", m.pid))
	if err != nil {
		return "", vmm.ErrNotRunning
	}
	if f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:])); len(f) > 0 && f[0] == "T" {
		return "paused", nil
	}
	return "running", nil
}

func (m *fakeMachine) Stop(ctx context.Context) error {
	m.mu.Lock()
	m.stopping = true
	m.mu.Unlock()
	if err := m.kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-m.done
	var st fakeState
	if vmproc.ReadState(filepath.Join(m.cfg.Dir, "state.json"), &st) == nil && st.PID == m.pid {
		os.Remove(filepath.Join(m.cfg.Dir, "state.json"))
	}
	return nil
}

func (m *fakeMachine) Snapshot(ctx context.Context, o vmm.SnapshotOptions) (*vmm.Snapshot, error) {
	if st, err := m.Status(ctx); err != nil || st != "paused" {
		return nil, fmt.Errorf("snapshot fake %s: %w", m.cfg.ID, vmm.ErrNotPaused)
	}
	if o.Kind == "" {
		o.Kind = vmm.SnapshotFull
	}
	meta, err := fakeMeta(m.cfg, o.Kind, o.Parent)
	if err != nil {
		return nil, err
	}
	for _, f := range []vmm.SnapshotFile{{Role: vmm.FileMemory, Name: "mem"}, {Role: vmm.FileState, Name: "vmstate"}} {
		data := []byte(fmt.Sprintf("%s of %s", f.Role, m.cfg.ID))
		if err := os.WriteFile(filepath.Join(o.Dir, f.Name), data, 0o600); err != nil {
			return nil, err
		}
		f.Size = int64(len(data))
		f.SHA256 = fmt.Sprintf("%x", sha256.Sum256(data))
		meta.Files = append(meta.Files, f)
	}
	if !o.Detached {
		if err := os.WriteFile(filepath.Join(o.Dir, "origin"), []byte(m.cfg.Dir), 0o600); err != nil {
			return nil, err
		}
		m.mu.Lock()
		m.shared = append(m.shared, o.Dir)
		m.mu.Unlock()
	}
	meta.CreatedAt = time.Now().UTC()
	if err := vmm.WriteSnapshotMeta(o.Dir, meta); err != nil {
		return nil, err
	}
	return &vmm.Snapshot{Dir: o.Dir, Meta: meta}, nil
}

var (
	_ vmm.Restorer    = fakeDriver{}
	_ vmm.Snapshotter = (*fakeMachine)(nil)
)
