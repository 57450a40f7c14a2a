// Package sampling measures the host agent's running sandboxes from the host, twice a
// second, into each sandbox's metric tiers (internal/metrics): the CPU time and the
// resident memory of its VM's process (/proc), the bytes its own copy-on-write disk
// allocates (FIEMAP, blocks shared with its template left out; see disk.go), and the
// guest's own view (envd's GET /metrics). One goroutine samples every sandbox; only
// the guest requests, which wait on the network, run beside it, at most one per
// sandbox at a time.
package sampling

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wrennhq/wrenn/internal/envd/envdapi"
	"github.com/wrennhq/wrenn/internal/metrics"
)

// Config tunes a Sampler; zero fields take the defaults.
type Config struct {
	// Interval between samples (default 500 ms, the fine tier's step).
	Interval time.Duration
	// DiskEvery: a disk's extent map is read every DiskEvery samples (default 10, every
	// 5 s), the last count reused in between. FIEMAP costs in proportion to the disk's
	// extents, far more than the /proc reads, and a disk's size moves slowly.
	DiskEvery int
	// GuestEvery: envd is asked every GuestEvery samples (default 1); a sample uses the
	// latest answer.
	GuestEvery int
	// GuestTimeout bounds one envd request (default 300 ms): a guest that does not
	// answer in time goes without a guest view for that sample.
	GuestTimeout time.Duration
	// Now stamps samples (default time.Now; tests inject a clock). CPU use is
	// measured on the monotonic clock whatever this says.
	Now func() time.Time
	Log *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Interval <= 0 {
		c.Interval = 500 * time.Millisecond
	}
	if c.DiskEvery <= 0 {
		c.DiskEvery = 10
	}
	if c.GuestEvery <= 0 {
		c.GuestEvery = 1
	}
	if c.GuestTimeout <= 0 {
		c.GuestTimeout = 300 * time.Millisecond
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return c
}

// Guest is a sandbox's envd; *envdclient.Client implements it.
type Guest interface {
	Metrics(ctx context.Context) (*envdapi.Metrics, error)
}

// Target is a running sandbox to sample, as its owner sees it at this tick.
type Target struct {
	ID     string // for logs
	Series *Series
	PID    int // the VMM process
	VCPUs  int
	Disk   string // the sandbox's disk file; "" = none
	Guest  Guest  // nil = none to ask
}

// Series is one sandbox's metric tiers plus what its sampling carries from one sample
// to the next. It lives as long as the sandbox, across pauses: while a sandbox is not
// running it is no target, so its series gets no points and shows a gap.
type Series struct {
	set *metrics.Set

	// Only Tick touches these (Tick runs one at a time).
	pid       int
	cpuTicks  uint64
	cpuAt     time.Time // monotonic: when cpuTicks was read
	disk      string
	diskBytes int64
	diskAt    int // the sample count at the last disk read
	count     int // samples attempted

	// The latest guest answer, written by the request's goroutine.
	guestMu   sync.Mutex
	guestBusy bool
	hasGuest  bool
	guest     metrics.Guest
}

// NewSeries returns an empty series whose ranges end at now().
func NewSeries(now func() time.Time) *Series { return &Series{set: metrics.New(now)} }

// Range is the series' points of the last d, from the finest tier that covers d.
func (s *Series) Range(d time.Duration) metrics.Series { return s.set.Range(d) }

// All is every tier of the series, finest first.
func (s *Series) All() []metrics.Series { return s.set.All() }

// Stats are the sampler's own costs, cumulative since it started.
type Stats struct {
	Ticks   uint64
	Samples uint64 // points recorded
	// Busy is the wall time spent in ticks: the /proc and FIEMAP reads, the tiers'
	// updates and starting guest requests (a guest request's wait for its answer is
	// not in it; its CPU cost, the request's and the answer's parsing, mostly is not
	// either: it runs on its own goroutine).
	Busy          time.Duration
	GuestRequests uint64
	GuestFailures uint64 // errors and timeouts
}

// Sampler samples the targets its owner lists, every Interval.
type Sampler struct {
	cfg     Config
	targets func() []Target
	clkTck  float64

	tickMu sync.Mutex // Tick is not re-entrant: it owns the readers and the series' state
	proc   procReader
	fiemap *fiemapBuf

	guests sync.WaitGroup // guest requests in flight

	ticks, samples, busyNs, guestReqs, guestFails atomic.Uint64
}

// New returns a sampler of what targets lists at each tick (called from the sampler's
// goroutine; it must not block).
func New(cfg Config, targets func() []Target) *Sampler {
	return &Sampler{cfg: cfg.withDefaults(), targets: targets, clkTck: ClockTicks(), fiemap: new(fiemapBuf)}
}

// Run samples every Interval until ctx ends, then waits for guest requests in flight.
func (s *Sampler) Run(ctx context.Context) {
	defer s.guests.Wait()
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Tick(ctx)
		}
	}
}

// Wait waits for the guest requests that ticks started (Run waits by itself; for
// callers of Tick).
func (s *Sampler) Wait() { s.guests.Wait() }

// Stats returns the sampler's costs so far.
func (s *Sampler) Stats() Stats {
	return Stats{
		Ticks: s.ticks.Load(), Samples: s.samples.Load(), Busy: time.Duration(s.busyNs.Load()),
		GuestRequests: s.guestReqs.Load(), GuestFailures: s.guestFails.Load(),
	}
}

