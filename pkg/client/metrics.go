package client

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// MetricPoint is one point of a sandbox's metrics: CPU of its VM's process as a
// percentage of its vCPUs, that process's resident memory and the bytes its own disk
// allocates on the host (averages over the point, with maxima), and the guest's own
// view when envd answered.
type MetricPoint struct {
	Timestamp   time.Time     `json:"timestamp"`
	CPUPct      float64       `json:"cpu_pct"`
	CPUPctMax   float64       `json:"cpu_pct_max"`
	MemBytes    int64         `json:"mem_bytes"`
	MemBytesMax int64         `json:"mem_bytes_max"`
	DiskBytes   int64         `json:"disk_bytes"`
	Guest       *GuestMetrics `json:"guest"`
}

// GuestMetrics is what the guest says of itself (envd's /metrics).
type GuestMetrics struct {
	CPUPct    float64 `json:"cpu_pct"`
	CPUCount  int     `json:"cpu_count"`
	MemUsed   int64   `json:"mem_used"`
	MemTotal  int64   `json:"mem_total"`
	MemCache  int64   `json:"mem_cache"`
	DiskUsed  int64   `json:"disk_used"`
	DiskTotal int64   `json:"disk_total"`
}

// SandboxMetrics is a sandbox's metrics over a range, oldest point first.
type SandboxMetrics struct {
	SandboxID string        `json:"sandbox_id"`
	Range     string        `json:"range"`
	StepMS    int64         `json:"step_ms"`
	Live      bool          `json:"live"` // from its host now, not what was kept at its last pause or destroy
	Points    []MetricPoint `json:"points"`
}

// SandboxMetrics returns a sandbox's metrics over rng: 5m, 10m, 1h, 2h, 6h, 12h or
// 24h ("" for the server's default, 10m).
func (c *Client) SandboxMetrics(ctx context.Context, id, rng string) (*SandboxMetrics, error) {
	var m SandboxMetrics
	path := "/v1/sandboxes/" + url.PathEscape(id) + "/metrics"
	if rng != "" {
		path += "?range=" + url.QueryEscape(rng)
	}
	if err := c.do(ctx, http.MethodGet, path, nil, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// TeamHolding is what the team holds at a time: running (and starting) sandboxes
// with the vCPUs and memory they reserve, and paused ones.
type TeamHolding struct {
	Timestamp *time.Time `json:"timestamp,omitempty"`
	Running   int        `json:"running"`
	Paused    int        `json:"paused"`
	VCPUs     int        `json:"vcpus"`
	MemoryMB  int        `json:"memory_mb"`
}

// TeamStats is the team's holdings over a range: now, at the peak, and over time.
type TeamStats struct {
	Range  string        `json:"range"`
	StepMS int64         `json:"step_ms"`
	Now    TeamHolding   `json:"now"`
	Peak   TeamHolding   `json:"peak"`
	Points []TeamHolding `json:"points"`
}

// TeamStats returns the team's stats over rng: 5m, 1h, 6h, 24h or 30d ("" for 1h).
func (c *Client) TeamStats(ctx context.Context, rng string) (*TeamStats, error) {
	var st TeamStats
	path := "/v1/sandboxes/stats"
	if rng != "" {
		path += "?range=" + url.QueryEscape(rng)
	}
	if err := c.do(ctx, http.MethodGet, path, nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// DayUsage is what the team's running sandboxes reserved on one UTC day.
type DayUsage struct {
	Day         string  `json:"day"` // YYYY-MM-DD
	VCPUSeconds float64 `json:"vcpu_seconds"`
	GiBSeconds  float64 `json:"gib_seconds"`
}

// Usage returns the team's usage per UTC day from from to to, both included (zero
// times: the server's default, the last 30 days).
func (c *Client) Usage(ctx context.Context, from, to time.Time) ([]DayUsage, error) {
	q := url.Values{}
	if !from.IsZero() {
		q.Set("from", from.UTC().Format(time.DateOnly))
	}
	if !to.IsZero() {
		q.Set("to", to.UTC().Format(time.DateOnly))
	}
	path := "/v1/usage"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out struct {
		Days []DayUsage `json:"days"`
	}
	if err := c.do(ctx, http.MethodGet, path, nil, &out); err != nil {
		return nil, err
	}
	return out.Days, nil
}
