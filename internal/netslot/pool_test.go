package netslot

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"time"

	"github.com/wrennhq/wrenn/internal/testutil"
)

// waitReady waits (bounded) until the pool holds off and on ready slots of each kind.
func waitReady(t testing.TB, p *Pool, off, on int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.Ready(false) < off || p.Ready(true) < on {
		if time.Now().After(deadline) {
			t.Fatalf("pool has %d+%d of %d+%d ready slots after 10 s; last error: %v", p.Ready(false), p.Ready(true), off, on, p.Err())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func newTestPool(t testing.TB, o PoolOptions) *Pool {
	t.Helper()
	p, err := NewPool(DefaultConfig(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close pool: %v", err)
		}
		checkNoLeftovers(t, o.FirstIndex, o.LastIndex)
	})
	return p
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func TestPoolGet(t *testing.T) {
	testutil.RequireRoot(t, rootFor)
	const first, last = 64100, 64199
	p := newTestPool(t, PoolOptions{Size: 2, InternetSize: 2, FirstIndex: first, LastIndex: last})
	ctx := context.Background()
	seen := map[int]bool{}
	get := func(internet bool) time.Duration {
		waitReady(t, p, 2, 2)
		t0 := time.Now()
		s, err := p.Get(ctx, internet)
		d := time.Since(t0)
		if err != nil {
			t.Fatal(err)
		}
		if s.Index < first || s.Index > last || seen[s.Index] {
			t.Fatalf("slot index %d: outside %d..%d or handed out twice", s.Index, first, last)
		}
		seen[s.Index] = true
		if s.Internet() != internet {
			t.Errorf("slot %d internet=%v, asked %v", s.Index, s.Internet(), internet)
		}
		if err := p.Release(s); err != nil {
			t.Fatal(err)
		}
		return d
	}
	var off, on []time.Duration
	for range 5 {
		off = append(off, get(false))
		on = append(on, get(true))
	}
	t.Logf("Get from pool: internet off median %v (all %v), internet on median %v (all %v)", median(off), off, median(on), on)
	if m := median(off); m >= time.Millisecond {
		t.Errorf("Get(internet off) from the pool took %v, want well under 1 ms", m)
	}
	if m := median(on); m >= time.Millisecond {
		t.Errorf("Get(internet on) from the pool took %v, want well under 1 ms", m)
	}

	// Drained of one kind, Get switches a slot of the other; drained of both, it creates.
	var held []*Slot
	getTimed := func(internet bool) time.Duration {
		t0 := time.Now()
		s, err := p.Get(ctx, internet)
		d := time.Since(t0)
		if err != nil {
			t.Fatal(err)
		}
		if s.Internet() != internet {
			t.Errorf("slot %d internet=%v, asked %v", s.Index, s.Internet(), internet)
		}
		held = append(held, s)
		return d
	}
	waitReady(t, p, 2, 2)
	getTimed(true)
	getTimed(true)
	switched := getTimed(true) // from the internet-off list: switched on
	getTimed(false)            // the last ready one, or a new one if the refill won
	created := getTimed(false)
	t.Logf("Get that switched a ready slot: %v; Get with the pool drained: %v", switched, created)
	for _, s := range held {
		if err := p.Release(s); err != nil {
			t.Error(err)
		}
	}
}

// TestPoolRestart plays an agent restart: slots of a previous run exist (two still used
// by live sandboxes, one abandoned, plus a stray host egress entry); a new pool adopts the
// live ones, reclaims the rest, and never hands out an index that is in use.
func TestPoolRestart(t *testing.T) {
	testutil.RequireRoot(t, rootFor)
	const first, last = 64200, 64205
	c := DefaultConfig()
	var old []*Slot
	for _, i := range []int{64200, 64201, 64202} {
		s, err := c.Create(i)
		if err != nil {
			t.Fatal(err)
		}
		old = append(old, s)
		t.Cleanup(func() { _ = s.Destroy() })
	}
	if err := old[1].SetInternet(true); err != nil {
		t.Fatal(err)
	}
	if err := setHostEgress("wrenn-vh64204", true); err != nil { // a stray entry, no slot
		t.Fatal(err)
	}

	p := newTestPool(t, PoolOptions{Size: 1, FirstIndex: first, LastIndex: last})
	live := map[int]bool{64200: true, 64201: true}
	var adopted []*Slot
	for i := range live {
		s, err := p.Adopt(i)
		if err != nil {
			t.Fatal(err)
		}
		if s.HostIP != old[i-first].HostIP || s.Internet() != old[i-first].Internet() {
			t.Errorf("adopted slot %d: %+v internet=%v, want %+v internet=%v", i, s.Addrs, s.Internet(), old[i-first].Addrs, old[i-first].Internet())
		}
		adopted = append(adopted, s)
	}
	if err := p.Reclaim(func(i int) bool { return live[i] }); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Adopt(64202); err == nil {
		t.Error("abandoned slot 64202 survived Reclaim")
	}
	if stale, err := p.staleEgress(); err != nil || slices.Contains(stale, 64204) {
		t.Errorf("stray egress entry survived Reclaim: %v %v", stale, err)
	}

	// Four free indices remain (64202..64205): four Gets succeed, none in use, a fifth fails.
	var got []*Slot
	for range 4 {
		s, err := p.Get(context.Background(), false)
		if err != nil {
			t.Fatal(err)
		}
		if live[s.Index] {
			t.Errorf("Get handed out in-use index %d", s.Index)
		}
		got = append(got, s)
	}
	if s, err := p.Get(context.Background(), false); err == nil || !strings.Contains(err.Error(), "no free network slot") {
		t.Errorf("fifth Get: %v, %v; want no free slot", s, err)
	}
	for _, s := range append(got, adopted...) {
		if err := p.Release(s); err != nil {
			t.Error(err)
		}
	}
}

// BenchmarkSlot compares a slot made on demand with one taken from a warm pool. Run:
// go test -run '^$' -bench Slot -benchtime 30x ./internal/netslot/
func BenchmarkSlot(b *testing.B) {
	testutil.RequireRoot(b, rootFor)
	b.Run("create+destroy", func(b *testing.B) {
		c := DefaultConfig()
		// Another slot keeps the shared host table, as on a host running sandboxes;
		// otherwise every iteration would also create and delete the table.
		keep, err := c.Create(64301)
		if err != nil {
			b.Fatal(err)
		}
		defer keep.Destroy()
		b.ResetTimer()
		var create, destroy time.Duration
		for range b.N {
			t0 := time.Now()
			s, err := c.Create(64300)
			if err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			if err := s.Destroy(); err != nil {
				b.Fatal(err)
			}
			create, destroy = create+t1.Sub(t0), destroy+time.Since(t1)
		}
		b.ReportMetric(float64(create.Microseconds())/float64(b.N), "create-µs/op")
		b.ReportMetric(float64(destroy.Microseconds())/float64(b.N), "destroy-µs/op")
	})
	for _, tc := range []struct {
		name     string
		internet bool
		o        PoolOptions
	}{
		{"pool-get", false, PoolOptions{Size: 2}},
		{"pool-get+internet", true, PoolOptions{InternetSize: 2}},
		{"pool-get+internet-switched", true, PoolOptions{Size: 2}}, // no internet-on slots ready
	} {
		b.Run(tc.name, func(b *testing.B) {
			tc.o.FirstIndex, tc.o.LastIndex = 64310, 64399
			p := newTestPool(b, tc.o)
			// Timed by hand: Start/StopTimer read memory statistics, which costs more
			// than a Get from the pool.
			var total time.Duration
			for range b.N {
				waitReady(b, p, tc.o.Size, tc.o.InternetSize)
				t0 := time.Now()
				s, err := p.Get(context.Background(), tc.internet)
				total += time.Since(t0)
				if err != nil {
					b.Fatal(err)
				}
				if err := p.Release(s); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/op") // replaces the wall-clock figure
		})
	}
}

// An agent's first start on a host has no host table yet: reclaiming then finds nothing
// to do, without an error (it used to warn "host egress set: … no such file").
func TestReclaimWithoutHostTable(t *testing.T) {
	testutil.RequireRoot(t, rootFor)
	if otherSlotsExist() {
		t.Skip("other slots exist on this host (a parallel run?): the host table cannot be absent")
	}
	conn, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ListTableOfFamily(tableName, nftables.TableFamilyINet); !isNotExist(err) {
		t.Fatalf("host table present with no slot on the host: %v", err)
	}
	p := newTestPool(t, PoolOptions{FirstIndex: 64210, LastIndex: 64211})
	if err := p.Reclaim(func(int) bool { return false }); err != nil {
		t.Errorf("reclaim on a host without the table: %v", err)
	}
}
