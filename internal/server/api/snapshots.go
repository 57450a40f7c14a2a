package api

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"
)

// snapshotRoutes serve a team's snapshots: sandboxes frozen under a name, which
// POST /v1/sandboxes then names as its template.
func (s *Server) snapshotRoutes(r chi.Router) {
	r.Post("/snapshots", s.createSnapshot)
	r.Get("/snapshots", s.listSnapshots)
	r.Get("/snapshots/{name}", s.getSnapshot)
	r.Delete("/snapshots/{name}", s.deleteSnapshot)
}

// createSnapshot takes {"sandbox_id", "name"}; ?overwrite=true replaces a snapshot of
// that name.
func (s *Server) createSnapshot(w http.ResponseWriter, r *http.Request) {
	var req struct {
		SandboxID string `json:"sandbox_id"`
		Name      string `json:"name"`
	}
	if !decode(w, r, &req) {
		return
	}
	overwrite := false
	if v := r.URL.Query().Get("overwrite"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("overwrite must be true or false, not %q", v))
			return
		}
		overwrite = b
	}
	if req.SandboxID == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "sandbox_id is required")
		return
	}
	snap, err := s.sandboxes.CreateSnapshot(r.Context(), principal(r), req.SandboxID, req.Name, overwrite)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, snap)
}

func (s *Server) listSnapshots(w http.ResponseWriter, r *http.Request) {
	list, err := s.sandboxes.ListSnapshots(r.Context(), principal(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"snapshots": list})
}

func (s *Server) getSnapshot(w http.ResponseWriter, r *http.Request) {
	snap, err := s.sandboxes.GetSnapshot(r.Context(), principal(r), chi.URLParam(r, "name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, snap)
}

func (s *Server) deleteSnapshot(w http.ResponseWriter, r *http.Request) {
	if err := s.sandboxes.DeleteSnapshot(r.Context(), principal(r), chi.URLParam(r, "name")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
