package sandboxes

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// StatsRanges are the ranges a team's stats are asked for in.
var StatsRanges = map[string]time.Duration{
	"5m": 5 * time.Minute, "1h": time.Hour, "6h": 6 * time.Hour, "24h": 24 * time.Hour, "30d": 30 * 24 * time.Hour,
}

const (
	// statsPoints is about how many points a stats range is answered in (buckets of
	// the 10 s snapshots, each its bucket's largest values).
	statsPoints = 300
	// teamStatsKept is how long snapshots stay.
	teamStatsKept = 60 * 24 * time.Hour
	// maxUsageDays bounds a usage query.
	maxUsageDays = 92
)

// TeamHolding is what a team holds at one time: running (and starting) sandboxes and
// what they reserve, and paused ones (which keep their room on their hosts, but are
// counted apart, as they use no CPU).
type TeamHolding struct {
	Time            time.Time
	Running, Paused int
	VCPUs, MemoryMB int
}

// TeamStats is a team's holdings over a range: now (live), the range's peak, and the
// points (oldest first, step apart; a point with nothing held is absent).
type TeamStats struct {
	Range     string
	Step      time.Duration
	Now, Peak TeamHolding
	Points    []TeamHolding
}

// RunStats takes a snapshot of every team's holdings every interval (10 s by
// default), with one control plane of several doing each round (Redis lease), and
// prunes what is older than kept, until ctx ends.
func (s *Service) RunStats(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastPrune time.Time
	for {
		if ok, err := s.st.Redis.SetNX(ctx, "wrenn:team-stats-lease", 1, interval*9/10).Result(); err == nil && ok {
			if err := s.StatsRound(ctx, interval); err != nil && ctx.Err() == nil {
				s.log.Warn("team stats round", "err", err)
			}
			if s.now().Sub(lastPrune) > time.Hour {
				s.pruneStats(ctx)
				lastPrune = s.now()
			}
		} else if err != nil && ctx.Err() == nil {
			s.log.Warn("team stats lease", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// StatsRound records every team's holdings now; interval is how long this round
// stands for in usage sums.
func (s *Service) StatsRound(ctx context.Context, interval time.Duration) error {
	rows, err := s.q.TeamHoldings(ctx, pgtype.UUID{})
	if err != nil {
		return fmt.Errorf("team holdings: %w", err)
	}
	if len(rows) == 0 {
		return nil
	}
	p := db.InsertTeamStatsParams{Ts: s.now().UTC().Truncate(time.Millisecond), IntervalS: float32(interval.Seconds())}
	for _, r := range rows {
		p.TeamIds = append(p.TeamIds, r.TeamID)
		p.Running = append(p.Running, r.Running)
		p.Paused = append(p.Paused, r.Paused)
		p.Vcpus = append(p.Vcpus, r.Vcpus)
		p.MemoryMB = append(p.MemoryMB, r.MemoryMB)
	}
	if err := s.q.InsertTeamStats(ctx, p); err != nil {
		return fmt.Errorf("record team stats: %w", err)
	}
	return nil
}

func (s *Service) pruneStats(ctx context.Context) {
	if _, err := s.q.PruneTeamStats(ctx, s.now().Add(-teamStatsKept)); err != nil {
		s.log.Warn("prune team stats", "err", err)
	}
	if _, err := s.q.PruneMetricPoints(ctx, s.now().Add(-metricPointsKept)); err != nil {
		s.log.Warn("prune kept sandbox metrics", "err", err)
	}
}

// TeamStats returns the principal's team's holdings over rangeName (StatsRanges).
func (s *Service) TeamStats(ctx context.Context, p *core.Principal, rangeName string) (*TeamStats, error) {
	d, ok := StatsRanges[rangeName]
	if !ok {
		return nil, fmt.Errorf("%w: range %q: want one of 5m, 1h, 6h, 24h, 30d", core.ErrInvalid, rangeName)
	}
	teamID, err := core.ParseUUID(p.TeamID)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	step := max((d / statsPoints).Round(10*time.Second), 10*time.Second)
	rows, err := s.q.TeamStatsSeries(ctx, db.TeamStatsSeriesParams{TeamID: teamID, StepS: step.Seconds(), FromTs: now.Add(-d), ToTs: now})
	if err != nil {
		return nil, fmt.Errorf("team stats: %w", err)
	}
	out := &TeamStats{Range: rangeName, Step: step, Points: make([]TeamHolding, 0, len(rows))}
	if out.Now, err = s.holdingNow(ctx, teamID, now); err != nil {
		return nil, err
	}
	out.Peak = out.Now
	out.Peak.Time = time.Time{}
	for _, r := range rows {
		h := TeamHolding{Time: r.Bucket, Running: int(r.Running), Paused: int(r.Paused), VCPUs: int(r.Vcpus), MemoryMB: int(r.MemoryMB)}
		out.Points = append(out.Points, h)
		out.Peak.Running, out.Peak.Paused = max(out.Peak.Running, h.Running), max(out.Peak.Paused, h.Paused)
		out.Peak.VCPUs, out.Peak.MemoryMB = max(out.Peak.VCPUs, h.VCPUs), max(out.Peak.MemoryMB, h.MemoryMB)
	}
	return out, nil
}

// holdingNow is the team's holding read live (not from the last snapshot).
func (s *Service) holdingNow(ctx context.Context, teamID pgtype.UUID, now time.Time) (TeamHolding, error) {
	rows, err := s.q.TeamHoldings(ctx, teamID)
	if err != nil {
		return TeamHolding{}, fmt.Errorf("team holdings: %w", err)
	}
	h := TeamHolding{Time: now}
	for _, r := range rows { // none, or the team's
		h.Running, h.Paused, h.VCPUs, h.MemoryMB = int(r.Running), int(r.Paused), int(r.Vcpus), int(r.MemoryMB)
	}
	return h, nil
}

// DayUsage is what a team reserved on one UTC day: vCPU-seconds and GiB-seconds of
// memory of its running sandboxes.
type DayUsage struct {
	Day                     time.Time
	VCPUSeconds, GiBSeconds float64
}

// Usage returns the principal's team's usage per day from from to to (UTC days,
// both included; at most 92 days).
func (s *Service) Usage(ctx context.Context, p *core.Principal, from, to time.Time) ([]DayUsage, error) {
	from, to = from.UTC().Truncate(24*time.Hour), to.UTC().Truncate(24*time.Hour)
	if to.Before(from) {
		return nil, fmt.Errorf("%w: from is after to", core.ErrInvalid)
	}
	if days := int(to.Sub(from)/(24*time.Hour)) + 1; days > maxUsageDays {
		return nil, fmt.Errorf("%w: %d days asked for, at most %d at a time", core.ErrInvalid, days, maxUsageDays)
	}
	teamID, err := core.ParseUUID(p.TeamID)
	if err != nil {
		return nil, err
	}
	rows, err := s.q.TeamUsageByDay(ctx, db.TeamUsageByDayParams{TeamID: teamID, FromTs: from, ToTs: to.Add(24 * time.Hour)})
	if err != nil {
		return nil, fmt.Errorf("usage: %w", err)
	}
	byDay := map[time.Time]db.TeamUsageByDayRow{}
	for _, r := range rows {
		byDay[r.Day.Time.UTC()] = r
	}
	var out []DayUsage
	for day := from; !day.After(to); day = day.Add(24 * time.Hour) {
		r := byDay[day]
		out = append(out, DayUsage{Day: day, VCPUSeconds: r.VcpuSeconds, GiBSeconds: r.MibSeconds / 1024})
	}
	return out, nil
}
