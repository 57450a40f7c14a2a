// Package vmmtest is the conformance suite every vmm driver passes: start, stop, kill,
// adopt, pause/resume, failed starts leaving nothing behind and, for drivers that
// implement the optional capabilities, snapshot and restore. A driver's own tests call
// Run with a Harness that says how to make the driver and a VM it can boot (a fake VMM
// binary or a real guest).
package vmmtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/vmm"
	"github.com/wrennhq/wrenn/internal/vmm/vmproc"
)

// Harness tells the suite how to exercise one driver.
type Harness struct {
	// New returns a new driver instance. The suite calls it more than once per
	// test: Adopt runs on a second instance, as after an agent restart.
	New func(t *testing.T) vmm.Driver
	// Config returns a VM that boots and stays up, with a unique ID and a fresh,
	// empty Dir of its own.
	Config func(t *testing.T) vmm.Config
	// FailingConfig returns a VM whose VMM process is spawned but fails before
	// Start returns (bad kernel, a fake binary told to exit). nil skips that case.
	FailingConfig func(t *testing.T) vmm.Config
	// Ready waits until the guest is far enough to pause, kill or snapshot
	// meaningfully (e.g. a console marker). nil: Start returning is enough. The
	// suite also calls it on restored VMs after Resume, where it should see the
	// guest run on (e.g. a new line on the console), not its boot again.
	Ready func(t *testing.T, m vmm.Machine)
	// Timeout bounds each start, stop and exit the suite waits for. Default 30 s.
	Timeout time.Duration
	// Processes lists the live processes that belong to a VM's Dir. Default: every
	// process whose command line mentions the Dir (sockets, pidfiles and logs
	// live there).
	Processes func(dir string) []int
}

// Run runs every conformance case as a subtest, one after another (real VMs on a
// small machine must not boot in parallel).
func Run(t *testing.T, h Harness) {
	if h.New == nil || h.Config == nil {
		t.Fatal("vmmtest: Harness needs New and Config")
	}
	if h.Timeout <= 0 {
		h.Timeout = 30 * time.Second
	}
	if h.Processes == nil {
		h.Processes = ProcessesIn
	}
	s := &suite{h: h}
	t.Run("StartStop", s.startStop)
	t.Run("PauseResume", s.pauseResume)
	t.Run("KillIsAnError", s.kill)
	t.Run("AdoptByAnotherDriver", s.adopt)
	t.Run("AdoptEmptyDir", s.adoptEmpty)
	t.Run("StartInLiveDirRefused", s.liveDir)
	t.Run("StartCancelled", s.cancelled)
	t.Run("StartFailureLeavesNothing", s.startFailure)
	t.Run("Snapshot", s.snapshot)
	t.Run("SnapshotDiff", s.snapshotDiff)
	t.Run("Restore", s.restore)
	t.Run("RestoreIncompatible", s.restoreIncompatible)
	t.Run("SnapshotDetached", s.snapshotDetached)
	t.Run("PauseResumeCycles", s.pauseResumeCycles)
	t.Run("RestoreTruncatedState", s.restoreTruncatedState)
}

type suite struct {
	h Harness
	// noSnapshots is set once a started Machine turned out not to implement
	// vmm.Snapshotter, so later snapshot cases skip without booting a VM.
	noSnapshots string
}

// stater is implemented by machines that report their run state; the suite checks
// it when present ("running", "paused", compared case-insensitively).
type stater interface {
	Status(ctx context.Context) (string, error)
}

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 4*s.h.Timeout)
	t.Cleanup(cancel)
	return ctx
}

// config returns a fresh VM config whose processes are killed when the test ends,
// whatever happened.
func (s *suite) config(t *testing.T) vmm.Config {
	t.Helper()
	cfg := s.h.Config(t)
	s.reapAtEnd(t, cfg.Dir)
	return cfg
}

