package agent_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/agent"
	"github.com/wrennhq/wrenn/internal/agent/agenttest"
	"github.com/wrennhq/wrenn/internal/agent/sampling"
	"github.com/wrennhq/wrenn/internal/metrics"
	"github.com/wrennhq/wrenn/internal/rootfs"
)

// fine is a sandbox's fine tier over the last 10 minutes.
func fine(t *testing.T, a *agenttest.Agent, id string) []metrics.Point {
	t.Helper()
	s, err := a.Manager.Metrics(id, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if s.Tier != metrics.Fine {
		t.Fatalf("a 10-minute range answered from %s", s.Tier)
	}
	return s.Points
}

// waitPoints waits until the sandbox's fine tier has a point that ok accepts.
func waitPoints(t *testing.T, a *agenttest.Agent, id string, within time.Duration, ok func(metrics.Point) bool) []metrics.Point {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		pts := fine(t, a, id)
		if len(pts) > 0 && ok(pts[len(pts)-1]) {
			return pts
		}
		if time.Now().After(deadline) {
			t.Fatalf("no fitting point within %v; last points: %+v", within, pts[max(len(pts)-3, 0):])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The fake driver's "VM" is an envd process: the sampler measures it from /proc, its
// disk file by its extents and envd's own /metrics, as it would a real VM.
func TestMetricsFollowTheSandbox(t *testing.T) {
	// Disks read every second rather than every 5, to keep the test short.
	a := agenttest.Start(t, agenttest.Options{Config: agent.Config{Sampling: sampling.Config{DiskEvery: 2}}})
	ctx := context.Background()
	id := create(t, a).Spec.ID

	pts := waitPoints(t, a, id, 5*time.Second, func(p metrics.Point) bool { return p.HasGuest })
	p := pts[len(pts)-1]
	if p.MemBytes < 1<<20 || p.CPUPct < 0 || p.CPUPct > 100 || p.Guest.CPUCount < 1 || p.Guest.MemTotal <= 0 || p.Guest.DiskTotal <= 0 {
		t.Errorf("point of a running sandbox: %+v", p)
	}
	// The disk's own bytes follow what is written to it.
	disk := filepath.Join(a.Dir, "sandboxes", id, rootfs.DiskName)
	if err := os.WriteFile(disk, make([]byte, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	waitPoints(t, a, id, 3*time.Second, func(p metrics.Point) bool { return p.DiskBytes >= 8<<20 })

	// Paused: the series stays and gets no points.
	if _, _, err := a.Manager.Pause(ctx, id); err != nil {
		t.Fatal(err)
	}
	pausedAt := time.Now()
	before := len(fine(t, a, id))
	time.Sleep(1500 * time.Millisecond)
	if after := len(fine(t, a, id)); after != before || before == 0 {
		t.Fatalf("points while paused: %d, then %d", before, after)
	}
	all, err := a.Manager.FlushMetrics(id)
	if err != nil || len(all) != 3 || all[0].Tier != metrics.Fine || all[1].Tier != metrics.Medium || all[2].Tier != metrics.Coarse {
		t.Fatalf("flush of a paused sandbox: %v %v", all, err)
	}

	// Resumed: the same series goes on, with a gap.
	if _, _, _, err := a.Manager.Resume(ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	resumedAt := time.Now()
	pts = waitPoints(t, a, id, 5*time.Second, func(p metrics.Point) bool { return p.Time.After(resumedAt) && p.HasGuest })
	for _, p := range pts {
		if p.Time.After(pausedAt) && p.Time.Before(resumedAt) {
			t.Errorf("a point at %v, while paused (%v to %v)", p.Time, pausedAt, resumedAt)
		}
	}
	if len(pts) <= before {
		t.Errorf("%d points after the resume, %d before the pause", len(pts), before)
	}

	// Destroyed: gone with the sandbox.
	if err := a.Manager.Destroy(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Manager.Metrics(id, time.Minute); !errors.Is(err, agent.ErrNotFound) {
		t.Errorf("metrics of a destroyed sandbox: %v", err)
	}
	if _, err := a.Manager.FlushMetrics(id); !errors.Is(err, agent.ErrNotFound) {
		t.Errorf("flush of a destroyed sandbox: %v", err)
	}
	if st := a.Manager.SamplerStats(); st.Ticks == 0 || st.Samples == 0 || st.Busy <= 0 || st.GuestRequests == 0 {
		t.Errorf("sampler stats: %+v", st)
	}
}

func TestMetricsOfASandboxNeverSampled(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	id := create(t, a).Spec.ID
	if _, _, err := a.Manager.Pause(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	// Whether or not a tick caught it running, a range is answered from its tier.
	s, err := a.Manager.Metrics(id, 3*time.Hour)
	if err != nil || s.Tier != metrics.Coarse || s.Step != 5*time.Minute {
		t.Errorf("3 h of a paused sandbox: %+v %v", s, err)
	}
	if _, err := a.Manager.Metrics(id, 0); !errors.Is(err, agent.ErrInvalid) {
		t.Errorf("an empty range: %v", err)
	}
}
