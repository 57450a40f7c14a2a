package api

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/wrennhq/wrenn/internal/server/accounts"
)

// quotaRoutes are a team's quota: its members (and platform administrators) read it,
// platform administrators change it. Mounted under /v1, users' tokens only.
func (s *Server) quotaRoutes(r chi.Router) {
	r.Get("/teams/{id}/quotas", s.getTeamQuota)
	r.Patch("/teams/{id}/quotas", s.setTeamQuota)
}

// quotaLimit is one limit of a team: in force (0: none), used, and the team's own
// override (null: the server's default).
type quotaLimit struct {
	Limit    int  `json:"limit"`
	Used     int  `json:"used"`
	Override *int `json:"override"`
}

type quotaResponse struct {
	TeamID    string     `json:"team_id"`
	Sandboxes quotaLimit `json:"sandboxes"`
	VCPUs     quotaLimit `json:"vcpus"`
	MemoryMB  quotaLimit `json:"memory_mb"`
	APIKeys   quotaLimit `json:"api_keys"`
}

func quotaBody(q *accounts.TeamQuota) quotaResponse {
	return quotaResponse{
		TeamID:    q.TeamID,
		Sandboxes: quotaLimit{q.Limits.Sandboxes, q.Used.Sandboxes, q.Overrides.Sandboxes},
		VCPUs:     quotaLimit{q.Limits.VCPUs, q.Used.VCPUs, q.Overrides.VCPUs},
		MemoryMB:  quotaLimit{q.Limits.MemoryMB, q.Used.MemoryMB, q.Overrides.MemoryMB},
		APIKeys:   quotaLimit{q.Limits.APIKeys, q.Used.APIKeys, q.Overrides.APIKeys},
	}
}

func (s *Server) getTeamQuota(w http.ResponseWriter, r *http.Request) {
	q, err := s.accounts.TeamQuota(r.Context(), principal(r), chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, quotaBody(q))
}

// quotaField is one limit of a PATCH: absent leaves it, null returns it to the
// server's default, a number overrides it.
type quotaField accounts.QuotaChange

func (f *quotaField) UnmarshalJSON(b []byte) error {
	f.Set = true
	if bytes.Equal(b, []byte("null")) {
		f.Limit = nil
		return nil
	}
	var n int
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	f.Limit = &n
	return nil
}

func (s *Server) setTeamQuota(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Sandboxes quotaField `json:"sandboxes"`
		VCPUs     quotaField `json:"vcpus"`
		MemoryMB  quotaField `json:"memory_mb"`
		APIKeys   quotaField `json:"api_keys"`
	}
	if !decode(w, r, &req) {
		return
	}
	q, err := s.accounts.SetTeamQuota(r.Context(), principal(r), chi.URLParam(r, "id"), accounts.QuotaChanges{
		Sandboxes: accounts.QuotaChange(req.Sandboxes), VCPUs: accounts.QuotaChange(req.VCPUs),
		MemoryMB: accounts.QuotaChange(req.MemoryMB), APIKeys: accounts.QuotaChange(req.APIKeys),
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, quotaBody(q))
}
