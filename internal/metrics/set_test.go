package metrics

import (
	"math"
	"runtime"
	"testing"
	"time"
	"unsafe"
)

// clock is a fake clock that tests move by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// t0 is a time on a 5-minute boundary, so interval arithmetic in tests is easy to read.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// feed adds n samples 500 ms apart from the clock's time on, moving the clock with
// them, with values from f(i).
func feed(s *Set, c *clock, n int, f func(i int) Sample) {
	for i := range n {
		smp := f(i)
		smp.Time = c.t
		s.Add(smp)
		c.t = c.t.Add(500 * time.Millisecond)
	}
}

func flat(cpu float64, mem int64) func(int) Sample {
	return func(int) Sample { return Sample{CPUPct: cpu, MemBytes: mem, DiskBytes: 1 << 20} }
}

func TestTierShapes(t *testing.T) {
	for _, c := range []struct {
		t    Tier
		step time.Duration
		n    int
		span time.Duration
	}{{Fine, 500 * time.Millisecond, 1200, 10 * time.Minute}, {Medium, 30 * time.Second, 240, 2 * time.Hour}, {Coarse, 5 * time.Minute, 288, 24 * time.Hour}} {
		if c.t.Step() != c.step || c.t.Len() != c.n || c.t.Span() != c.span {
			t.Errorf("%s: step %v len %d span %v, want %v %d %v", c.t, c.t.Step(), c.t.Len(), c.t.Span(), c.step, c.n, c.span)
		}
	}
}

func TestFineRingWrapsAround(t *testing.T) {
	c := &clock{t: t0}
	s := New(c.now)
	feed(s, c, 1500, func(i int) Sample { return Sample{CPUPct: float64(i % 100), MemBytes: int64(i) << 10} })
	fine := s.All()[0]
	if fine.Tier != Fine || fine.Step != 500*time.Millisecond || len(fine.Points) != 1200 {
		t.Fatalf("fine tier after 1500 samples: %s step %v, %d points; want 1200", fine.Tier, fine.Step, len(fine.Points))
	}
	// The oldest 300 went; the rest are in order, oldest first.
	for i, p := range fine.Points {
		want := 300 + i
		if !p.Time.Equal(t0.Add(time.Duration(want)*500*time.Millisecond)) || p.MemBytes != int64(want)<<10 || p.CPUPct != float64(want%100) {
			t.Fatalf("point %d: %+v, want sample %d", i, p, want)
		}
		if p.CPUPctMax != p.CPUPct || p.MemBytesMax != p.MemBytes {
			t.Fatalf("a fine point's maxima are its own values: %+v", p)
		}
	}
}

func TestCoarserPointsAverageAndKeepMaxima(t *testing.T) {
	c := &clock{t: t0}
	s := New(c.now)
	// First 30 s interval: cpu 0,1,…,59 and memory 1..60 MiB; the disk grows.
	feed(s, c, 60, func(i int) Sample {
		return Sample{CPUPct: float64(i), MemBytes: int64(i+1) << 20, DiskBytes: int64(i+1) << 20}
	})
	// Second interval: flat 50 %, 10 MiB, and guest answers for half of the samples.
	feed(s, c, 60, func(i int) Sample {
		smp := Sample{CPUPct: 50, MemBytes: 10 << 20, DiskBytes: 100 << 20}
		if i%2 == 0 {
			smp.HasGuest = true
			smp.Guest = Guest{CPUPct: float64(i), CPUCount: 2, MemUsed: int64(i) << 20, MemTotal: 512 << 20, MemCache: 4 << 20, DiskUsed: int64(i) << 20, DiskTotal: 1 << 30}
		}
		return smp
	})
	med := s.All()[1]
	if med.Tier != Medium || med.Step != 30*time.Second || len(med.Points) != 2 {
		t.Fatalf("medium: %s %v %d points, want 2", med.Tier, med.Step, len(med.Points))
	}
	p := med.Points[0]
	if !p.Time.Equal(t0) || p.CPUPct != 29.5 || p.CPUPctMax != 59 || p.MemBytes != 30.5*(1<<20) || p.MemBytesMax != 60<<20 || p.DiskBytes != 60<<20 || p.HasGuest {
		t.Errorf("first interval: %+v; want avg cpu 29.5 max 59, avg mem 30.5 MiB max 60 MiB, last disk 60 MiB, no guest", p)
	}
	p = med.Points[1]
	// Guest answers at i = 0, 2, …, 58: average 29, last 58.
	g := p.Guest
	if !p.Time.Equal(t0.Add(30*time.Second)) || p.CPUPct != 50 || p.CPUPctMax != 50 || p.MemBytes != 10<<20 || p.DiskBytes != 100<<20 ||
		!p.HasGuest || g.CPUPct != 29 || g.MemUsed != 29<<20 || g.MemCache != 4<<20 || g.DiskUsed != 58<<20 || g.MemTotal != 512<<20 || g.CPUCount != 2 || g.DiskTotal != 1<<30 {
		t.Errorf("second interval: %+v; want cpu 50, guest averaged over its answers (cpu 29, mem 29 MiB) and its last disk (58 MiB)", p)
	}
	// Coarse: one open 5-minute interval holding all 120 samples.
	co := s.All()[2]
	if len(co.Points) != 1 {
		t.Fatalf("coarse: %d points, want the open one", len(co.Points))
	}
	p = co.Points[0]
	if !p.Time.Equal(t0) || math.Abs(p.CPUPct-(29.5+50)/2) > 1e-4 || p.CPUPctMax != 59 || p.MemBytesMax != 60<<20 || p.DiskBytes != 100<<20 || !p.HasGuest {
		t.Errorf("coarse: %+v", p)
	}
}

