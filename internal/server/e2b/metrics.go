package e2b

import (
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/wrennhq/wrenn/internal/server/sandboxes"
)

// sandboxMetricJSON is E2B's SandboxMetric: the guest's own view (envd's /metrics),
// as the host sampled it.
type sandboxMetricJSON struct {
	Timestamp     time.Time `json:"timestamp"`
	TimestampUnix int64     `json:"timestampUnix"`
	CPUCount      int       `json:"cpuCount"`
	CPUUsedPct    float64   `json:"cpuUsedPct"`
	MemUsed       int64     `json:"memUsed"`
	MemTotal      int64     `json:"memTotal"`
	MemCache      int64     `json:"memCache"`
	DiskUsed      int64     `json:"diskUsed"`
	DiskTotal     int64     `json:"diskTotal"`
}

// metrics is GET /sandboxes/{id}/metrics?start&end (Unix seconds; default the last
// 10 minutes up to now): the points of the finest tier that covers start, between
// start and end, that have the guest's view.
func (h *handlers) metrics(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	start, end := now.Add(-10*time.Minute), now
	for name, dst := range map[string]*time.Time{"start": &start, "end": &end} {
		if v := r.URL.Query().Get(name); v != "" {
			sec, err := strconv.ParseInt(v, 10, 64)
			if err != nil || sec < 0 {
				writeError(w, http.StatusBadRequest, name+" must be Unix seconds")
				return
			}
			*dst = time.Unix(sec, 0)
		}
	}
	if end.Before(start) {
		writeError(w, http.StatusBadRequest, "start is after end")
		return
	}
	sb, ok := h.visible(w, r)
	if !ok {
		return
	}
	m, err := h.svc.SandboxMetrics(r.Context(), principal(r), sb.ID, rangeCovering(now.Sub(start)))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := []sandboxMetricJSON{}
	for _, p := range m.Points {
		if p.Guest == nil || p.Time.Before(start) || p.Time.After(end) {
			continue
		}
		g := p.Guest
		out = append(out, sandboxMetricJSON{Timestamp: p.Time.UTC(), TimestampUnix: p.Time.Unix(), CPUCount: g.CPUCount, CPUUsedPct: g.CPUPct,
			MemUsed: g.MemUsed, MemTotal: g.MemTotal, MemCache: g.MemCache, DiskUsed: g.DiskUsed, DiskTotal: g.DiskTotal})
	}
	writeJSON(w, http.StatusOK, out)
}

// rangeCovering is the shortest of the sandboxes' metric ranges that reaches back d
// (the longest when none does).
func rangeCovering(d time.Duration) string {
	names := make([]string, 0, len(sandboxes.MetricRanges))
	for n := range sandboxes.MetricRanges {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return sandboxes.MetricRanges[names[i]] < sandboxes.MetricRanges[names[j]] })
	for _, n := range names {
		if sandboxes.MetricRanges[n] >= d {
			return n
		}
	}
	return names[len(names)-1]
}
