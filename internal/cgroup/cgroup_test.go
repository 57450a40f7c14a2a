package cgroup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"

	"github.com/wrennhq/wrenn/internal/leakcheck"
)

// The test binary doubles as a jail helper: with helperEnv set it joins the cgroup
// through the procs files in procsEnv, exactly as the agent's jail will, and then
// does what helperEnv says.
const (
	helperEnv = "WRENN_CGROUP_TEST_HELPER"
	procsEnv  = "WRENN_CGROUP_TEST_PROCS"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode))
	}
	os.Exit(m.Run())
}

func helper(mode string) int {
	if err := Join(strings.Split(os.Getenv(procsEnv), "\n"), os.Getpid()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	switch mode {
	case "cat": // exec, so that what runs is in the group from its first instruction
		err := syscall.Exec("/bin/cat", []string{"cat", "/proc/self/cgroup"}, os.Environ())
		fmt.Fprintln(os.Stderr, err)
		return 4
	case "alloc": // 200 MiB of anonymous memory, every page touched
		b := make([]byte, 200<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		fmt.Println("allocated", len(b))
		return 0
	}
	return 5
}

func runHelper(t *testing.T, g *Group, mode string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, procsEnv+"="+strings.Join(g.ProcsFiles(), "\n"))
	return cmd
}

func randHex(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// hierarchyRoots lists where root would be in every mounted hierarchy.
func hierarchyRoots(t *testing.T, root string) []string {
	t.Helper()
	if cgroups.Mode() == cgroups.Unified {
		return []string{filepath.Join("/sys/fs/cgroup", root)}
	}
	entries, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, filepath.Join("/sys/fs/cgroup", e.Name(), root))
		}
	}
	return out
}

// newManager returns a Manager under a fresh parent "/wrenn-test-<random>". At the
// end it removes the parent from every hierarchy and fails the test if any cgroup
// with "wrenn" in its name is left that was not there before.
func newManager(t *testing.T) *Manager {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root to make cgroups (euid %d)", os.Geteuid())
	}
	if cgroups.Mode() == cgroups.Unavailable {
		t.Skip("no cgroup file system mounted at /sys/fs/cgroup")
	}
	root := "/wrenn-test-" + randHex(t)
	m, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	before, err := leakcheck.Take(leakcheck.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, d := range hierarchyRoots(t, root) {
			if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("remove test parent cgroup: %v", err)
			}
		}
		after, err := leakcheck.Take(leakcheck.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, item := range before.Leftovers(after) {
			if strings.HasPrefix(item, "cgroup: ") && strings.Contains(item, root) {
				t.Errorf("left behind: %s", item)
			}
		}
	})
	return m
}

func testName(t *testing.T) string { return "wrenn-test-" + randHex(t) }

