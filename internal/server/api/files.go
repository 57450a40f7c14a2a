package api

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"
	"github.com/wrennhq/wrenn/internal/hostproto"
)

// dirRoutes are the sandbox filesystem's routes besides the file transfers (which
// stream: fileRoutes). They sit beside files/read and files/write and, like them,
// take the guest path in the `path` query parameter, so every files route names its
// target the same way and a DELETE needs no body:
//
//	GET    /sandboxes/{id}/files/list?path=&depth=  the entries below a directory
//	POST   /sandboxes/{id}/files/mkdir?path=        a directory (and its parents)
//	DELETE /sandboxes/{id}/files?path=              a file, or a directory with its content
func (s *Server) dirRoutes(r chi.Router) {
	r.Get("/sandboxes/{id}/files/list", s.listDir)
	r.Post("/sandboxes/{id}/files/mkdir", s.makeDir)
	r.Delete("/sandboxes/{id}/files", s.removePath)
}

func (s *Server) listDir(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	depth := 1
	if v := q.Get("depth"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > hostproto.MaxListDepth {
			writeError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("depth must be a number in 1..%d", hostproto.MaxListDepth))
			return
		}
		depth = n
	}
	list, err := s.sandboxes.ListDir(r.Context(), principal(r), chi.URLParam(r, "id"), q.Get("path"), depth)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) makeDir(w http.ResponseWriter, r *http.Request) {
	e, err := s.sandboxes.MakeDir(r.Context(), principal(r), chi.URLParam(r, "id"), r.URL.Query().Get("path"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, e)
}

func (s *Server) removePath(w http.ResponseWriter, r *http.Request) {
	if err := s.sandboxes.RemovePath(r.Context(), principal(r), chi.URLParam(r, "id"), r.URL.Query().Get("path")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
