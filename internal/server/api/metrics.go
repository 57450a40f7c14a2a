package api

import (
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/wrennhq/wrenn/internal/server/sandboxes"
)

// metricRoutes are a sandbox's metrics, the team's stats and its usage (a user's
// token or the team's API key).
func (s *Server) metricRoutes(r chi.Router) {
	r.Get("/sandboxes/{id}/metrics", s.sandboxMetrics)
	r.Get("/sandboxes/stats", s.teamStats)
	r.Get("/usage", s.usage)
}

type guestMetricsJSON struct {
	CPUPct    float64 `json:"cpu_pct"`
	CPUCount  int     `json:"cpu_count"`
	MemUsed   int64   `json:"mem_used"`
	MemTotal  int64   `json:"mem_total"`
	MemCache  int64   `json:"mem_cache"`
	DiskUsed  int64   `json:"disk_used"`
	DiskTotal int64   `json:"disk_total"`
}

type metricPointJSON struct {
	Timestamp time.Time         `json:"timestamp"`
	CPUPct    float64           `json:"cpu_pct"`
	CPUPctMax float64           `json:"cpu_pct_max"`
	MemBytes  int64             `json:"mem_bytes"`
	MemMax    int64             `json:"mem_bytes_max"`
	DiskBytes int64             `json:"disk_bytes"`
	Guest     *guestMetricsJSON `json:"guest"`
}

func (s *Server) sandboxMetrics(w http.ResponseWriter, r *http.Request) {
	rng := r.URL.Query().Get("range")
	if rng == "" {
		rng = "10m"
	}
	m, err := s.sandboxes.SandboxMetrics(r.Context(), principal(r), chi.URLParam(r, "id"), rng)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	points := make([]metricPointJSON, len(m.Points))
	for i, p := range m.Points {
		points[i] = metricPointJSON{Timestamp: p.Time.UTC(), CPUPct: p.CPUPct, CPUPctMax: p.CPUPctMax, MemBytes: p.MemBytes, MemMax: p.MemMax, DiskBytes: p.DiskBytes}
		if g := p.Guest; g != nil {
			points[i].Guest = &guestMetricsJSON{CPUPct: g.CPUPct, CPUCount: g.CPUCount, MemUsed: g.MemUsed, MemTotal: g.MemTotal,
				MemCache: g.MemCache, DiskUsed: g.DiskUsed, DiskTotal: g.DiskTotal}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"sandbox_id": m.SandboxID, "range": m.Range, "step_ms": m.Step.Milliseconds(), "live": m.Live, "points": points})
}

type holdingJSON struct {
	Timestamp *time.Time `json:"timestamp,omitempty"`
	Running   int        `json:"running"`
	Paused    int        `json:"paused"`
	VCPUs     int        `json:"vcpus"`
	MemoryMB  int        `json:"memory_mb"`
}

func holding(h sandboxes.TeamHolding) holdingJSON {
	out := holdingJSON{Running: h.Running, Paused: h.Paused, VCPUs: h.VCPUs, MemoryMB: h.MemoryMB}
	if !h.Time.IsZero() {
		t := h.Time.UTC()
		out.Timestamp = &t
	}
	return out
}

func (s *Server) teamStats(w http.ResponseWriter, r *http.Request) {
	rng := r.URL.Query().Get("range")
	if rng == "" {
		rng = "1h"
	}
	st, err := s.sandboxes.TeamStats(r.Context(), principal(r), rng)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	points := make([]holdingJSON, len(st.Points))
	for i, p := range st.Points {
		points[i] = holding(p)
	}
	writeJSON(w, http.StatusOK, map[string]any{"range": st.Range, "step_ms": st.Step.Milliseconds(), "now": holding(st.Now), "peak": holding(st.Peak), "points": points})
}

// usage is GET /v1/usage?from=YYYY-MM-DD&to=YYYY-MM-DD (UTC days, both included;
// default the last 30 days).
func (s *Server) usage(w http.ResponseWriter, r *http.Request) {
	today := time.Now().UTC().Truncate(24 * time.Hour)
	from, to := today.AddDate(0, 0, -29), today
	for name, dst := range map[string]*time.Time{"from": &from, "to": &to} {
		if v := r.URL.Query().Get(name); v != "" {
			d, err := time.Parse(time.DateOnly, v)
			if err != nil {
				writeError(w, http.StatusBadRequest, "invalid_request", name+": want a date as YYYY-MM-DD")
				return
			}
			*dst = d
		}
	}
	days, err := s.sandboxes.Usage(r.Context(), principal(r), from, to)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	type dayJSON struct {
		Day         string  `json:"day"`
		VCPUSeconds float64 `json:"vcpu_seconds"`
		GiBSeconds  float64 `json:"gib_seconds"`
	}
	out := make([]dayJSON, len(days))
	for i, d := range days {
		out[i] = dayJSON{Day: d.Day.Format(time.DateOnly), VCPUSeconds: d.VCPUSeconds, GiBSeconds: d.GiBSeconds}
	}
	writeJSON(w, http.StatusOK, map[string]any{"team_id": principal(r).TeamID, "days": out})
}