// create makes a group and deletes it at the end of the test.
func create(t *testing.T, m *Manager, name string, l Limits) *Group {
	t.Helper()
	g, err := m.Create(name, l)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Delete(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return g
}

func read(t *testing.T, dir, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// checkFiles asserts the kernel's files hold l (with swap limited alongside memory
// where the host accounts swap).
func checkFiles(t *testing.T, g *Group, l Limits) {
	t.Helper()
	mem, cpu, pids := g.ctl["memory"], g.ctl["cpu"], g.ctl["pids"]
	quota := "max"
	if l.CPUs > 0 {
		quota = strconv.Itoa(int(l.CPUs * 100000))
	}
	if g.v2 != nil {
		if got := read(t, cpu, "cpu.max"); got != quota+" 100000" {
			t.Errorf("cpu.max = %q, want %q", got, quota+" 100000")
		}
		want := numberOr(l.MemoryBytes, "max")
		if got := read(t, mem, "memory.max"); got != want {
			t.Errorf("memory.max = %q, want %q", got, want)
		}
	} else {
		if quota == "max" {
			quota = "-1"
		}
		if got := read(t, cpu, "cpu.cfs_quota_us"); got != quota {
			t.Errorf("cpu.cfs_quota_us = %q, want %q", got, quota)
		}
		if got := read(t, cpu, "cpu.cfs_period_us"); got != "100000" {
			t.Errorf("cpu.cfs_period_us = %q, want 100000", got)
		}
		for _, f := range []string{"memory.limit_in_bytes", "memory.memsw.limit_in_bytes"} {
			if f != "memory.limit_in_bytes" && !exists(filepath.Join(mem, f)) {
				continue
			}
			got, err := strconv.ParseUint(read(t, mem, f), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			if l.MemoryBytes > 0 && got != uint64(l.MemoryBytes) || l.MemoryBytes == 0 && got < unlimitedV1 {
				t.Errorf("%s = %d, want %d (0: unlimited)", f, got, l.MemoryBytes)
			}
		}
	}
	if got, want := read(t, pids, "pids.max"), numberOr(l.Pids, "max"); got != want {
		t.Errorf("pids.max = %q, want %q", got, want)
	}
}

func TestInvalidNamesTouchNothing(t *testing.T) {
	if cgroups.Mode() == cgroups.Unavailable {
		t.Skip("no cgroup file system mounted at /sys/fs/cgroup")
	}
	root := "/wrenn-test-" + randHex(t)
	m, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", "A", "a_b", "a b", "a/b", ".", "..", "../etc", "/x", "sb\x00", "ß", strings.Repeat("a", 65)} {
		if _, err := m.Create(name, Limits{}); err == nil {
			t.Errorf("Create(%q) succeeded", name)
		}
		if _, err := m.Load(name); err == nil {
			t.Errorf("Load(%q) succeeded", name)
		}
	}
	for _, l := range []Limits{{CPUs: -1}, {CPUs: 0.001}, {MemoryBytes: -1}, {Pids: -2}, {IOWeight: 5}, {IOWeight: 1001}, {CPUs: math.Inf(1)}, {CPUs: math.NaN()}} {
		if _, err := m.Create("ok", l); err == nil {
			t.Errorf("Create with %+v succeeded", l)
		}
	}
	for _, d := range hierarchyRoots(t, root) {
		if exists(d) {
			t.Errorf("%s was made for an invalid name or limits", d)
		}
	}
	if err := validName(strings.Repeat("a", 64)); err != nil {
		t.Errorf("64-byte name refused: %v", err)
	}
	for _, r := range []string{"", "/", "wrenn", "/wrenn/", "/a/../b", "/a//b", "/a/./b", "/a b"} {
		if _, err := New(r); err == nil {
			t.Errorf("New(%q) succeeded", r)
		}
	}
}

func TestCreateAppliesLimitsAndLoadFindsThem(t *testing.T) {
	m := newManager(t)
	name := testName(t)
	l := Limits{CPUs: 1.5, MemoryBytes: 256 << 20, Pids: 64, IOWeight: 200}
	g := create(t, m, name, l)
	checkFiles(t, g, l)

	got := g.Applied()
	if got.CPUs != l.CPUs || got.MemoryBytes != l.MemoryBytes || got.Pids != l.Pids {
		t.Errorf("Applied() = %+v, want %+v", got, l)
	}
	if got.IOWeight == 0 {
		t.Logf("this host has no I/O weight file (v1 blkio.weight/blkio.bfq.weight, v2 io.weight/io.bfq.weight): IOWeight not applied")
	} else if got.IOWeight != l.IOWeight {
		t.Errorf("Applied().IOWeight = %d, want %d", got.IOWeight, l.IOWeight)
	}
	t.Logf("swap limited: %v; dirs: %v", g.SwapLimited(), g.Dirs())
	if g.v2 == nil && exists(filepath.Join(g.ctl["memory"], "memory.memsw.limit_in_bytes")) != g.SwapLimited() {
		t.Errorf("SwapLimited() = %v, memsw file present = %v", g.SwapLimited(), !g.SwapLimited())
	}
	if files := g.ProcsFiles(); len(files) == 0 || g.v2 != nil && len(files) != 1 {
		t.Errorf("ProcsFiles() = %v", files)
	}

	loaded, err := m.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Applied() != got || loaded.SwapLimited() != g.SwapLimited() {
		t.Errorf("Load: Applied() = %+v swap %v, want %+v swap %v", loaded.Applied(), loaded.SwapLimited(), got, g.SwapLimited())
	}
	if !slices.Equal(loaded.ProcsFiles(), g.ProcsFiles()) {
		t.Errorf("Load: ProcsFiles() = %v, want %v", loaded.ProcsFiles(), g.ProcsFiles())
	}
	names, err := m.List()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{name}) {
		t.Errorf("List() = %v, want [%s]", names, name)
	}

	if err := loaded.Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, d := range g.Dirs() {
		if exists(d) {
			t.Errorf("%s still there after Delete", d)
		}
	}
	if err := g.Delete(context.Background()); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if _, err := m.Load(name); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load after Delete: %v, want fs.ErrNotExist", err)
	}
	if names, err := m.List(); err != nil || len(names) != 0 {
		t.Errorf("List() after Delete = %v, %v", names, err)
	}
}