func (s *suite) reapAtEnd(t *testing.T, dir string) {
	t.Cleanup(func() {
		for _, pid := range s.h.Processes(dir) {
			t.Errorf("cleanup: killing leftover process %d of %s", pid, dir)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

// start boots cfg on d and stops the VM at the end of the test.
func (s *suite) start(t *testing.T, d vmm.Driver, cfg vmm.Config) vmm.Machine {
	t.Helper()
	m, err := d.Start(s.ctx(t), cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	s.stopAtEnd(t, m)
	if _, ok := m.(vmm.Snapshotter); !ok {
		s.noSnapshots = fmt.Sprintf("driver %s: its Machine (%T) does not implement vmm.Snapshotter", d.Name(), m)
	}
	if s.h.Ready != nil {
		s.h.Ready(t, m)
	}
	return m
}

func (s *suite) stopAtEnd(t *testing.T, m vmm.Machine) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.h.Timeout)
		defer cancel()
		if err := m.Stop(ctx); err != nil {
			t.Errorf("cleanup stop: %v", err)
		}
	})
}

func (s *suite) waitDone(t *testing.T, m vmm.Machine) {
	t.Helper()
	select {
	case <-m.Done():
	case <-time.After(s.h.Timeout):
		t.Fatalf("vm pid %d did not exit within %s", m.PID(), s.h.Timeout)
	}
}

func (s *suite) assertNoProcesses(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(s.h.Timeout)
	for {
		pids := s.h.Processes(dir)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes still running for %s: %v", dir, pids)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *suite) wantStatus(t *testing.T, m vmm.Machine, want string) {
	t.Helper()
	st, ok := m.(stater)
	if !ok {
		return
	}
	got, err := st.Status(s.ctx(t))
	if err != nil || !strings.EqualFold(got, want) {
		t.Errorf("status %q (%v), want %q", got, err, want)
	}
}

// ProcessesIn lists live (non-zombie) processes other than this one whose command
// line mentions dir.
func ProcessesIn(dir string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		args, err := vmproc.Cmdline(pid)
		if err != nil {
			continue
		}
		if _, err := vmproc.StartTime(pid); err != nil {
			continue // zombie or gone
		}
		for _, a := range args {
			if strings.Contains(a, dir) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

func alive(pid int) bool {
	_, err := vmproc.StartTime(pid)
	return err == nil
}

func (s *suite) startStop(t *testing.T) {
	d := s.h.New(t)
	cfg := s.config(t)
	m := s.start(t, d, cfg)
	if m.PID() <= 0 || !alive(m.PID()) {
		t.Fatalf("pid %d is not a live process", m.PID())
	}
	select {
	case <-m.Done():
		t.Fatalf("Done closed while running: %v", m.Err())
	default:
	}
	if m.Err() != nil {
		t.Errorf("Err while running: %v", m.Err())
	}
	// The agent reads a paused sandbox's console log by this name, with no Machine.
	if want := filepath.Join(cfg.Dir, vmm.ConsoleLogName); m.ConsoleLog() != want {
		t.Errorf("console log at %q, want %q", m.ConsoleLog(), want)
	}
	s.wantStatus(t, m, "running")
	if err := m.Stop(s.ctx(t)); err != nil {
		t.Fatalf("stop: %v", err)
	}
	s.waitDone(t, m)
	if m.Err() != nil {
		t.Errorf("Err after Stop: %v", m.Err())
	}
	if err := m.Stop(s.ctx(t)); err != nil {
		t.Errorf("second stop: %v", err)
	}
	if err := m.Pause(s.ctx(t)); !errors.Is(err, vmm.ErrNotRunning) {
		t.Errorf("pause after stop: %v, want ErrNotRunning", err)
	}
	if _, err := os.Stat(m.ConsoleLog()); err != nil {
		t.Errorf("console log gone after Stop: %v", err)
	}
	s.assertNoProcesses(t, cfg.Dir)
}

func (s *suite) pauseResume(t *testing.T) {
	m := s.start(t, s.h.New(t), s.config(t))
	ctx := s.ctx(t)
	for i := 0; i < 2; i++ { // pausing a paused VM is not an error
		if err := m.Pause(ctx); err != nil {
			t.Fatalf("pause %d: %v", i+1, err)
		}
	}
	s.wantStatus(t, m, "paused")
	for i := 0; i < 2; i++ {
		if err := m.Resume(ctx); err != nil {
			t.Fatalf("resume %d: %v", i+1, err)
		}
	}
	s.wantStatus(t, m, "running")
	// A paused VM stops like a running one.
	if err := m.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(ctx); err != nil {
		t.Fatalf("stop while paused: %v", err)
	}
	s.waitDone(t, m)
	if m.Err() != nil {
		t.Errorf("Err after Stop: %v", m.Err())
	}
}

func (s *suite) kill(t *testing.T) {
	d := s.h.New(t)
	cfg := s.config(t)
	m := s.start(t, d, cfg)
	if err := syscall.Kill(m.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s.waitDone(t, m)
	if m.Err() == nil {
		t.Error("Err is nil after the VMM was killed")
	}
	t.Logf("Err: %v", m.Err())
	if _, err := s.h.New(t).Adopt(s.ctx(t), cfg.Dir); !errors.Is(err, vmm.ErrNotRunning) {
		t.Errorf("adopt of a killed vm: %v, want ErrNotRunning", err)
	}
	if err := m.Stop(s.ctx(t)); err != nil {
		t.Errorf("stop after kill: %v", err)
	}
	s.assertNoProcesses(t, cfg.Dir)
}

func (s *suite) adopt(t *testing.T) {
	cfg := s.config(t)
	m1 := s.start(t, s.h.New(t), cfg)
	ctx := s.ctx(t)
	d2 := s.h.New(t)
	m2, err := d2.Adopt(ctx, cfg.Dir)
	if err != nil {
		t.Fatalf("adopt: %v", err)
	}
	s.stopAtEnd(t, m2)
	if m2.PID() != m1.PID() {
		t.Fatalf("adopted pid %d, want %d", m2.PID(), m1.PID())
	}
	if m2.ConsoleLog() != m1.ConsoleLog() {
		t.Errorf("adopted console %q, want %q", m2.ConsoleLog(), m1.ConsoleLog())
	}
	if err := m2.Pause(ctx); err != nil {
		t.Fatalf("pause adopted: %v", err)
	}
	s.wantStatus(t, m2, "paused")
	if err := m2.Resume(ctx); err != nil {
		t.Fatalf("resume adopted: %v", err)
	}
	if err := m2.Stop(ctx); err != nil {
		t.Fatalf("stop adopted: %v", err)
	}
	s.waitDone(t, m2)
	s.waitDone(t, m1) // the first handle notices too
	if m2.Err() != nil {
		t.Errorf("adopted Err after Stop: %v", m2.Err())
	}
	if _, err := d2.Adopt(ctx, cfg.Dir); !errors.Is(err, vmm.ErrNotRunning) {
		t.Errorf("adopt after stop: %v, want ErrNotRunning", err)
	}
	s.assertNoProcesses(t, cfg.Dir)
}

func (s *suite) adoptEmpty(t *testing.T) {
	if _, err := s.h.New(t).Adopt(s.ctx(t), t.TempDir()); !errors.Is(err, vmm.ErrNotRunning) {
		t.Errorf("adopt of an empty dir: %v, want ErrNotRunning", err)
	}
}

func (s *suite) liveDir(t *testing.T) {
	d := s.h.New(t)
	cfg := s.config(t)
	m := s.start(t, d, cfg)
	if m2, err := d.Start(s.ctx(t), cfg); err == nil {
		s.stopAtEnd(t, m2)
		t.Fatal("second start in a live dir succeeded")
	}
	if !alive(m.PID()) {
		t.Fatal("the running vm died when a second start was refused")
	}
	s.wantStatus(t, m, "running")
}

func (s *suite) cancelled(t *testing.T) {
	cfg := s.config(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if m, err := s.h.New(t).Start(ctx, cfg); err == nil {
		s.stopAtEnd(t, m)
		t.Fatal("start with a cancelled context succeeded")
	}
	s.assertNoProcesses(t, cfg.Dir)
}

func (s *suite) startFailure(t *testing.T) {
	if s.h.FailingConfig == nil {
		t.Skip("harness has no FailingConfig")
	}
	cfg := s.h.FailingConfig(t)
	s.reapAtEnd(t, cfg.Dir)
	m, err := s.h.New(t).Start(s.ctx(t), cfg)
	if err == nil {
		s.stopAtEnd(t, m)
		t.Fatal("start of a failing vm succeeded")
	}
	t.Logf("start error: %v", err)
	if !strings.Contains(err.Error(), cfg.ID) {
		t.Errorf("start error does not name the vm %q: %v", cfg.ID, err)
	}
	s.assertNoProcesses(t, cfg.Dir)
	if _, err := s.h.New(t).Adopt(s.ctx(t), cfg.Dir); !errors.Is(err, vmm.ErrNotRunning) {
		t.Errorf("adopt after a failed start: %v, want ErrNotRunning", err)
	}
}