// Tick samples every target once. Guest requests it starts end within GuestTimeout
// or with ctx.
func (s *Sampler) Tick(ctx context.Context) {
	s.tickMu.Lock()
	defer s.tickMu.Unlock()
	start := time.Now()
	wall := s.cfg.Now()
	var n uint64
	for _, t := range s.targets() {
		if s.sample(ctx, t, wall) {
			n++
		}
	}
	s.samples.Add(n)
	s.ticks.Add(1)
	s.busyNs.Add(uint64(time.Since(start)))
}

// sample measures one target and records a point, unless this is its first reading
// (of this VM process, or after a gap): CPU use is a difference of two readings.
func (s *Sampler) sample(ctx context.Context, t Target, wall time.Time) bool {
	se := t.Series
	se.count++
	ticks, err := s.proc.cpuTicks(t.PID)
	at := time.Now()
	var rss int64
	if err == nil {
		rss, err = s.proc.residentBytes(t.PID)
	}
	if err != nil {
		// Most likely the VM stopped between the listing and now (a pause, a
		// destroy, a crash that its watcher is about to report).
		s.cfg.Log.Debug("sample sandbox", "sandbox", t.ID, "pid", t.PID, "err", err)
		se.pid = 0
		return false
	}
	// A new VM process (a resume, an agent restart) or a long gap (paused, or the agent
	// stalled): start over rather than spread a difference across it.
	fresh := se.pid != t.PID || at.Sub(se.cpuAt) > 4*s.cfg.Interval
	prevTicks, prevAt := se.cpuTicks, se.cpuAt
	se.pid, se.cpuTicks, se.cpuAt = t.PID, ticks, at
	if fresh {
		se.setGuest(nil) // an answer from before the gap is not this VM's now
	}
	s.sampleDisk(t, fresh)
	if t.Guest != nil && (se.count-1)%s.cfg.GuestEvery == 0 {
		s.askGuest(ctx, t)
	}
	if fresh {
		return false
	}
	vcpus := max(t.VCPUs, 1)
	cpu := float64(ticks-prevTicks) / s.clkTck / at.Sub(prevAt).Seconds() / float64(vcpus) * 100
	if ticks < prevTicks || math.IsNaN(cpu) || math.IsInf(cpu, 0) {
		cpu = 0
	}
	smp := metrics.Sample{Time: wall, CPUPct: min(max(cpu, 0), 100), MemBytes: rss, DiskBytes: se.diskBytes}
	se.guestMu.Lock()
	smp.HasGuest, smp.Guest = se.hasGuest, se.guest
	se.guestMu.Unlock()
	se.set.Add(smp)
	return true
}

// sampleDisk refreshes the target's disk count every DiskEvery samples, and at once
// for a new disk or a fresh start.
func (s *Sampler) sampleDisk(t Target, fresh bool) {
	se := t.Series
	if t.Disk == "" {
		se.disk, se.diskBytes = "", 0
		return
	}
	if !fresh && t.Disk == se.disk && se.count-se.diskAt < s.cfg.DiskEvery {
		return
	}
	n, err := s.fiemap.ownBytes(t.Disk)
	if err != nil {
		// Keep the last count: a disk does not shrink because it could not be read.
		s.cfg.Log.Debug("sample sandbox disk", "sandbox", t.ID, "err", err)
		if t.Disk != se.disk {
			n = 0
		} else {
			n = se.diskBytes
		}
	}
	se.disk, se.diskBytes, se.diskAt = t.Disk, n, se.count
}

// askGuest starts a request of the guest's metrics unless one is in flight; its
// answer (or its failure) is what the following samples record.
func (s *Sampler) askGuest(ctx context.Context, t Target) {
	se := t.Series
	se.guestMu.Lock()
	if se.guestBusy {
		se.guestMu.Unlock()
		return
	}
	se.guestBusy = true
	se.guestMu.Unlock()
	s.guestReqs.Add(1)
	s.guests.Add(1)
	go func() {
		defer s.guests.Done()
		rctx, cancel := context.WithTimeout(ctx, s.cfg.GuestTimeout)
		m, err := t.Guest.Metrics(rctx)
		cancel()
		if err != nil {
			s.guestFails.Add(1)
			s.cfg.Log.Debug("guest metrics", "sandbox", t.ID, "err", err)
			m = nil
		}
		se.guestMu.Lock()
		se.guestBusy = false
		se.storeGuest(m)
		se.guestMu.Unlock()
	}()
}

// setGuest records the guest's latest answer; nil = none.
func (se *Series) setGuest(m *envdapi.Metrics) {
	se.guestMu.Lock()
	se.storeGuest(m)
	se.guestMu.Unlock()
}

// storeGuest is setGuest for a holder of guestMu.
func (se *Series) storeGuest(m *envdapi.Metrics) {
	if m == nil {
		se.hasGuest, se.guest = false, metrics.Guest{}
		return
	}
	se.hasGuest = true
	se.guest = metrics.Guest{
		CPUPct: m.CPUUsedPct, CPUCount: m.CPUCount,
		MemUsed: clampInt64(m.MemUsed), MemTotal: clampInt64(m.MemTotal), MemCache: clampInt64(m.MemCache),
		DiskUsed: clampInt64(m.DiskUsed), DiskTotal: clampInt64(m.DiskTotal),
	}
}

func clampInt64(u uint64) int64 { return int64(min(u, math.MaxInt64)) }
