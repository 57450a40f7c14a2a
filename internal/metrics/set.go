package metrics

import (
	"math"
	"sync"
	"time"
)

// point is a Point as a ring keeps it: 56 bytes, no pointers, so a full set of rings
// is one allocation of under 100 KiB that the garbage collector never scans.
type point struct {
	ms        int64 // Unix milliseconds
	cpu       float32
	cpuMax    float32
	memKiB    uint32
	memMaxKiB uint32
	diskKiB   uint32
	gCPU      float32
	gMemUsed  uint32 // guest byte counts, KiB
	gMemTotal uint32
	gMemCache uint32
	gDiskUsed uint32
	gDiskTot  uint32
	gCPUs     uint16
	hasGuest  bool
}

// kib converts bytes to KiB, saturating at what 32 bits hold (4 TiB).
func kib(b int64) uint32 {
	switch {
	case b <= 0:
		return 0
	case b>>10 > math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(b >> 10)
}

func bytesOf(k uint32) int64 { return int64(k) << 10 }

func toPoint(s Sample) point {
	cpu := float32(s.CPUPct)
	p := point{ms: s.Time.UnixMilli(), cpu: cpu, cpuMax: cpu, memKiB: kib(s.MemBytes), diskKiB: kib(s.DiskBytes)}
	p.memMaxKiB = p.memKiB
	if s.HasGuest {
		g := s.Guest
		p.hasGuest = true
		p.gCPU = float32(g.CPUPct)
		p.gCPUs = uint16(min(max(g.CPUCount, 0), math.MaxUint16))
		p.gMemUsed, p.gMemTotal, p.gMemCache = kib(g.MemUsed), kib(g.MemTotal), kib(g.MemCache)
		p.gDiskUsed, p.gDiskTot = kib(g.DiskUsed), kib(g.DiskTotal)
	}
	return p
}

func (p *point) public() Point {
	out := Point{
		Time: time.UnixMilli(p.ms), CPUPct: float64(p.cpu), CPUPctMax: float64(p.cpuMax),
		MemBytes: bytesOf(p.memKiB), MemBytesMax: bytesOf(p.memMaxKiB), DiskBytes: bytesOf(p.diskKiB),
		HasGuest: p.hasGuest,
	}
	if p.hasGuest {
		out.Guest = Guest{
			CPUPct: float64(p.gCPU), CPUCount: int(p.gCPUs),
			MemUsed: bytesOf(p.gMemUsed), MemTotal: bytesOf(p.gMemTotal), MemCache: bytesOf(p.gMemCache),
			DiskUsed: bytesOf(p.gDiskUsed), DiskTotal: bytesOf(p.gDiskTot),
		}
	}
	return out
}

// ring is a fixed-size ring of points; a push onto a full ring drops the oldest.
type ring struct {
	buf  []point // allocated once, at its full length
	head int     // where the next push goes
	n    int
}

func (r *ring) push(p point) {
	r.buf[r.head] = p
	r.head = (r.head + 1) % len(r.buf)
	r.n = min(r.n+1, len(r.buf))
}

// at is the i-th point, oldest first.
func (r *ring) at(i int) *point {
	return &r.buf[(r.head-r.n+i+len(r.buf))%len(r.buf)]
}

// acc summarises the samples of one open interval of a coarser tier.
type acc struct {
	n, gn   int // samples, and those with a guest answer
	start   int64
	cpuSum  float64
	memSum  float64 // KiB
	gCPUSum float64
	gMemSum float64 // KiB
	gCchSum float64 // KiB
	p       point   // maxima and last values; its averages are filled by point()
}

func (a *acc) add(start int64, p *point) {
	if a.n == 0 {
		*a = acc{start: start, p: point{ms: start}}
	}
	a.n++
	a.cpuSum += float64(p.cpu)
	a.memSum += float64(p.memKiB)
	a.p.cpuMax = max(a.p.cpuMax, p.cpuMax)
	a.p.memMaxKiB = max(a.p.memMaxKiB, p.memMaxKiB)
	a.p.diskKiB = p.diskKiB
	if p.hasGuest {
		a.gn++
		a.gCPUSum += float64(p.gCPU)
		a.gMemSum += float64(p.gMemUsed)
		a.gCchSum += float64(p.gMemCache)
		a.p.hasGuest = true
		a.p.gCPUs, a.p.gMemTotal, a.p.gDiskUsed, a.p.gDiskTot = p.gCPUs, p.gMemTotal, p.gDiskUsed, p.gDiskTot
	}
}

// point is the interval's summary so far.
func (a *acc) point() point {
	p := a.p
	n := float64(a.n)
	p.cpu = float32(a.cpuSum / n)
	p.memKiB = uint32(math.Round(a.memSum / n))
	if a.gn > 0 {
		gn := float64(a.gn)
		p.gCPU = float32(a.gCPUSum / gn)
		p.gMemUsed = uint32(math.Round(a.gMemSum / gn))
		p.gMemCache = uint32(math.Round(a.gCchSum / gn))
	}
	return p
}

// rollup is a coarser tier: the closed intervals' points and the open one.
type rollup struct {
	tier Tier
	step int64 // ms
	ring ring
	open acc
}

func (r *rollup) add(p *point) {
	start := p.ms - p.ms%r.step
	if r.open.n > 0 && r.open.start != start {
		r.ring.push(r.open.point())
		r.open.n = 0
	}
	r.open.add(start, p)
}

// Set is one sandbox's tiers. It is safe for concurrent use.
type Set struct {
	now func() time.Time

	mu     sync.Mutex
	last   int64 // the newest sample's time, Unix ms; 0 = none yet
	fine   ring
	medium rollup
	coarse rollup
}

// New returns an empty set whose ranges end at now() (the clock, injected for tests).
// Its rings are allocated here, at their full size.
func New(now func() time.Time) *Set {
	if now == nil {
		now = time.Now
	}
	// One backing array for all three rings: one allocation per sandbox.
	buf := make([]point, Fine.Len()+Medium.Len()+Coarse.Len())
	f, m := Fine.Len(), Fine.Len()+Medium.Len()
	return &Set{
		now:    now,
		fine:   ring{buf: buf[:f:f]},
		medium: rollup{tier: Medium, step: Medium.Step().Milliseconds(), ring: ring{buf: buf[f:m:m]}},
		coarse: rollup{tier: Coarse, step: Coarse.Step().Milliseconds(), ring: ring{buf: buf[m:]}},
	}
}

// Add records a sample. One not newer than the last (a clock stepped back) is dropped:
// the rings stay in time order.
func (s *Set) Add(sample Sample) {
	p := toPoint(sample)
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.ms <= s.last {
		return
	}
	s.last = p.ms
	s.fine.push(p)
	s.medium.add(&p)
	s.coarse.add(&p)
}

// Range returns the points of the last d from the finest tier whose span covers d
// (For), oldest first. A point is in the range when its interval ends after now − d;
// a coarser tier's newest point may summarise an interval still open.
func (s *Set) Range(d time.Duration) Series {
	t := For(d)
	from := s.now().Add(-d).UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.series(t, from)
}

// All returns every tier, finest first, with all its points (none for a tier without
// samples yet).
func (s *Set) All() []Series {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Series, 0, 3)
	for _, t := range Tiers() {
		out = append(out, s.series(t, math.MinInt64))
	}
	return out
}

