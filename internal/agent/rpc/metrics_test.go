package rpc_test

import (
	"testing"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/internal/ident"
)

func TestSandboxMetrics(t *testing.T) {
	a := startAgent(t)
	c, ctx := a.Client, ctxT(t)
	id := create(t, c, nil)

	get := func(rangeSec int32) (*pb.MetricSeries, error) {
		resp, err := c.GetSandboxMetrics(ctx, connect.NewRequest(&pb.GetSandboxMetricsRequest{SandboxId: id, RangeSec: rangeSec}))
		if err != nil {
			return nil, err
		}
		return resp.Msg.GetSeries(), nil
	}
	for _, bad := range []int32{0, -1, 86401} {
		_, err := get(bad)
		wantCode(t, err, connect.CodeInvalidArgument, "range_sec")
	}
	_, err := c.GetSandboxMetrics(ctx, connect.NewRequest(&pb.GetSandboxMetricsRequest{SandboxId: ident.NewSandboxID(), RangeSec: 60}))
	wantCode(t, err, connect.CodeNotFound, "")
	_, err = c.FlushSandboxMetrics(ctx, connect.NewRequest(&pb.FlushSandboxMetricsRequest{SandboxId: ident.NewSandboxID()}))
	wantCode(t, err, connect.CodeNotFound, "")

	// Sampled twice a second: points with the guest's view within a few seconds.
	var fine *pb.MetricSeries
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if fine, err = get(600); err != nil {
			t.Fatal(err)
		}
		if n := len(fine.GetPoints()); n >= 2 && fine.GetPoints()[n-1].GetHasGuest() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no points with the guest's view after 5 s: %v", fine)
		}
	}
	if fine.GetTier() != pb.MetricTier_METRIC_TIER_FINE || fine.GetStepMs() != 500 {
		t.Errorf("10 minutes: tier %v step %d ms, want fine, 500", fine.GetTier(), fine.GetStepMs())
	}
	pts := fine.GetPoints()
	p := pts[len(pts)-1]
	if p.GetTime().AsTime().Before(time.Now().Add(-5*time.Second)) || p.GetMemBytes() <= 0 || p.GetMemBytesMax() != p.GetMemBytes() ||
		p.GetGuestCpuCount() < 1 || p.GetGuestMemTotal() <= 0 || p.GetGuestMemUsed() <= 0 || p.GetGuestDiskTotal() <= 0 {
		t.Errorf("newest point: %v", p)
	}
	if !pts[0].GetTime().AsTime().Before(p.GetTime().AsTime()) {
		t.Errorf("points are not oldest first: %v … %v", pts[0].GetTime().AsTime(), p.GetTime().AsTime())
	}
	for _, c := range []struct {
		rangeSec int32
		tier     pb.MetricTier
		stepMs   int32
	}{
		{1, pb.MetricTier_METRIC_TIER_FINE, 500},
		{601, pb.MetricTier_METRIC_TIER_MEDIUM, 30000},
		{7200, pb.MetricTier_METRIC_TIER_MEDIUM, 30000},
		{10800, pb.MetricTier_METRIC_TIER_COARSE, 300000},
		{86400, pb.MetricTier_METRIC_TIER_COARSE, 300000},
	} {
		s, err := get(c.rangeSec)
		if err != nil || s.GetTier() != c.tier || s.GetStepMs() != c.stepMs || len(s.GetPoints()) == 0 {
			t.Errorf("range %d s: %v step %d, %d points, %v; want %v step %d", c.rangeSec, s.GetTier(), s.GetStepMs(), len(s.GetPoints()), err, c.tier, c.stepMs)
		}
	}

	flush, err := c.FlushSandboxMetrics(ctx, connect.NewRequest(&pb.FlushSandboxMetricsRequest{SandboxId: id}))
	if err != nil {
		t.Fatal(err)
	}
	series := flush.Msg.GetSeries()
	if len(series) != 3 || series[0].GetTier() != pb.MetricTier_METRIC_TIER_FINE || series[1].GetTier() != pb.MetricTier_METRIC_TIER_MEDIUM ||
		series[2].GetTier() != pb.MetricTier_METRIC_TIER_COARSE || series[2].GetStepMs() != 300000 || len(series[0].GetPoints()) < len(pts) {
		t.Errorf("flush: %d series %v", len(series), series)
	}
	// A coarser point's time is the start of its interval.
	if med := series[1].GetPoints(); len(med) == 0 || med[0].GetTime().AsTime().UnixMilli()%30000 != 0 {
		t.Errorf("medium points: %v", med)
	}
}
