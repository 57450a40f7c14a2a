package sampling

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/wrennhq/wrenn/internal/envd/envdapi"
	"github.com/wrennhq/wrenn/internal/metrics"
	"github.com/wrennhq/wrenn/internal/testutil"
)

// standIn starts a child process in place of a VMM and ends it with the test.
func standIn(t testing.TB, script string) int {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd.Process.Pid
}

const busyLoop = "while :; do :; done"

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// fixedTargets lists the same targets at every tick.
func fixedTargets(ts ...Target) func() []Target { return func() []Target { return ts } }

// runFor runs a sampler for d and returns once it has stopped.
func runFor(s *Sampler, d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	s.Run(ctx)
}

func cpus(ps []metrics.Point) []float64 {
	var out []float64
	for _, p := range ps {
		out = append(out, float64(int(p.CPUPct*10))/10)
	}
	return out
}

// onCPU is how long process pid (single-threaded) has run, from the scheduler's own
// nanosecond count: a source independent of the ticks the sampler reads.
func onCPU(t *testing.T, pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/schedstat")
	if err != nil {
		t.Fatal(err)
	}
	ns, err := strconv.ParseInt(strings.Fields(string(b))[0], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return time.Duration(ns)
}

func TestCPUOfABusyLoopAndASleeper(t *testing.T) {
	busy, busy2, idle := NewSeries(nil), NewSeries(nil), NewSeries(nil)
	busyPID := standIn(t, busyLoop)
	targets := []Target{
		{ID: "busy", Series: busy, PID: busyPID, VCPUs: 1},
		// The same process seen as a 2-vCPU VM: one busy thread is half of it.
		{ID: "busy2", Series: busy2, PID: busyPID, VCPUs: 2},
		{ID: "idle", Series: idle, PID: standIn(t, "exec sleep 600"), VCPUs: 1},
	}
	// What the busy loop really got between ticks, by the scheduler's count: on a
	// loaded test machine that may be well short of a whole core.
	type mark struct {
		cpu time.Duration
		at  time.Time
	}
	var marks []mark
	s := New(Config{Log: quiet()}, func() []Target {
		marks = append(marks, mark{onCPU(t, busyPID), time.Now()})
		return targets
	})
	runFor(s, 2100*time.Millisecond)
	b, b2, i := busy.Range(time.Minute).Points, busy2.Range(time.Minute).Points, idle.Range(time.Minute).Points
	var got []float64
	for k := 1; k < len(marks); k++ {
		got = append(got, float64(int(float64(marks[k].cpu-marks[k-1].cpu)/float64(marks[k].at.Sub(marks[k-1].at))*1000))/10)
	}
	t.Logf("busy loop, 1 vCPU: %v (it ran %v of the time); as 2 vCPUs: %v; sleep: %v", cpus(b), got, cpus(b2), cpus(i))
	// 4 ticks in 2.1 s (3 when the machine is slow); the first is a baseline only.
	st := s.Stats()
	if st.Ticks < 3 || len(b) != int(st.Ticks)-1 || len(b2) != len(b) || len(i) != len(b) || len(got) != len(b) {
		t.Fatalf("points after %d ticks: %d %d %d, want one a tick but the first (a baseline)", st.Ticks, len(b), len(b2), len(i))
	}
	if st.Samples != 3*(st.Ticks-1) || st.Busy <= 0 {
		t.Errorf("stats: %+v, want 3 samples a tick but the first, some busy time", st)
	}
	// Each point is what the loop got over its interval (100 % when it had a core to
	// itself), to the 10 ms resolution of the ticks; half of that as two vCPUs.
	for k, p := range b {
		if p.CPUPct < got[k]-8 || p.CPUPct > got[k]+8 || p.CPUPct > 100 {
			t.Errorf("busy loop's point %d at %.1f %% of one vCPU; it ran %.1f %% of the time", k, p.CPUPct, got[k])
		}
		if half := b2[k].CPUPct; half < got[k]/2-4 || half > got[k]/2+4 {
			t.Errorf("busy loop's point %d at %.1f %% of two vCPUs; it ran %.1f %% of one", k, half, got[k])
		}
	}
	for _, p := range i {
		if p.CPUPct > 2 {
			t.Errorf("sleep at %.1f %%, want near 0", p.CPUPct)
		}
		if p.MemBytes <= 0 || p.MemBytes > 64<<20 {
			t.Errorf("sleep's resident memory %d bytes", p.MemBytes)
		}
	}
}

func TestResidentMemoryIsVmRSS(t *testing.T) {
	var r procReader
	vmRSS := func(pid int) int64 {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				return kb << 10
			}
		}
		t.Fatal("no VmRSS")
		return 0
	}
	self := os.Getpid()
	rss, err := r.residentBytes(self)
	if err != nil {
		t.Fatal(err)
	}
	if want := vmRSS(self); abs(rss-want) > 4<<20 {
		t.Errorf("resident %d bytes, VmRSS %d", rss, want)
	}
	// A process holding 200 MiB: dd reads 200 MiB of zeros into its buffer (touching
	// every page), then blocks writing them to a pipe nobody reads.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	cmd := exec.Command("dd", "if=/dev/zero", "bs=200M", "count=1")
	cmd.Stdout = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	rss = 0
	for rss < 200<<20 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		if rss, err = r.residentBytes(cmd.Process.Pid); err != nil {
			t.Fatal(err)
		}
	}
	if rss < 200<<20 || rss > 210<<20 {
		t.Errorf("a process holding 200 MiB is resident for %d MiB", rss>>20)
	}
	// statm and status count the same pages, read a moment apart.
	if want := vmRSS(cmd.Process.Pid); abs(rss-want) > 1<<20 {
		t.Errorf("resident %d bytes, VmRSS %d", rss, want)
	}
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

