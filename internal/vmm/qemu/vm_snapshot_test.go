package qemu

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/rootfs"
	"github.com/wrennhq/wrenn/internal/testutil"
	"github.com/wrennhq/wrenn/internal/vmm"
)

// Real-QEMU snapshot tests: guests keep state in RAM across pause → snapshot → stop
// → restore → resume, the way the agent pauses and resumes a sandbox, and every
// pause writes only the device state and the pages the guest dirtied.

var tickLine = regexp.MustCompile(`(?m)^tick ([0-9a-f-]{36}) ([0-9]+)\r?$`)

// ticks returns the counter lines of a console log from byte offset on.
func ticks(path string, offset int64) (tokens []string, counts []int) {
	b, _ := os.ReadFile(path)
	if offset > int64(len(b)) {
		offset = int64(len(b))
	}
	for _, m := range tickLine.FindAllSubmatch(b[offset:], -1) {
		n, _ := strconv.Atoi(string(m[2]))
		tokens, counts = append(tokens, string(m[1])), append(counts, n)
	}
	return tokens, counts
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// waitNewTick waits for a counter line written after the call and returns it.
func waitNewTick(t testing.TB, console string, d time.Duration) (string, int) {
	t.Helper()
	from := fileSize(console)
	deadline := time.Now().Add(d)
	for {
		if tok, n := ticks(console, from); len(n) > 0 {
			return tok[0], n[0]
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(console)
			t.Fatalf("no new tick on the console within %s:\n%s", d, tail(b, 2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// qemuWriteBytes is write_bytes of a QEMU's /proc/<pid>/io: what the process caused
// to be written to storage, counted when it dirtied page cache — for QEMU the guest's
// writes to its memory file plus the device state it saved.
func qemuWriteBytes(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return -1
}

// pauseCost is what one pause wrote.
type pauseCost struct {
	state, dirty, qemuWrites int64
}

func (c pauseCost) total() int64 { return c.state + c.dirty }

// pauseToSnapshot is the agent's pause: Pause → Snapshot into <Dir>/snapshot.new →
// Stop → replace <Dir>/snapshot with it.
func pauseToSnapshot(t testing.TB, m *Machine) (string, pauseCost) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	if err := m.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	var c pauseCost
	c.dirty = dirtyBytes(filepath.Join(m.Dir(), memoryName))
	c.qemuWrites = qemuWriteBytes(m.PID())
	newDir := filepath.Join(m.Dir(), "snapshot.new")
	if err := os.Mkdir(newDir, 0o700); err != nil {
		t.Fatal(err)
	}
	snap, err := m.Snapshot(ctx, vmm.SnapshotOptions{Dir: newDir, Kind: vmm.SnapshotFull})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := snap.File(vmm.FileState)
	c.state = st.Size
	if after := dirtyBytes(filepath.Join(m.Dir(), memoryName)); after > 4096 {
		t.Errorf("memory file still has %d dirty bytes after the snapshot", after)
	}
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(m.Dir(), "snapshot")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(newDir, dir); err != nil {
		t.Fatal(err)
	}
	return dir, c
}

// resumeFromSnapshot is the agent's resume: Restore into the VM's own Dir → Resume.
func resumeFromSnapshot(t testing.TB, d *Driver, cfg vmm.Config, dir string) (*Machine, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	t0 := time.Now()
	vm, err := d.Restore(ctx, cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	m := vm.(*Machine)
	t.Cleanup(func() { m.Stop(context.Background()) })
	if err := m.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	return m, time.Since(t0)
}

// The guest's RAM (a file in its root and a shell variable) survives several pause
// and resume cycles of one sandbox, one of them through a machine adopted by another
// driver; no cycle reboots it.
func TestVMSnapshotStateSurvivesCycles(t *testing.T) {
	requireQEMU(t)
	cfg := realConfig(t, "snap-cycles", testKernel(t), testInitramfs(t))
	cfg.KernelArgs = counterArgs
	d := New(Options{})
	m := startReal(t, d, cfg)
	token, _ := waitNewTick(t, m.ConsoleLog(), bootTimeout)
	for i := 1; i <= 5; i++ {
		if i == 3 {
			vm, err := New(Options{}).Adopt(context.Background(), cfg.Dir)
			if err != nil {
				t.Fatal(err)
			}
			m = vm.(*Machine)
		}
		dir, cost := pauseToSnapshot(t, m)
		toks, counts := ticks(m.ConsoleLog(), 0)
		last := counts[len(counts)-1]
		before := fileSize(m.ConsoleLog())
		var took time.Duration
		m, took = resumeFromSnapshot(t, d, cfg, dir)
		tok, n := waitNewTick(t, m.ConsoleLog(), 10*time.Second)
		t.Logf("cycle %d: paused at tick %d, resumed at tick %d; pause wrote %d KiB (state %d B, memory %d KiB); restore+resume %s",
			i, last, n, cost.total()>>10, cost.state, cost.dirty>>10, took.Round(time.Millisecond))
		if tok != token || toks[len(toks)-1] != token {
			t.Fatalf("cycle %d: token %s after restore, want %s (guest memory lost)", i, tok, token)
		}
		if n != last+1 {
			t.Errorf("cycle %d: first tick after resume is %d, want %d", i, n, last+1)
		}
		if fileSize(m.ConsoleLog()) < before {
			t.Errorf("cycle %d: the restored vm truncated the console log", i)
		}
	}
	con, _ := os.ReadFile(m.ConsoleLog())
	if c := strings.Count(string(con), readyMarker); c != 1 {
		t.Errorf("init ran %d times: the guest rebooted", c)
	}
}

// An idle guest, paused and resumed 20 times: every pause writes the device state
// (tens of KB) plus the pages the guest dirtied since the last one — the 20th no
// more than the 2nd. The 1st after a cold boot also writes what booting touched,
// unless the kernel's writeback got there first.
func TestVMPauseWritesLittle(t *testing.T) {
	requireQEMU(t)
	cfg := realConfig(t, "snap-idle", testKernel(t), testInitramfs(t))
	d := New(Options{})
	m := startReal(t, d, cfg)
	waitConsole(t, m.ConsoleLog(), readyMarker, bootTimeout)
	const cycles = 20
	var costs []pauseCost
	var restores []time.Duration
	for i := 1; i <= cycles; i++ {
		time.Sleep(300 * time.Millisecond) // let the guest idle
		dir, cost := pauseToSnapshot(t, m)
		costs = append(costs, cost)
		var took time.Duration
		m, took = resumeFromSnapshot(t, d, cfg, dir)
		restores = append(restores, took)
		t.Logf("pause %2d: wrote %7d KiB (state %6d B + dirty memory %7d KiB; qemu write_bytes %7d KiB); restore+resume %s",
			i, cost.total()>>10, cost.state, cost.dirty>>10, cost.qemuWrites>>10, took.Round(time.Millisecond))
	}
	ram := int64(cfg.MemoryMiB) << 20
	for i, c := range costs {
		if c.state > 1<<20 {
			t.Errorf("pause %d: device state %d bytes: guest RAM went into it", i+1, c.state)
		}
		if i > 0 && c.total() > ram/16 {
			t.Errorf("pause %d wrote %d KiB of a %d MiB guest", i+1, c.total()>>10, cfg.MemoryMiB)
		}
	}
	second, last := costs[1].total(), costs[cycles-1].total()
	if last > 2*second+(1<<20) {
		t.Errorf("pause %d wrote %d KiB, pause 2 %d KiB: pauses grow", cycles, last>>10, second>>10)
	}
	slices.Sort(restores)
	t.Logf("pause 1: %d KiB, pause 2: %d KiB, pause %d: %d KiB; restore+resume median %s",
		costs[0].total()>>10, second>>10, cycles, last>>10, restores[len(restores)/2].Round(time.Millisecond))
}

// Restores that must fail do so before or while QEMU starts, leave nothing running
// and leave the snapshot restorable: a different memory size, a state file QEMU
// cannot load even though the meta was made to match it.
func TestVMRestoreFailuresKeepSnapshot(t *testing.T) {
	requireQEMU(t)
	cfg := realConfig(t, "snap-fail", testKernel(t), testInitramfs(t))
	cfg.KernelArgs = counterArgs
	d := New(Options{})
	m := startReal(t, d, cfg)
	token, _ := waitNewTick(t, m.ConsoleLog(), bootTimeout)
	dir, _ := pauseToSnapshot(t, m)
	ctx := context.Background()

	bigger := cfg
	bigger.MemoryMiB = 512
	_, err := d.Restore(ctx, bigger, dir)
	if !errors.Is(err, vmm.ErrIncompatibleSnapshot) {
		t.Fatalf("restore with 512 MiB of a 256 MiB snapshot: %v", err)
	}
	t.Log(err)
	assertNoProcesses(t, cfg.Dir)

	meta, err := vmm.ReadSnapshotMeta(dir)
	if err != nil {
		t.Fatal(err)
	}
	statePath := filepath.Join(dir, snapStateName)
	good, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	short := good[:len(good)/2]
	forged := meta
	forged.Files = slices.Clone(meta.Files)
	for i := range forged.Files {
		if forged.Files[i].Role == vmm.FileState {
			forged.Files[i].Size, forged.Files[i].SHA256 = int64(len(short)), fmt.Sprintf("%x", sha256.Sum256(short))
		}
	}
	if err := os.WriteFile(statePath, short, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := vmm.WriteSnapshotMeta(dir, forged); err != nil {
		t.Fatal(err)
	}
	memBefore, _ := vmm.FileSHA256(filepath.Join(dir, snapMemoryName))
	_, err = d.Restore(ctx, cfg, dir)
	if err == nil || !strings.Contains(err.Error(), "load device state") {
		t.Fatalf("restore of a truncated state: %v", err)
	}
	t.Log(err)
	assertNoProcesses(t, cfg.Dir)
	if after, _ := vmm.FileSHA256(filepath.Join(dir, snapMemoryName)); after != memBefore {
		t.Fatal("the failed restore changed the snapshot's memory")
	}
	if !sameFile(filepath.Join(cfg.Dir, memoryName), filepath.Join(dir, snapMemoryName)) {
		t.Fatal("the failed restore unlinked the vm's memory file")
	}

	if err := os.WriteFile(statePath, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := vmm.WriteSnapshotMeta(dir, meta); err != nil {
		t.Fatal(err)
	}
	m, _ = resumeFromSnapshot(t, d, cfg, dir)
	if tok, _ := waitNewTick(t, m.ConsoleLog(), 10*time.Second); tok != token {
		t.Errorf("token %s after the retried restore, want %s", tok, token)
	}
}

// A detached snapshot on a filesystem with reflinks (XFS, as a host without them
// mounts for its data dir) is taken while the VM keeps running, and two clones
// restored from it start from the same memory without seeing each other's writes.
func TestVMDetachedSnapshotClones(t *testing.T) {
	requireQEMU(t)
	base := testutil.MountXFS(t, 4<<30)
	method, err := rootfs.Probe(base)
	if err != nil {
		t.Fatal(err)
	}
	mkdir := func(name string) string {
		p := filepath.Join(base, name)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		killAllIn(t, p)
		return p
	}
	kernel, initrd := testKernel(t), testInitramfs(t)
	cfg := vmm.Config{ID: "snap-src", Dir: mkdir("src"), Kernel: kernel, Initrd: initrd, VCPUs: 1, MemoryMiB: 256, KernelArgs: counterArgs}
	d := New(Options{})
	m := startReal(t, d, cfg)
	token, _ := waitNewTick(t, m.ConsoleLog(), bootTimeout)
	ctx := context.Background()
	if err := m.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	_, counts := ticks(m.ConsoleLog(), 0)
	last := counts[len(counts)-1]
	snapDir := mkdir("template")
	t0 := time.Now()
	if _, err := m.Snapshot(ctx, vmm.SnapshotOptions{Dir: snapDir, Detached: true}); err != nil {
		t.Fatal(err)
	}
	t.Logf("detached snapshot on xfs: %s", time.Since(t0).Round(time.Millisecond))
	if err := m.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	waitNewTick(t, m.ConsoleLog(), 10*time.Second) // the source runs on, writing its memory
	memSum, _ := vmm.FileSHA256(filepath.Join(snapDir, snapMemoryName))
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	var clones []*Machine
	for i := 1; i <= 2; i++ {
		c := cfg
		c.ID, c.Dir = fmt.Sprintf("snap-clone-%d", i), mkdir(fmt.Sprintf("clone-%d", i))
		t0 := time.Now()
		vm, err := d.Restore(ctx, c, snapDir)
		if err != nil {
			t.Fatal(err)
		}
		cm := vm.(*Machine)
		t.Cleanup(func() { cm.Stop(context.Background()) })
		t.Logf("clone %d restored in %s (memory copied by %s)", i, time.Since(t0).Round(time.Millisecond), method)
		if err := cm.Resume(ctx); err != nil {
			t.Fatal(err)
		}
		clones = append(clones, cm)
	}
	for i, cm := range clones {
		tok, n := waitNewTick(t, cm.ConsoleLog(), 10*time.Second)
		if tok != token || n != last+1 && n != last+2 {
			t.Errorf("clone %d: tick %s %d, want %s %d", i+1, tok, n, token, last+1)
		}
	}
	// Each clone writes its own copy: stop one, the other keeps counting, and
	// the template's memory is unchanged.
	if err := clones[0].Stop(ctx); err != nil {
		t.Fatal(err)
	}
	waitNewTick(t, clones[1].ConsoleLog(), 10*time.Second)
	if after, _ := vmm.FileSHA256(filepath.Join(snapDir, snapMemoryName)); after != memSum {
		t.Error("clones changed the template's memory")
	}
}