// Creating again updates the limits, raising and lowering memory (v1 must move the
// memory+swap limit first when raising and last when lowering) and removing limits.
func TestCreateTwiceUpdatesLimits(t *testing.T) {
	m := newManager(t)
	name := testName(t)
	g := create(t, m, name, Limits{CPUs: 0.5, MemoryBytes: 64 << 20, Pids: 10})
	for _, l := range []Limits{
		{CPUs: 2, MemoryBytes: 512 << 20, Pids: 100}, // raise
		{CPUs: 0.25, MemoryBytes: 32 << 20, Pids: 5}, // lower
		{},                       // no limits
		{MemoryBytes: 128 << 20}, // from none
		{CPUs: 1, MemoryBytes: 128 << 20, Pids: 7}, // same memory
	} {
		g2, err := m.Create(name, l)
		if err != nil {
			t.Fatalf("Create again with %+v: %v", l, err)
		}
		checkFiles(t, g2, l)
		if a := g2.Applied(); a.CPUs != l.CPUs || a.MemoryBytes != l.MemoryBytes || a.Pids != l.Pids {
			t.Errorf("Applied() = %+v, want %+v", a, l)
		}
		if !slices.Equal(g2.Dirs(), g.Dirs()) {
			t.Errorf("Dirs() = %v, want %v", g2.Dirs(), g.Dirs())
		}
	}
}

// A Create the kernel refuses removes the directories it made, parent included, but
// a refused update leaves the existing group alone.
func TestCreateFailureRemovesWhatItMade(t *testing.T) {
	m := newManager(t)
	name := testName(t)
	tooMuch := Limits{CPUs: 1e9} // a quota above the kernel's maximum (2^44 µs)
	if _, err := m.Create(name, tooMuch); err == nil {
		t.Fatal("Create with a quota the kernel refuses succeeded")
	} else {
		t.Logf("refused as expected: %v", err)
	}
	for _, d := range hierarchyRoots(t, m.root) {
		if exists(d) {
			t.Errorf("%s left after a failed Create", d)
		}
	}
	g := create(t, m, name, Limits{Pids: 9})
	if _, err := m.Create(name, tooMuch); err == nil {
		t.Fatal("update with a quota the kernel refuses succeeded")
	}
	if _, err := m.Load(name); err != nil {
		t.Errorf("group gone after a failed update: %v", err)
	}
	if got := read(t, g.ctl["pids"], "pids.max"); got != "9" {
		t.Errorf("pids.max = %q after a failed update, want 9", got)
	}
}

// A jail helper that joins through ProcsFiles and then execs: what it execs is in the
// group in every hierarchy.
func TestJoinBeforeExec(t *testing.T) {
	m := newManager(t)
	name := testName(t)
	g := create(t, m, name, Limits{CPUs: 1, MemoryBytes: 256 << 20, Pids: 50})
	out, err := runHelper(t, g, "cat").Output()
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	path := m.root + "/" + name
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := []string{"0::" + path}
	if g.v2 == nil {
		want = nil
		for ctl := range g.ctl {
			want = append(want, ctl+":"+path)
		}
	}
	for _, w := range want {
		if !slices.ContainsFunc(lines, func(l string) bool {
			_, rest, _ := strings.Cut(l, ":")
			return rest == w || strings.HasSuffix(rest, ","+w) // co-mounted cpu,cpuacct
		}) {
			t.Errorf("/proc/self/cgroup of the exec'd process lacks %q:\n%s", w, out)
		}
	}
	if err := Join([]string{filepath.Join(g.dirs[0], "tasks")}, os.Getpid()); err == nil {
		t.Error("Join accepted a file other than cgroup.procs")
	}
	if err := Join(g.ProcsFiles(), 0); err == nil {
		t.Error("Join accepted pid 0")
	}
}