func TestProcParsing(t *testing.T) {
	var r procReader
	// A command name with spaces and parentheses does not shift the fields.
	dir := t.TempDir()
	odd := filepath.Join(dir, "a b) (c")
	if err := os.Symlink("/bin/sh", odd); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(odd, "-c", busyLoop)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	time.Sleep(300 * time.Millisecond)
	ticks, err := r.cpuTicks(cmd.Process.Pid)
	if err != nil || ticks == 0 || ticks > 1000 {
		t.Errorf("cpu ticks of a process busy for 0.3 s: %d %v", ticks, err)
	}
	if _, err := r.cpuTicks(1 << 30); err == nil {
		t.Error("no error for a process that does not exist")
	}
	if ClockTicks() != 100 {
		t.Logf("CLK_TCK is %v here", ClockTicks())
	}
}

func TestDiskOwnBytesOfAPlainFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	// A sparse 1 GiB file with 100 MiB written in the middle.
	if err := f.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i)
	}
	for i := range 100 {
		if _, err := f.WriteAt(chunk, 300<<20+int64(i)<<20); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	n, err := OwnBytes(path)
	if err != nil {
		t.Fatal(err)
	}
	if n < 100<<20 || n > 101<<20 {
		t.Errorf("own bytes %d (%.1f MiB), want 100 MiB", n, float64(n)/(1<<20))
	}
	if _, err := OwnBytes(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("no error for a missing disk")
	}
	if unsafe.Sizeof(fiemapHeader{}) != 32 || unsafe.Sizeof(fiemapExtent{}) != 56 {
		t.Errorf("struct fiemap is 32 bytes and an extent 56; here %d and %d", unsafe.Sizeof(fiemapHeader{}), unsafe.Sizeof(fiemapExtent{}))
	}
}