// series is tier t's points whose interval ends after from (Unix ms). Callers hold mu.
func (s *Set) series(t Tier, from int64) Series {
	out := Series{Tier: t, Step: t.Step()}
	step := t.Step().Milliseconds()
	in := func(p *point) bool { return p.ms+step > from }
	if t == Fine {
		out.Points = collect(&s.fine, nil, in)
		return out
	}
	r := &s.medium
	if t == Coarse {
		r = &s.coarse
	}
	var open *point
	if r.open.n > 0 {
		p := r.open.point()
		open = &p
	}
	out.Points = collect(&r.ring, open, in)
	return out
}

// collect lists a ring's points, then open (if any), that pass in. With an open
// point, a full ring's oldest is left out: a tier never holds more than its Len
// points, so its span stays what it says.
func collect(r *ring, open *point, in func(*point) bool) []Point {
	skip := 0
	if open != nil && r.n == len(r.buf) {
		skip = 1
	}
	// The ring is in time order: find the first point in range, then take the rest.
	first := skip
	for first < r.n && !in(r.at(first)) {
		first++
	}
	n := r.n - first
	if open != nil && in(open) {
		n++
	}
	if n == 0 {
		return nil
	}
	out := make([]Point, 0, n)
	for i := first; i < r.n; i++ {
		out = append(out, r.at(i).public())
	}
	if open != nil && in(open) {
		out = append(out, open.public())
	}
	return out
}
