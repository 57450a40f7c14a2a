package api

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/wrennhq/wrenn/internal/server/accounts"
	"github.com/wrennhq/wrenn/internal/server/core"
	"github.com/wrennhq/wrenn/internal/server/sandboxes"
)

// adminRoutes are the platform administrators' routes: every team, user, template and
// sandbox. Mounted under /v1 in the group of users' tokens (an API key is refused
// before it is looked at). Each route refuses anyone else with 403 before reading its
// parameters, so a non-administrator learns nothing from them; the services check
// again, as they are called from elsewhere too.
func (s *Server) adminRoutes(r chi.Router) {
	r.Group(func(r chi.Router) {
		r.Use(adminOnly)
		r.Get("/admin/teams", s.adminTeams)
		r.Put("/admin/teams/{id}/byoc", s.putTeamBYOC)
		// The older form, kept for existing clients (deprecated in api/openapi.yaml).
		r.Post("/admin/teams/{id}/byoc", s.postTeamBYOC)
		r.Get("/admin/users", s.adminUsers)
		r.Get("/admin/templates", s.adminTemplates)
		r.Get("/admin/templates/{name}", s.adminTemplate)
		r.Delete("/admin/templates/{name}", s.deleteAdminTemplate)
		r.Get("/admin/sandboxes", s.adminSandboxes)
	})
}

// adminOnly answers 403 to anyone but a platform administrator.
func adminOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := principal(r).RequireAdmin(); err != nil {
			writeError(w, http.StatusForbidden, "forbidden", err.Error())
			return
		}
		next.ServeHTTP(w, r)
	})
}

// pageQuery reads a listing's limit (the service checks its range) and cursor.
func pageQuery(v url.Values) (limit int, cursor string, err error) {
	if s := v.Get("limit"); v.Has("limit") {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 {
			return 0, "", fmt.Errorf("limit must be 1 to %d, not %q", core.MaxPageLimit, s)
		}
	}
	return limit, v.Get("cursor"), nil
}

// boolQuery reads a true|false parameter; absent is false.
func boolQuery(v url.Values, name string) (bool, error) {
	s := v.Get(name)
	if !v.Has(name) {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("%s must be true or false, not %q", name, s)
	}
	return b, nil
}

func (s *Server) adminTeams(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, cursor, err := pageQuery(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	deleted, err := boolQuery(q, "include_deleted")
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	page, err := s.accounts.AdminTeams(r.Context(), principal(r), accounts.AdminTeamQuery{Limit: limit, Cursor: cursor, IncludeDeleted: deleted})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) adminUsers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, cursor, err := pageQuery(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	page, err := s.accounts.AdminUsers(r.Context(), principal(r), accounts.AdminUserQuery{Limit: limit, Cursor: cursor, EmailPrefix: q.Get("email")})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

// putTeamBYOC takes {"byoc": bool}, required: a PUT states the whole setting, so an
// empty body is refused rather than read as false (the older POST reads it so).
func (s *Server) putTeamBYOC(w http.ResponseWriter, r *http.Request) {
	var req struct {
		BYOC *bool `json:"byoc"`
	}
	if !decode(w, r, &req) {
		return
	}
	if req.BYOC == nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "byoc is required (true or false)")
		return
	}
	if err := s.accounts.SetTeamBYOC(r.Context(), principal(r), chi.URLParam(r, "id"), *req.BYOC); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// postTeamBYOC is the deprecated form of putTeamBYOC: an absent byoc is false.
func (s *Server) postTeamBYOC(w http.ResponseWriter, r *http.Request) {
	var req struct {
		BYOC bool `json:"byoc"`
	}
	if !decode(w, r, &req) {
		return
	}
	if err := s.accounts.SetTeamBYOC(r.Context(), principal(r), chi.URLParam(r, "id"), req.BYOC); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) adminTemplates(w http.ResponseWriter, r *http.Request) {
	list, err := s.sandboxes.AdminTemplates(r.Context(), principal(r), r.URL.Query().Get("team_id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"templates": list})
}

func (s *Server) adminTemplate(w http.ResponseWriter, r *http.Request) {
	t, err := s.sandboxes.AdminTemplate(r.Context(), principal(r), chi.URLParam(r, "name"), r.URL.Query().Get("team_id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) deleteAdminTemplate(w http.ResponseWriter, r *http.Request) {
	if err := s.sandboxes.DeleteAdminTemplate(r.Context(), principal(r), chi.URLParam(r, "name"), r.URL.Query().Get("team_id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) adminSandboxes(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, cursor, err := pageQuery(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	query := sandboxes.AdminSandboxQuery{TeamID: q.Get("team_id"), HostID: q.Get("host_id"), Limit: limit, Cursor: cursor}
	if st := q.Get("state"); st != "" {
		query.States = strings.Split(st, ",")
	}
	page, err := s.sandboxes.AdminSandboxes(r.Context(), principal(r), query)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}
