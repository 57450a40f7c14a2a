package rpc

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/internal/metrics"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// maxMetricsRangeSec is the longest range GetSandboxMetrics answers: the coarse tier's
// span, all the agent keeps.
const maxMetricsRangeSec = 86400

func (s *Server) GetSandboxMetrics(_ context.Context, req *connect.Request[pb.GetSandboxMetricsRequest]) (*connect.Response[pb.GetSandboxMetricsResponse], error) {
	r := req.Msg.GetRangeSec()
	if r < 1 || r > maxMetricsRangeSec {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("range_sec %d out of range 1..%d", r, maxMetricsRangeSec))
	}
	series, err := s.m.Metrics(req.Msg.GetSandboxId(), time.Duration(r)*time.Second)
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.GetSandboxMetricsResponse{Series: seriesProto(series)}), nil
}

func (s *Server) FlushSandboxMetrics(_ context.Context, req *connect.Request[pb.FlushSandboxMetricsRequest]) (*connect.Response[pb.FlushSandboxMetricsResponse], error) {
	all, err := s.m.FlushMetrics(req.Msg.GetSandboxId())
	if err != nil {
		return nil, toConnect(err)
	}
	out := &pb.FlushSandboxMetricsResponse{}
	for _, sr := range all {
		out.Series = append(out.Series, seriesProto(sr))
	}
	return connect.NewResponse(out), nil
}

var tierNames = map[metrics.Tier]pb.MetricTier{
	metrics.Fine:   pb.MetricTier_METRIC_TIER_FINE,
	metrics.Medium: pb.MetricTier_METRIC_TIER_MEDIUM,
	metrics.Coarse: pb.MetricTier_METRIC_TIER_COARSE,
}

func seriesProto(sr metrics.Series) *pb.MetricSeries {
	out := &pb.MetricSeries{Tier: tierNames[sr.Tier], StepMs: int32(sr.Step.Milliseconds()), Points: make([]*pb.MetricPoint, 0, len(sr.Points))}
	for _, p := range sr.Points {
		mp := &pb.MetricPoint{
			Time: timestamppb.New(p.Time), CpuPct: p.CPUPct, CpuPctMax: p.CPUPctMax,
			MemBytes: p.MemBytes, MemBytesMax: p.MemBytesMax, DiskBytes: p.DiskBytes, HasGuest: p.HasGuest,
		}
		if p.HasGuest {
			g := p.Guest
			mp.GuestCpuPct, mp.GuestCpuCount = g.CPUPct, int32(g.CPUCount)
			mp.GuestMemUsed, mp.GuestMemTotal, mp.GuestMemCache = g.MemUsed, g.MemTotal, g.MemCache
			mp.GuestDiskUsed, mp.GuestDiskTotal = g.DiskUsed, g.DiskTotal
		}
		out.Points = append(out.Points, mp)
	}
	return out
}