// TestDiskOwnBytesOfAReflinkClone: a clone shares all its blocks with its template, so
// it holds (almost) nothing of its own until written, though st_blocks counts it all.
func TestDiskOwnBytesOfAReflinkClone(t *testing.T) {
	dir := reflinkDir(t)
	tmpl, clone := filepath.Join(dir, "template"), filepath.Join(dir, "clone")
	data := make([]byte, 64<<20)
	for i := range data {
		data[i] = byte(i / 4096)
	}
	if err := os.WriteFile(tmpl, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "--reflink=always", tmpl, clone).CombinedOutput(); err != nil {
		t.Fatalf("reflink copy: %v %s", err, out)
	}
	blocks := func(p string) int64 {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Blocks * 512
	}
	own, err := OwnBytes(clone)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fresh clone: %d own bytes, st_blocks %d bytes", own, blocks(clone))
	if own > 1<<20 || blocks(clone) < 64<<20 {
		t.Errorf("fresh clone: %d own bytes (want ~0), st_blocks %d bytes (want the 64 MiB it maps)", own, blocks(clone))
	}
	// Overwriting 8 MiB of it gives it 8 MiB of its own (once written back).
	f, err := os.OpenFile(clone, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 8<<20), 16<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	own, err = OwnBytes(clone)
	if err != nil {
		t.Fatal(err)
	}
	if own < 8<<20 || own > 9<<20 {
		t.Errorf("clone after writing 8 MiB: %d own bytes (%.1f MiB), want 8 MiB", own, float64(own)/(1<<20))
	}
	// Growing it by 8 MiB adds 8 MiB at once (delayed allocation counts), but not the
	// space XFS preallocates past the new end of the file.
	f, err = os.OpenFile(clone, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data[:8<<20], 64<<20); err != nil {
		t.Fatal(err)
	}
	own, err = OwnBytes(clone)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("grown clone: %d own bytes, st_blocks %d bytes", own, blocks(clone))
	if own < 16<<20 || own > 17<<20 {
		t.Errorf("clone after growing by 8 MiB: %d own bytes (%.1f MiB), want 16 MiB", own, float64(own)/(1<<20))
	}
	// The template now shares 56 MiB with the clone: its own is the 8 MiB only it maps.
	own, _ = OwnBytes(tmpl)
	t.Logf("template after the clone's write: %d own bytes", own)
	if own < 8<<20 || own > 9<<20 {
		t.Errorf("template: %d own bytes, want the 8 MiB the clone no longer shares", own)
	}
}

