package sandboxes

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/wrennhq/wrenn/gen/db"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
	"github.com/wrennhq/wrenn/internal/lifecycle"
	"github.com/wrennhq/wrenn/internal/metrics"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// MetricRanges are the ranges a sandbox's metrics are asked for in.
var MetricRanges = map[string]time.Duration{
	"5m": 5 * time.Minute, "10m": 10 * time.Minute, "1h": time.Hour, "2h": 2 * time.Hour,
	"6h": 6 * time.Hour, "12h": 12 * time.Hour, "24h": 24 * time.Hour,
}

// flushTimeout bounds a flush of a sandbox's metrics before its pause or destroy: the
// operation does not wait longer for charts.
const flushTimeout = 5 * time.Second

// MetricPoint is one point of a sandbox's metrics (see hostagent.v1.MetricPoint).
type MetricPoint struct {
	Time              time.Time
	CPUPct, CPUPctMax float64
	MemBytes, MemMax  int64
	DiskBytes         int64
	Guest             *GuestMetrics // nil: envd did not answer for this point
}

// GuestMetrics is the guest's own view (envd's /metrics).
type GuestMetrics struct {
	CPUPct                      float64
	CPUCount                    int
	MemUsed, MemTotal, MemCache int64
	DiskUsed, DiskTotal         int64
}

// Metrics is a sandbox's metrics over a range.
type Metrics struct {
	SandboxID string
	Range     string
	Step      time.Duration
	// Live: read from the sandbox's host now; otherwise what was kept at its last
	// pause or destroy (the range then ends where that series ends).
	Live   bool
	Points []MetricPoint
}

// SandboxMetrics returns a sandbox's metrics over rangeName (MetricRanges): from its
// host while the host has them (running, or paused on it), else from the database.
func (s *Service) SandboxMetrics(ctx context.Context, p *core.Principal, id, rangeName string) (*Metrics, error) {
	d, ok := MetricRanges[rangeName]
	if !ok {
		return nil, fmt.Errorf("%w: range %q: want one of 5m, 10m, 1h, 2h, 6h, 12h, 24h", core.ErrInvalid, rangeName)
	}
	row, err := s.sandboxRow(ctx, p, id)
	if err != nil {
		return nil, err
	}
	out := &Metrics{SandboxID: id, Range: rangeName, Points: []MetricPoint{}}
	if st := stateOf(row); st == lifecycle.Running || st == lifecycle.Paused {
		if agent, err := s.agentOf(ctx, row); err == nil {
			resp, err := agent.GetSandboxMetrics(ctx, connect.NewRequest(&pb.GetSandboxMetricsRequest{SandboxId: id, RangeSec: int32(d / time.Second)}))
			switch code := connect.CodeOf(err); {
			case err == nil:
				series := resp.Msg.GetSeries()
				out.Live, out.Step = true, time.Duration(series.GetStepMs())*time.Millisecond
				for _, pt := range series.GetPoints() {
					out.Points = append(out.Points, fromProto(pt))
				}
				return out, nil
			case code != connect.CodeNotFound && code != connect.CodeUnimplemented && code != connect.CodeUnavailable:
				return nil, fmt.Errorf("metrics of sandbox %s: %w", id, agentError(err))
			}
		}
	}
	return s.keptMetrics(ctx, row.ID, d, out)
}

// keptMetrics answers from the points kept in the database: the range ends where the
// kept series ends.
func (s *Service) keptMetrics(ctx context.Context, id string, d time.Duration, out *Metrics) (*Metrics, error) {
	// The tier the agent would answer from (metrics.For), as kept.
	tier := metrics.For(d)
	out.Step = tier.Step()
	last, err := s.q.LastMetricPointTime(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("metrics of sandbox %s: %w", id, err)
	}
	rows, err := s.q.ListMetricPoints(ctx, db.ListMetricPointsParams{SandboxID: id, Tier: int16(tier), FromTs: last.Add(-d), ToTs: last})
	if err != nil {
		return nil, fmt.Errorf("metrics of sandbox %s: %w", id, err)
	}
	for _, r := range rows {
		pt := MetricPoint{Time: r.Ts, CPUPct: float64(r.CpuPct), CPUPctMax: float64(r.CpuPctMax), MemBytes: r.MemBytes, MemMax: r.MemBytesMax, DiskBytes: r.DiskBytes}
		if r.HasGuest {
			pt.Guest = &GuestMetrics{CPUPct: float64(r.GuestCpuPct), CPUCount: int(r.GuestCpuCount), MemUsed: r.GuestMemUsed,
				MemTotal: r.GuestMemTotal, MemCache: r.GuestMemCache, DiskUsed: r.GuestDiskUsed, DiskTotal: r.GuestDiskTotal}
		}
		out.Points = append(out.Points, pt)
	}
	return out, nil
}

