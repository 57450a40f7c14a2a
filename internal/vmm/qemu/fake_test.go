package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/testutil"
	"github.com/wrennhq/wrenn/internal/vmm"
	"github.com/wrennhq/wrenn/internal/vmm/vmproc"
)

// The test binary doubles as a fake QEMU: the driver execs it (through a symlink
// named qemu-system-fake) with QEMU's argv, and TestMain recognises "-name" as the
// first argument. The VM id picks the behaviour, because the driver passes QEMU an
// empty environment:
//
//	fake-exit-*     print a QEMU-like error to stderr and exit 1
//	fake-hang-*     write the pidfile and never open QMP
//	fake-migfail-*  a QMP server whose migrations (snapshots) fail
//	anything else: a QMP server like QEMU's (quit exits 0); with -incoming it
//	waits for migrate-incoming like QEMU restoring a snapshot
//
// Run with "--version" it prints a QEMU-like version line.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "-name" {
		os.Exit(fakeQEMU(os.Args[1:]))
	}
	if len(os.Args) == 2 && os.Args[1] == "--version" && strings.HasPrefix(filepath.Base(os.Args[0]), "qemu-system-") {
		fmt.Println("QEMU emulator version " + fakeVersion + " (fake)")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// splitOpts splits QEMU's key=value,key=value syntax, where ",," is a literal comma.
func splitOpts(s string) map[string]string {
	out := map[string]string{}
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			if i+1 < len(s) && s[i+1] == ',' {
				cur.WriteByte(',')
				i++
				continue
			}
			parts = append(parts, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteByte(s[i])
	}
	parts = append(parts, cur.String())
	for i, p := range parts {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			k, v = fmt.Sprint(i), p
		}
		out[k] = v
	}
	return out
}

func fakeQEMU(args []string) int {
	var id, qmpFD, consolePath, pidPath string
	incoming := false
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-incoming":
			incoming = true
		case "-name":
			id = args[i+1]
		case "-pidfile":
			pidPath = args[i+1]
		case "-chardev":
			o := splitOpts(args[i+1])
			switch o["id"] {
			case "qmp":
				qmpFD = o["fd"]
			case "console":
				consolePath = o["path"]
			}
		}
	}
	if strings.HasPrefix(id, "fake-exit") {
		fmt.Fprintln(os.Stderr, "qemu-system-x86_64: -drive id=root: Could not open 'nope': No such file or directory")
		return 1
	}
	os.WriteFile(consolePath, []byte("fake console: booting "+id+"\n"), 0o600)
	os.WriteFile(pidPath, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o600)
	if strings.HasPrefix(id, "fake-hang") {
		for {
			time.Sleep(time.Hour) // select{} would trip the deadlock detector
		}
	}
	fd, err := strconv.Atoi(qmpFD)
	if err != nil {
		fmt.Fprintln(os.Stderr, "qmp chardev without fd=:", err)
		return 1
	}
	ln, err := net.FileListener(os.NewFile(uintptr(fd), "qmp"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	f := &fakeQMP{ln: ln, status: "running", onQuit: func() { os.Exit(0) }}
	if incoming {
		f.status = "inmigrate"
	}
	f.failSave = strings.HasPrefix(id, "fake-migfail")
	f.fatal = func() {
		fmt.Fprintln(os.Stderr, "qemu-system-x86_64: load of migration failed: Input/output error")
		os.Exit(1)
	}
	f.serve()
	return 1
}

// fakeDriver returns a Driver whose "QEMU" is this test binary.
func fakeDriver(t *testing.T) (*Driver, string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "qemu-system-fake")
	if err := os.Symlink(self, bin); err != nil {
		t.Fatal(err)
	}
	d := New(Options{Binary: bin, StartTimeout: 2 * time.Second})
	d.kvmUsable = func() bool { return false }
	d.tscKHz = func() int64 { return 2096010 }
	return d, bin
}