func TestSamplerRecordsDiskAndGuest(t *testing.T) {
	disk := filepath.Join(t.TempDir(), "disk")
	if err := os.WriteFile(disk, make([]byte, 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	good, slow := NewSeries(nil), NewSeries(nil)
	pid := standIn(t, "exec sleep 600")
	guest := &fakeGuest{answer: &envdapi.Metrics{CPUCount: 2, CPUUsedPct: 12.5, MemTotal: 1 << 30, MemUsed: 300 << 20, MemCache: 50 << 20, DiskUsed: 1 << 30, DiskTotal: 4 << 30}}
	stuck := &fakeGuest{delay: time.Second}
	s := New(Config{Interval: 100 * time.Millisecond, DiskEvery: 5, GuestTimeout: 150 * time.Millisecond, Log: quiet()}, fixedTargets(
		Target{ID: "good", Series: good, PID: pid, VCPUs: 1, Disk: disk, Guest: guest},
		Target{ID: "slow", Series: slow, PID: pid, VCPUs: 1, Guest: stuck},
	))
	// Grow the disk after the first disk read: the count follows within DiskEvery samples.
	go func() {
		time.Sleep(250 * time.Millisecond)
		f, _ := os.OpenFile(disk, os.O_WRONLY|os.O_APPEND, 0)
		_, _ = f.Write(make([]byte, 4<<20))
		_ = f.Sync()
		f.Close()
	}()
	runFor(s, 1550*time.Millisecond)
	g, sl := good.Range(time.Minute).Points, slow.Range(time.Minute).Points
	if len(g) < 10 || len(sl) < 10 {
		t.Fatalf("points: %d and %d after about 15 ticks", len(g), len(sl))
	}
	if p := g[0]; p.DiskBytes != 4<<20 {
		t.Errorf("first disk count %d, want 4 MiB", p.DiskBytes)
	}
	if p := g[len(g)-1]; p.DiskBytes != 8<<20 {
		t.Errorf("last disk count %d, want 8 MiB", p.DiskBytes)
	}
	// The guest answers every request at once: every point after the first (whose
	// request may still be on its way) has its view.
	for i, p := range g[1:] {
		want := metrics.Guest{CPUPct: 12.5, CPUCount: 2, MemUsed: 300 << 20, MemTotal: 1 << 30, MemCache: 50 << 20, DiskUsed: 1 << 30, DiskTotal: 4 << 30}
		if !p.HasGuest || p.Guest != want {
			t.Errorf("point %d: guest %v %+v", i, p.HasGuest, p.Guest)
		}
	}
	// A guest that never answers in time: no guest view, and one request at a time.
	for i, p := range sl {
		if p.HasGuest {
			t.Errorf("slow guest's point %d has a guest view", i)
		}
	}
	if stuck.maxInFlight.Load() != 1 {
		t.Errorf("%d requests in flight at once to one guest", stuck.maxInFlight.Load())
	}
	st := s.Stats()
	if st.GuestFailures < 4 || st.GuestRequests != st.GuestFailures+uint64(guest.calls.Load()) {
		t.Errorf("stats: %+v", st)
	}
	if n := guest.calls.Load(); uint64(n)+2 < st.Ticks {
		t.Errorf("the answering guest was asked %d times in %d ticks, want (about) every tick", n, st.Ticks)
	}
}

func TestSamplerGapsAndNewProcesses(t *testing.T) {
	se := NewSeries(nil)
	first := standIn(t, "exec sleep 600")
	var mu sync.Mutex
	var listed []Target
	set := func(ts ...Target) { mu.Lock(); listed = ts; mu.Unlock() }
	// Ticks are driven by hand; the interval only sets how long a gap starts over
	// (4 of them), long enough here that a slow machine's sleeps never count as one.
	s := New(Config{Interval: time.Second, Log: quiet()}, func() []Target {
		mu.Lock()
		defer mu.Unlock()
		return listed
	})
	ctx := context.Background()
	tick := func(n int) {
		for range n {
			s.Tick(ctx)
			time.Sleep(50 * time.Millisecond)
		}
	}
	set(Target{ID: "sb", Series: se, PID: first, VCPUs: 1})
	tick(5)
	if n := len(se.All()[0].Points); n != 4 {
		t.Fatalf("%d points after 5 ticks, want 4", n)
	}
	// Paused: not listed, no points.
	set()
	pausedAt := time.Now()
	tick(6)
	// Resumed as a new process: its first tick is a baseline, then points again.
	set(Target{ID: "sb", Series: se, PID: standIn(t, "exec sleep 600"), VCPUs: 1})
	resumedAt := time.Now()
	tick(3)
	pts := se.All()[0].Points
	if len(pts) != 6 {
		t.Fatalf("%d points, want 4 before the pause and 2 after", len(pts))
	}
	for _, p := range pts {
		if p.Time.After(pausedAt) && p.Time.Before(resumedAt) {
			t.Errorf("a point at %v while paused", p.Time)
		}
	}
	// A process that is gone gives no point, and no error stops the sampler.
	set(Target{ID: "sb", Series: se, PID: 1 << 30, VCPUs: 1})
	tick(2)
	if n := len(se.All()[0].Points); n != 6 {
		t.Errorf("%d points after sampling a dead process, want 6", n)
	}
}

// reflinkDir is a directory whose filesystem shares blocks between copies: the test's
// temp dir when it can (btrfs, XFS), else a loop-mounted XFS (root and xfsprogs).
func reflinkDir(t *testing.T) string {
	dir := t.TempDir()
	probe := filepath.Join(dir, "probe")
	if err := os.WriteFile(probe, []byte("probe"), 0o600); err != nil {
		t.Fatal(err)
	}
	if exec.Command("cp", "--reflink=always", probe, probe+".clone").Run() == nil {
		return dir
	}
	return testutil.MountXFS(t, 512<<20)
}

type fakeGuest struct {
	answer      *envdapi.Metrics
	delay       time.Duration
	calls       atomic.Int32
	inFlight    atomic.Int32
	maxInFlight atomic.Int32
}

func (g *fakeGuest) Metrics(ctx context.Context) (*envdapi.Metrics, error) {
	g.calls.Add(1)
	n := g.inFlight.Add(1)
	defer g.inFlight.Add(-1)
	for {
		m := g.maxInFlight.Load()
		if n <= m || g.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	select {
	case <-time.After(g.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if g.answer == nil {
		return nil, errors.New("no answer")
	}
	a := *g.answer
	return &a, nil
}