func TestIntervalsAlignToTheEpoch(t *testing.T) {
	c := &clock{t: t0.Add(17*time.Second + 250*time.Millisecond)}
	s := New(c.now)
	feed(s, c, 100, flat(10, 1<<20)) // 50 s: from :17.25 to :66.75
	med := s.All()[1].Points
	if len(med) != 3 || !med[0].Time.Equal(t0) || !med[1].Time.Equal(t0.Add(30*time.Second)) || !med[2].Time.Equal(t0.Add(time.Minute)) {
		t.Fatalf("medium points should start on 30 s boundaries: %v", times(med))
	}
}

func TestRangePicksTheFinestTierThatCovers(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want Tier
	}{
		{time.Second, Fine}, {10 * time.Minute, Fine}, {11 * time.Minute, Medium}, {2 * time.Hour, Medium},
		{2*time.Hour + time.Second, Coarse}, {3 * time.Hour, Coarse}, {24 * time.Hour, Coarse}, {48 * time.Hour, Coarse},
	} {
		if got := For(c.d); got != c.want {
			t.Errorf("For(%v) = %s, want %s", c.d, got, c.want)
		}
		s := New(func() time.Time { return t0 })
		if got := s.Range(c.d); got.Tier != c.want || got.Step != c.want.Step() || got.Points != nil {
			t.Errorf("Range(%v) of an empty set: %s %v %d points, want %s and none", c.d, got.Tier, got.Step, len(got.Points), c.want)
		}
	}
}

func TestRangeAfterADay(t *testing.T) {
	c := &clock{t: t0}
	s := New(c.now)
	// 25 hours of samples: every ring is full and has wrapped.
	feed(s, c, 25*3600*2, flat(20, 64<<20))
	now := c.t.Add(-500 * time.Millisecond) // the last sample's time
	c.t = now
	for _, tc := range []struct {
		d     time.Duration
		tier  Tier
		count int
	}{
		// Fine: 1200 samples in 10 min (the one exactly 10 min back ends after the cutoff too,
		// but the ring holds only 1200).
		{10 * time.Minute, Fine, 1200},
		{time.Minute, Fine, 121},
		{11 * time.Minute, Medium, 23},
		{time.Hour, Medium, 121},
		{2 * time.Hour, Medium, 240},
		{3 * time.Hour, Coarse, 37},
		{24 * time.Hour, Coarse, 288},
	} {
		got := s.Range(tc.d)
		if got.Tier != tc.tier || len(got.Points) != tc.count {
			t.Errorf("Range(%v): %s with %d points, want %s with %d", tc.d, got.Tier, len(got.Points), tc.tier, tc.count)
			continue
		}
		step := tc.tier.Step()
		for i, p := range got.Points {
			if !p.Time.Add(step).After(now.Add(-tc.d)) || p.Time.After(now) {
				t.Errorf("Range(%v): point %d at %v is outside the range", tc.d, i, p.Time)
			}
			if i > 0 && p.Time.Sub(got.Points[i-1].Time) != step {
				t.Errorf("Range(%v): points %d and %d are %v apart, want %v", tc.d, i-1, i, p.Time.Sub(got.Points[i-1].Time), step)
			}
			if p.CPUPct != 20 || p.MemBytes != 64<<20 {
				t.Errorf("Range(%v): point %d: %+v", tc.d, i, p)
			}
		}
		if last := got.Points[len(got.Points)-1].Time; now.Sub(last) >= step {
			t.Errorf("Range(%v): the newest point (%v) is not the newest interval (now %v)", tc.d, last, now)
		}
	}
	// Every tier holds at most its Len points, the open interval included.
	for _, sr := range s.All() {
		if len(sr.Points) != sr.Tier.Len() {
			t.Errorf("%s holds %d points, want %d", sr.Tier, len(sr.Points), sr.Tier.Len())
		}
	}
}