// Add puts a running process in the group; Delete refuses while it runs, waits for
// one that is exiting, and then removes every directory.
func TestAddAndDelete(t *testing.T) {
	m := newManager(t)
	g := create(t, m, testName(t), Limits{MemoryBytes: 128 << 20, Pids: 20})
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	if err := g.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	for _, f := range g.ProcsFiles() {
		if !slices.Contains(strings.Fields(read(t, filepath.Dir(f), "cgroup.procs")), strconv.Itoa(cmd.Process.Pid)) {
			t.Errorf("pid %d not in %s", cmd.Process.Pid, f)
		}
	}
	u, err := g.Usage()
	if err != nil {
		t.Fatal(err)
	}
	// Memory charged before the move stays where it was (v1 does not move charges
	// by default), so only the task count is certain here.
	if u.Pids != 1 {
		t.Errorf("Usage() = %+v, want 1 pid", u)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := g.Delete(ctx); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("Delete with a process inside: %v, want ErrNotEmpty", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("Delete gave up after %v without waiting", d)
	}
	for _, d := range g.Dirs() {
		if !exists(d) {
			t.Errorf("%s removed though Delete failed", d)
		}
	}

	// A process about to exit: Delete waits for it.
	go func() { time.Sleep(200 * time.Millisecond); _ = cmd.Process.Kill() }()
	if err := g.Delete(context.Background()); err != nil {
		t.Fatalf("Delete after the process exits: %v", err)
	}
	for _, d := range g.Dirs() {
		if exists(d) {
			t.Errorf("%s still there after Delete", d)
		}
	}
}

// A process allocating past the memory limit is OOM-killed, and OOMKills counts it.
func TestOOMKill(t *testing.T) {
	m := newManager(t)
	g := create(t, m, testName(t), Limits{MemoryBytes: 64 << 20})
	if n, err := g.OOMKills(); err != nil || n != 0 {
		t.Fatalf("OOMKills() before = %d, %v", n, err)
	}
	if !g.SwapLimited() {
		t.Logf("host does not account swap: the 64 MiB limit may push the helper into swap instead of an OOM kill")
	}
	out, err := runHelper(t, g, "alloc").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper allocating 200 MiB under a 64 MiB limit: %v (want SIGKILL)\n%s", err, out)
	}
	n, err := g.OOMKills()
	if err != nil {
		t.Fatal(err)
	}
	if n < 1 {
		t.Errorf("OOMKills() = %d, want ≥ 1", n)
	}
	u, err := g.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if u.MemoryMaxBytes > 64<<20 || (g.v2 == nil && u.MemoryMaxBytes < 32<<20) || u.CPUNanos == 0 {
		t.Errorf("Usage() = %+v, want a peak near 64 MiB and some CPU time", u)
	}
	t.Logf("OOM kills %d, usage %+v", n, u)
}

// pids.max refuses forks past it.
func TestPidsMax(t *testing.T) {
	m := newManager(t)
	g := create(t, m, testName(t), Limits{Pids: 3})
	// sh joins, then forks sleeps: sh and two sleeps make 3, the third fork fails.
	script := `for f in "$@"; do echo $$ > "$f" || exit 9; done; for i in 1 2 3; do sleep 5 >/dev/null 2>&1 & done; echo forked`
	args := append([]string{"-c", script, "sh"}, g.ProcsFiles()...)
	out, err := exec.Command("/bin/sh", args...).CombinedOutput()
	t.Cleanup(func() { // the sleeps that did start
		pids, _ := g.pids()
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	})
	if err == nil || strings.Contains(string(out), "forked") || !strings.Contains(strings.ToLower(string(out)), "fork") {
		t.Fatalf("sh forking past pids.max=3: err %v, output:\n%s", err, out)
	}
	u, err := g.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if u.Pids > 3 {
		t.Errorf("pids.current = %d, above pids.max 3", u.Pids)
	}
	t.Logf("refused: %s", strings.TrimSpace(string(out)))
}

// On v2 the controllers are enabled in the parent and swap is shut off.
func TestV2(t *testing.T) {
	m := newManager(t)
	if !m.V2() {
		mode := map[cgroups.CGMode]string{cgroups.Legacy: "legacy", cgroups.Hybrid: "hybrid"}[cgroups.Mode()]
		t.Skipf("host runs cgroup v1 (%s mode, controllers on v1 hierarchies; no unified cgroup2 at /sys/fs/cgroup): the v2 path is not exercised here", mode)
	}
	g := create(t, m, testName(t), Limits{MemoryBytes: 64 << 20, Pids: 8})
	ctl := strings.Fields(read(t, filepath.Dir(g.dirs[0]), "cgroup.subtree_control"))
	for _, c := range []string{"cpu", "memory", "pids"} {
		if !slices.Contains(ctl, c) {
			t.Errorf("parent cgroup.subtree_control = %v, lacks %s", ctl, c)
		}
	}
	if exists(filepath.Join(g.dirs[0], "memory.swap.max")) {
		if got := read(t, g.dirs[0], "memory.swap.max"); got != "0" || !g.SwapLimited() {
			t.Errorf("memory.swap.max = %q, SwapLimited %v", got, g.SwapLimited())
		}
	}
}

// Without swap accounting v1 sets memory alone and says swap is not limited.
func TestSetMemoryV1WithoutMemsw(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), []byte("9223372036854771712\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	swap, err := setMemoryV1(dir, 64<<20)
	if err != nil || swap {
		t.Fatalf("setMemoryV1 = %v, %v; want false, nil", swap, err)
	}
	if got := read(t, dir, "memory.limit_in_bytes"); got != strconv.Itoa(64<<20) {
		t.Errorf("memory.limit_in_bytes = %q", got)
	}
	if exists(filepath.Join(dir, "memory.memsw.limit_in_bytes")) {
		t.Error("memsw file was created")
	}
}