func fromProto(pt *pb.MetricPoint) MetricPoint {
	out := MetricPoint{Time: pt.GetTime().AsTime(), CPUPct: pt.GetCpuPct(), CPUPctMax: pt.GetCpuPctMax(), MemBytes: pt.GetMemBytes(),
		MemMax: pt.GetMemBytesMax(), DiskBytes: pt.GetDiskBytes()}
	if pt.GetHasGuest() {
		out.Guest = &GuestMetrics{CPUPct: pt.GetGuestCpuPct(), CPUCount: int(pt.GetGuestCpuCount()), MemUsed: pt.GetGuestMemUsed(),
			MemTotal: pt.GetGuestMemTotal(), MemCache: pt.GetGuestMemCache(), DiskUsed: pt.GetGuestDiskUsed(), DiskTotal: pt.GetGuestDiskTotal()}
	}
	return out
}

// flushMetrics keeps a sandbox's metric tiers in the database before a pause or
// destroy ends its live series on the host. Best effort: a host that does not
// answer, or has no sampler, loses the charts, never the operation.
func (s *Service) flushMetrics(ctx context.Context, id string, agent hostagentv1connect.HostAgentServiceClient) {
	ctx, cancel := context.WithTimeout(ctx, flushTimeout)
	defer cancel()
	resp, err := agent.FlushSandboxMetrics(ctx, connect.NewRequest(&pb.FlushSandboxMetricsRequest{SandboxId: id}))
	if err != nil {
		if code := connect.CodeOf(err); code != connect.CodeNotFound && code != connect.CodeUnimplemented {
			s.log.Warn("flush sandbox metrics: its charts until now are lost", "sandbox", id, "err", err)
		}
		return
	}
	params := db.InsertMetricPointsParams{SandboxID: id}
	for _, series := range resp.Msg.GetSeries() {
		for _, pt := range series.GetPoints() {
			appendPoint(&params, int16(series.GetTier()), pt)
		}
	}
	if len(params.Ts) == 0 {
		return
	}
	if _, err := s.q.InsertMetricPoints(ctx, params); err != nil {
		s.log.Warn("keep sandbox metrics: its charts until now are lost", "sandbox", id, "err", err)
	}
}

func appendPoint(p *db.InsertMetricPointsParams, tier int16, pt *pb.MetricPoint) {
	p.Tiers = append(p.Tiers, tier)
	p.Ts = append(p.Ts, pt.GetTime().AsTime())
	p.CpuPct = append(p.CpuPct, float32(pt.GetCpuPct()))
	p.CpuPctMax = append(p.CpuPctMax, float32(pt.GetCpuPctMax()))
	p.MemBytes = append(p.MemBytes, pt.GetMemBytes())
	p.MemBytesMax = append(p.MemBytesMax, pt.GetMemBytesMax())
	p.DiskBytes = append(p.DiskBytes, pt.GetDiskBytes())
	p.HasGuest = append(p.HasGuest, pt.GetHasGuest())
	p.GuestCpuPct = append(p.GuestCpuPct, float32(pt.GetGuestCpuPct()))
	p.GuestCpuCount = append(p.GuestCpuCount, pt.GetGuestCpuCount())
	p.GuestMemUsed = append(p.GuestMemUsed, pt.GetGuestMemUsed())
	p.GuestMemTotal = append(p.GuestMemTotal, pt.GetGuestMemTotal())
	p.GuestMemCache = append(p.GuestMemCache, pt.GetGuestMemCache())
	p.GuestDiskUsed = append(p.GuestDiskUsed, pt.GetGuestDiskUsed())
	p.GuestDiskTotal = append(p.GuestDiskTotal, pt.GetGuestDiskTotal())
}

// metricPointsKept is how long kept points stay (pruned by the stats loop).
const metricPointsKept = 30 * 24 * time.Hour
