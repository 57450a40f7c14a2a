package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/testutil"
	"github.com/wrennhq/wrenn/internal/vmm"
)

// Real-QEMU tests. They boot TCG guests on a 2-core machine, so none of them runs in
// parallel; each one kills whatever it started in t.Cleanup, even on failure.

const bootTimeout = 90 * time.Second

func realConfig(t testing.TB, id, kernel, initrd string) vmm.Config {
	t.Helper()
	dir := t.TempDir()
	killAllIn(t, dir)
	return vmm.Config{ID: id, Dir: dir, Kernel: kernel, Initrd: initrd, VCPUs: 1, MemoryMiB: 256}
}

// startReal starts a VM and makes sure it is gone at the end of the test.
func startReal(t testing.TB, d *Driver, cfg vmm.Config) *Machine {
	t.Helper()
	vm, err := d.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := vm.(*Machine)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Stop(ctx); err != nil {
			t.Errorf("cleanup stop: %v", err)
		}
	})
	t.Logf("pid %d: spawn→QMP ready %s, spawn→running %s",
		m.PID(), m.Timings().QMPReady.Round(time.Microsecond), m.Timings().Running.Round(time.Microsecond))
	return m
}

func TestVMBadKernel(t *testing.T) {
	requireQEMU(t)
	cfg := realConfig(t, "bad-kernel", "", "")
	cfg.Kernel = filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(cfg.Kernel, []byte("this is not a kernel"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(Options{}).Start(context.Background(), cfg)
	if err == nil {
		t.Fatal("start with a garbage kernel succeeded")
	}
	t.Log(err)
	if !strings.Contains(err.Error(), "qemu stderr:") {
		t.Errorf("error lacks QEMU's stderr: %v", err)
	}
	assertNoProcesses(t, cfg.Dir)
}

// A real kernel with a garbage initramfs and no root disk panics; QEMU must exit
// (panic=-1 + -no-reboot) and leave nothing behind.
func TestVMBogusInitrdPanics(t *testing.T) {
	requireQEMU(t)
	kernel := testKernel(t)
	initrd := filepath.Join(t.TempDir(), "initrd.img")
	if err := os.WriteFile(initrd, []byte(strings.Repeat("garbage!", 4096)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := realConfig(t, "bogus-initrd", kernel, initrd)
	vm, err := New(Options{}).Start(context.Background(), cfg)
	if err != nil {
		// Acceptable if the guest died before QMP answered; the error must say so.
		t.Logf("start failed: %v", err)
	} else {
		waitDone(t, vm, bootTimeout)
		if vm.Err() == nil {
			t.Error("Err is nil after a guest panic")
		}
		t.Logf("Err: %v", vm.Err())
		if err := vm.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	}
	assertNoProcesses(t, cfg.Dir)
}

func TestVMKernelPanicExits(t *testing.T) {
	requireQEMU(t)
	cfg := realConfig(t, "panic", testKernel(t), "")
	m := startReal(t, New(Options{}), cfg)
	waitDone(t, m, bootTimeout)
	var ee *ExitError
	if !errors.As(m.Err(), &ee) || ee.Status == nil || !ee.Status.Success() {
		t.Fatalf("Err = %v, want an ExitError with exit status 0", m.Err())
	}
	if !strings.Contains(m.Err().Error(), "Kernel panic") {
		t.Errorf("Err lacks the console's panic: %v", m.Err())
	}
	con, _ := os.ReadFile(m.ConsoleLog())
	if !strings.Contains(string(con), "Kernel panic") {
		t.Errorf("console has no kernel panic:\n%s", tail(con, 3000))
	}
	if err := m.Stop(context.Background()); err != nil {
		t.Error(err)
	}
	assertNoProcesses(t, cfg.Dir)
}

func TestVMPauseResumeKill(t *testing.T) {
	requireQEMU(t)
	cfg := realConfig(t, "pause-kill", testKernel(t), testInitramfs(t))
	d := New(Options{})
	m := startReal(t, d, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()

	if err := m.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if s, err := m.Status(ctx); err != nil || s != "paused" {
		t.Fatalf("status after pause: %q, %v", s, err)
	}
	if err := m.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if s, err := m.Status(ctx); err != nil || s != "running" {
		t.Fatalf("status after resume: %q, %v", s, err)
	}
	t0 := time.Now()
	waitConsole(t, m.ConsoleLog(), readyMarker, bootTimeout)
	t.Logf("guest init ran %s after resume", time.Since(t0).Round(time.Millisecond))

	if err := syscall.Kill(m.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDone(t, m, 10*time.Second)
	var ee *ExitError
	if !errors.As(m.Err(), &ee) {
		t.Fatalf("Err = %v, want ExitError", m.Err())
	}
	if sig, ok := ee.Signal(); !ok || sig != syscall.SIGKILL || !strings.Contains(ee.Error(), "killed") {
		t.Errorf("Err = %v, want killed by SIGKILL", ee)
	}
	if _, err := d.Adopt(ctx, cfg.Dir); !errors.Is(err, vmm.ErrNotRunning) {
		t.Errorf("adopt of a killed vm: %v", err)
	}
	if err := m.Stop(ctx); err != nil {
		t.Error(err)
	}
	assertNoProcesses(t, cfg.Dir)
}

func TestVMAdoptByAnotherDriver(t *testing.T) {
	requireQEMU(t)
	cfg := realConfig(t, "adopt", testKernel(t), testInitramfs(t))
	m1 := startReal(t, New(Options{}), cfg)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()

	vm2, err := New(Options{}).Adopt(ctx, cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	m2 := vm2.(*Machine)
	if m2.PID() != m1.PID() || m2.ID() != cfg.ID {
		t.Fatalf("adopted pid %d id %q, want %d %q", m2.PID(), m2.ID(), m1.PID(), cfg.ID)
	}
	if s, err := m2.Status(ctx); err != nil || s != "running" {
		t.Fatalf("adopted status %q, %v", s, err)
	}
	waitConsole(t, m2.ConsoleLog(), readyMarker, bootTimeout)
	if err := m2.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m2.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m2.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	waitDone(t, m2, time.Second)
	waitDone(t, m1, 5*time.Second)
	if m2.Err() != nil {
		t.Errorf("adopted Err after Stop: %v", m2.Err())
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, qmpSocketName)); err == nil {
		t.Error("qmp socket left after Stop")
	}
	assertNoProcesses(t, cfg.Dir)
}

// The QEMU process must run in the sandbox's network namespace and open the TAP
// there, while QMP keeps working from the host's namespace.
func TestVMNetns(t *testing.T) {
	requireQEMU(t)
	ns, nsPath := testutil.NewNetns(t, "wrenn-qt")
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("-n", ns, "tuntap", "add", "dev", "tap0", "mode", "tap")
	run("-n", ns, "link", "set", "tap0", "up")

	cfg := realConfig(t, "netns", testKernel(t), testInitramfs(t))
	cfg.Net = testNet()
	cfg.Net.NetNS = nsPath
	m := startReal(t, New(Options{}), cfg)

	var want, got syscall.Stat_t
	if err := syscall.Stat(cfg.Net.NetNS, &want); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", m.PID()), &got); err != nil {
		t.Fatal(err)
	}
	if got.Ino != want.Ino {
		t.Errorf("qemu runs in netns inode %d, want %d", got.Ino, want.Ino)
	}
	var self syscall.Stat_t
	syscall.Stat("/proc/self/ns/net", &self)
	if self.Ino == want.Ino {
		t.Error("the test process itself was moved into the namespace")
	}
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	if s, err := m.Status(ctx); err != nil || s != "running" {
		t.Fatalf("status %q, %v", s, err)
	}
	waitConsole(t, m.ConsoleLog(), readyMarker, bootTimeout)
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", m.PID()))
	if !strings.Contains(string(cmdline), "wrenn.ip=169.254.0.21/30 wrenn.gw=169.254.0.22") {
		t.Errorf("kernel args missing from %q", cmdline)
	}
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	assertNoProcesses(t, cfg.Dir)
}