func TestGapsMakeNoPoints(t *testing.T) {
	c := &clock{t: t0}
	s := New(c.now)
	feed(s, c, 240, flat(30, 1<<20)) // 2 min running
	gapStart := c.t
	c.t = c.t.Add(20 * time.Minute) // paused: no samples
	gapEnd := c.t
	feed(s, c, 240, flat(60, 2<<20)) // 2 min running again
	for _, sr := range s.All() {
		for _, p := range sr.Points {
			end := p.Time.Add(sr.Step)
			if sr.Tier == Fine {
				end = p.Time
			}
			// Only a coarse interval may span the gap's edges, and only with real samples.
			if p.Time.After(gapStart) && end.Before(gapEnd) {
				t.Errorf("%s has a point at %v, inside the pause %v–%v", sr.Tier, p.Time, gapStart, gapEnd)
			}
		}
	}
	all := s.All()
	if n := len(all[0].Points); n != 480 {
		t.Errorf("fine: %d points, want the 480 samples", n)
	}
	// 2 min before and after: 4 intervals each, nothing in between.
	if med := all[1].Points; len(med) != 8 || med[3].CPUPct != 30 || med[4].CPUPct != 60 || med[4].Time.Sub(med[3].Time) != 20*time.Minute+30*time.Second {
		t.Errorf("medium across a gap: %v", times(med))
	}
	// Coarse: 12:00 (the first 2 min), then 12:20 (the last 2 min); 12:05–12:15 have none.
	if co := all[2].Points; len(co) != 2 || !co[0].Time.Equal(t0) || !co[1].Time.Equal(t0.Add(20*time.Minute)) || co[0].CPUPct != 30 || co[1].CPUPct != 60 {
		t.Errorf("coarse across a gap: %v", times(co))
	}
}

func TestOlderSamplesAreDropped(t *testing.T) {
	c := &clock{t: t0}
	s := New(c.now)
	s.Add(Sample{Time: t0, CPUPct: 1})
	s.Add(Sample{Time: t0, CPUPct: 2})                             // same time
	s.Add(Sample{Time: t0.Add(-time.Second), CPUPct: 3})           // older
	s.Add(Sample{Time: t0.Add(time.Second), CPUPct: 4})            // newer
	s.Add(Sample{Time: t0.Add(999 * time.Millisecond), CPUPct: 5}) // older again
	fine := s.All()[0].Points
	if len(fine) != 2 || fine[0].CPUPct != 1 || fine[1].CPUPct != 4 {
		t.Fatalf("fine: %+v", fine)
	}
}

func TestBytesRoundTrip(t *testing.T) {
	c := &clock{t: t0}
	s := New(c.now)
	s.Add(Sample{Time: t0, MemBytes: 123456 << 10, DiskBytes: 5<<40 + 7, HasGuest: true, Guest: Guest{MemTotal: -1, CPUCount: 1 << 20}})
	p := s.All()[0].Points[0]
	if p.MemBytes != 123456<<10 {
		t.Errorf("memory %d, want %d", p.MemBytes, 123456<<10)
	}
	if p.DiskBytes != math.MaxUint32<<10 {
		t.Errorf("5 TiB of disk reads %d, want the 4 TiB ceiling", p.DiskBytes)
	}
	if p.Guest.MemTotal != 0 || p.Guest.CPUCount != math.MaxUint16 {
		t.Errorf("out-of-range guest values: %+v", p.Guest)
	}
}

// TestMemoryPerSandbox checks what one sandbox's set costs: the target is at most
// 200 KiB. Its size does not depend on how full it is: the rings are allocated whole.
func TestMemoryPerSandbox(t *testing.T) {
	if sz := unsafe.Sizeof(point{}); sz != 56 {
		t.Errorf("a point takes %d bytes; it was laid out for 56", sz)
	}
	per := measureSetBytes(50)
	t.Logf("one set: %d bytes (%.1f KiB) measured, %d bytes of ring points", per, float64(per)/1024, (Fine.Len()+Medium.Len()+Coarse.Len())*int(unsafe.Sizeof(point{})))
	if per > 200<<10 {
		t.Errorf("one sandbox's metrics take %d bytes, above the 200 KiB target", per)
	}
}

// measureSetBytes allocates n sets, fills each with 25 hours of samples (every ring
// full), and returns the heap they hold per set, from runtime.MemStats.
func measureSetBytes(n int) int64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	sets := make([]*Set, n)
	for i := range sets {
		c := &clock{t: t0}
		sets[i] = New(c.now)
		feed(sets[i], c, 25*3600*2, flat(50, 1<<30))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(sets)
	return int64(after.HeapAlloc-before.HeapAlloc) / int64(n)
}

func BenchmarkAdd(b *testing.B) {
	c := &clock{t: t0}
	s := New(c.now)
	smp := Sample{CPUPct: 12.5, MemBytes: 300 << 20, DiskBytes: 1 << 30, HasGuest: true, Guest: Guest{CPUPct: 10, CPUCount: 2, MemUsed: 200 << 20, MemTotal: 1 << 30}}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		smp.Time = t0.Add(time.Duration(i) * 500 * time.Millisecond)
		s.Add(smp)
	}
}

func times(ps []Point) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Time.UTC().Format("15:04:05.000"))
	}
	return out
}
