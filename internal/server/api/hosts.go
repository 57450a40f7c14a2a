package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/wrennhq/wrenn/internal/hostproto"
	"github.com/wrennhq/wrenn/internal/server/hosts"
)

// hostRoutes are the hosts' own endpoints (registration, token refresh, heartbeat)
// and the routes users manage hosts with.
// They are mounted under /v1.
func (s *Server) hostRoutes(r chi.Router) {
	r.Post(strings.TrimPrefix(hostproto.RegisterPath, "/v1"), s.registerHost)
	r.Post(strings.TrimPrefix(hostproto.RefreshPath, "/v1"), s.refreshHost)
	r.Post(strings.TrimPrefix(hostproto.HeartbeatPath, "/v1"), s.heartbeat)
	r.Group(func(r chi.Router) {
		r.Use(s.authenticate(false))
		r.Post("/hosts", s.createHost)
		r.Get("/hosts", s.listHosts)
		r.Get("/hosts/{id}", s.getHost)
		r.Delete("/hosts/{id}", s.deleteHost)
		r.Put("/hosts/{id}/tags/{tag}", s.tagHost)
		r.Delete("/hosts/{id}/tags/{tag}", s.tagHost)
	})
}

func (s *Server) createHost(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name     string `json:"name"`
		Platform bool   `json:"platform"`
	}
	if !decode(w, r, &req) {
		return
	}
	h, err := s.hosts.CreateHost(r.Context(), principal(r), req.Name, req.Platform)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, h)
}

func (s *Server) listHosts(w http.ResponseWriter, r *http.Request) {
	list, err := s.hosts.ListHosts(r.Context(), principal(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"hosts": list})
}

func (s *Server) getHost(w http.ResponseWriter, r *http.Request) {
	h, err := s.hosts.GetHost(r.Context(), principal(r), chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, h)
}

// deleteHost answers 409 with the sandboxes still on the host unless ?force=true.
func (s *Server) deleteHost(w http.ResponseWriter, r *http.Request) {
	force := r.URL.Query().Get("force") == "true"
	err := s.hosts.DeleteHost(r.Context(), principal(r), chi.URLParam(r, "id"), force)
	var busy *hosts.HostBusyError
	if errors.As(err, &busy) {
		var body struct {
			errorBody
			Sandboxes []string `json:"sandboxes"`
		}
		body.Error.Code, body.Error.Message, body.Sandboxes = "conflict", err.Error(), busy.Sandboxes
		writeJSON(w, http.StatusConflict, body)
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) tagHost(w http.ResponseWriter, r *http.Request) {
	if err := s.hosts.TagHost(r.Context(), principal(r), chi.URLParam(r, "id"), chi.URLParam(r, "tag"), r.Method == http.MethodDelete); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) registerHost(w http.ResponseWriter, r *http.Request) {
	var req hostproto.RegisterRequest
	if !decode(w, r, &req) {
		return
	}
	resp, err := s.hosts.RegisterHost(r.Context(), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, resp)
}

func (s *Server) refreshHost(w http.ResponseWriter, r *http.Request) {
	var req hostproto.RefreshRequest
	if !decode(w, r, &req) {
		return
	}
	tokens, err := s.hosts.RefreshHostToken(r.Context(), req.RefreshToken)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, tokens)
}

func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request) {
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		writeError(w, http.StatusUnauthorized, "unauthorized", "send Authorization: Bearer <host token>")
		return
	}
	hostID, err := s.hosts.HostFromToken(strings.TrimSpace(bearer))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var req hostproto.HeartbeatRequest
	if !decode(w, r, &req) {
		return
	}
	resp, err := s.hosts.Heartbeat(r.Context(), hostID, req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}