// processesIn lists live processes whose argv mentions dir (our VM's files).
func processesIn(dir string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		args, err := vmproc.Cmdline(pid)
		if err != nil || slices.Contains([]string{"Z", "X"}, procState(pid)) {
			continue
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

func procState(pid int) string {
	_, err := vmproc.StartTime(pid)
	if errors.Is(err, vmproc.ErrExited) {
		return "Z"
	}
	return ""
}

// killAllIn is the test's safety net: whatever happened, no process of ours stays.
func killAllIn(t testing.TB, dir string) {
	t.Cleanup(func() {
		for _, pid := range processesIn(dir) {
			t.Errorf("cleanup: killing leftover process %d in %s", pid, dir)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

func assertNoProcesses(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := processesIn(dir)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes still running in %s: %v", dir, pids)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitDone(t *testing.T, m vmm.Machine, d time.Duration) {
	t.Helper()
	select {
	case <-m.Done():
	case <-time.After(d):
		t.Fatalf("vm pid %d did not exit within %s", m.PID(), d)
	}
}

func TestFakeStartPauseStop(t *testing.T) {
	d, _ := fakeDriver(t)
	cfg := testFiles(t)
	cfg.ID = "fake-ok"
	killAllIn(t, cfg.Dir)
	ctx := context.Background()
	vm, err := d.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := vm.(*Machine)
	t.Logf("fake spawn→QMP ready %s, →running %s", m.Timings().QMPReady, m.Timings().Running)
	if m.Timings().QMPReady <= 0 || m.Timings().Running < m.Timings().QMPReady {
		t.Errorf("timings %+v", m.Timings())
	}
	// The process runs exactly the argv we recorded: exec'd directly, no shell.
	st, err := readState(cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	args, _ := vmproc.Cmdline(m.PID())
	if !slices.Equal(args, st.Argv) || st.PID != m.PID() {
		t.Errorf("process argv %q, state %+v", args, st)
	}
	if pgid, _ := syscall.Getpgid(m.PID()); pgid != m.PID() {
		t.Errorf("qemu pgid %d, want its own group %d", pgid, m.PID())
	}
	if err := m.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if s, err := m.Status(ctx); err != nil || s != "paused" {
		t.Errorf("after pause: %q, %v", s, err)
	}
	if err := m.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if s, err := m.Status(ctx); err != nil || s != "running" {
		t.Errorf("after resume: %q, %v", s, err)
	}
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	waitDone(t, m, time.Second)
	if m.Err() != nil {
		t.Errorf("Err after Stop: %v", m.Err())
	}
	for _, n := range []string{qmpSocketName, pidFileName, stateFileName} {
		if _, err := os.Stat(filepath.Join(cfg.Dir, n)); err == nil {
			t.Errorf("%s left after Stop", n)
		}
	}
	if _, err := os.Stat(m.ConsoleLog()); err != nil {
		t.Errorf("console log removed: %v", err)
	}
	if err := m.Pause(ctx); !errors.Is(err, vmm.ErrNotRunning) {
		t.Errorf("pause after stop: %v", err)
	}
	assertNoProcesses(t, cfg.Dir)
}

func TestFakeExitAtOnce(t *testing.T) {
	d, _ := fakeDriver(t)
	cfg := testFiles(t)
	cfg.ID = "fake-exit"
	killAllIn(t, cfg.Dir)
	_, err := d.Start(context.Background(), cfg)
	if err == nil {
		t.Fatal("start succeeded")
	}
	t.Log(err)
	for _, want := range []string{"start qemu fake-exit", "exit status 1", "Could not open 'nope'"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q", want)
		}
	}
	assertNoProcesses(t, cfg.Dir)
	if _, err := os.Stat(filepath.Join(cfg.Dir, stateFileName)); err == nil {
		t.Error("state file left after failed start")
	}
}

func TestFakeQMPNeverReady(t *testing.T) {
	d, _ := fakeDriver(t)
	d.opts.StartTimeout = 500 * time.Millisecond
	cfg := testFiles(t)
	cfg.ID = "fake-hang"
	killAllIn(t, cfg.Dir)
	t0 := time.Now()
	_, err := d.Start(context.Background(), cfg)
	if err == nil {
		t.Fatal("start succeeded")
	}
	t.Log(err)
	if !strings.Contains(err.Error(), "qmp not ready") || !strings.Contains(err.Error(), "fake console: booting") {
		t.Errorf("error lacks reason or console tail: %v", err)
	}
	if time.Since(t0) > 5*time.Second {
		t.Errorf("start took %s", time.Since(t0))
	}
	assertNoProcesses(t, cfg.Dir)
}

func TestFakeStartCancelled(t *testing.T) {
	d, _ := fakeDriver(t)
	cfg := testFiles(t)
	cfg.ID = "fake-hang-cancel"
	killAllIn(t, cfg.Dir)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := d.Start(ctx, cfg); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("start with short ctx: %v", err)
	}
	assertNoProcesses(t, cfg.Dir)
}

func TestFakeAdopt(t *testing.T) {
	d1, _ := fakeDriver(t)
	cfg := testFiles(t)
	cfg.ID = "fake-adopt"
	killAllIn(t, cfg.Dir)
	ctx := context.Background()
	vm1, err := d1.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// A second driver, as after an agent restart.
	d2 := New(Options{Binary: d1.opts.Binary})
	vm2, err := d2.Adopt(ctx, cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if vm2.PID() != vm1.PID() {
		t.Errorf("adopted pid %d, want %d", vm2.PID(), vm1.PID())
	}
	if err := vm2.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if err := vm2.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	waitDone(t, vm2, 2*time.Second)
	waitDone(t, vm1, 2*time.Second) // the first handle notices too
	if vm2.Err() != nil {
		t.Errorf("adopted Err after Stop: %v", vm2.Err())
	}
	if _, err := d2.Adopt(ctx, cfg.Dir); !errors.Is(err, vmm.ErrNotRunning) {
		t.Errorf("adopt after stop: %v", err)
	}
	assertNoProcesses(t, cfg.Dir)
}

func TestFakeAdoptRejectsRecycledPID(t *testing.T) {
	d, _ := fakeDriver(t)
	cfg := testFiles(t)
	cfg.ID = "fake-recycled"
	killAllIn(t, cfg.Dir)
	ctx := context.Background()
	vm, err := d.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Stop(ctx)
	st, err := readState(cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	// Same pid, different start time: must not be taken for our VM.
	bad := st
	bad.ProcStart++
	if err := writeState(cfg.Dir, bad); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Adopt(ctx, cfg.Dir); !errors.Is(err, vmm.ErrNotRunning) {
		t.Errorf("adopt with wrong start time: %v", err)
	}
	// A live process that is not QEMU (this test binary's own pid).
	bad = st
	bad.PID = os.Getpid()
	bad.ProcStart, _ = vmproc.StartTime(os.Getpid())
	bad.Binary = "/usr/bin/qemu-system-x86_64"
	if err := writeState(cfg.Dir, bad); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Adopt(ctx, cfg.Dir); !errors.Is(err, vmm.ErrNotRunning) {
		t.Errorf("adopt of a non-qemu process: %v", err)
	}
	if err := writeState(cfg.Dir, st); err != nil {
		t.Fatal(err)
	}
	// Start refuses a Dir whose VM still runs.
	if _, err := d.Start(ctx, cfg); err == nil || !strings.Contains(err.Error(), "already has a running vm") {
		t.Errorf("second start in a live dir: %v", err)
	}
}

// A Start that died between spawn and writing its state leaves only QEMU's own
// pidfile; Adopt must kill that QEMU and report ErrNotRunning.
func TestFakeAdoptReapsHalfMade(t *testing.T) {
	d, bin := fakeDriver(t)
	cfg := testFiles(t)
	cfg.ID = "fake-hang-halfmade"
	killAllIn(t, cfg.Dir)
	s, err := validate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	argv, err := buildArgv(bin, false, 0, s)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait() // reap, as init would for an agent that died
	testutil.WaitFor(t, 5*time.Second, "the fake qemu's pidfile", func() bool {
		_, err := os.Stat(s.pidPath())
		return err == nil
	})
	if _, err := d.Adopt(context.Background(), cfg.Dir); !errors.Is(err, vmm.ErrNotRunning) {
		t.Fatalf("adopt of half-made dir: %v", err)
	}
	assertNoProcesses(t, cfg.Dir)
}

// Spawning into a namespace must never leave one of our own threads in it (which
// would also pin the namespace after `ip netns del`).
func TestFakeNetnsLeavesNoThreadBehind(t *testing.T) {
	_, nsPath := testutil.NewNetns(t, "wrenn-qt-fake")
	var want, host syscall.Stat_t
	if err := syscall.Stat(nsPath, &want); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat("/proc/self/ns/net", &host); err != nil {
		t.Fatal(err)
	}
	d, _ := fakeDriver(t)
	ctx := context.Background()
	for i := 0; i < 15; i++ {
		cfg := testFiles(t)
		cfg.ID = fmt.Sprintf("fake-ns-%d", i)
		cfg.Net = testNet()
		cfg.Net.NetNS = nsPath
		killAllIn(t, cfg.Dir)
		vm, err := d.Start(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		var got syscall.Stat_t
		if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", vm.PID()), &got); err != nil || got.Ino != want.Ino {
			t.Errorf("fake qemu in netns inode %d (%v), want %d", got.Ino, err, want.Ino)
		}
		if err := vm.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		tasks, _ := os.ReadDir("/proc/self/task")
		for _, task := range tasks {
			var st syscall.Stat_t
			if err := syscall.Stat("/proc/self/task/"+task.Name()+"/ns/net", &st); err == nil && st.Ino != host.Ino {
				t.Fatalf("thread %s of the test process is in netns inode %d", task.Name(), st.Ino)
			}
		}
	}
}
