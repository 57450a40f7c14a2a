package api

import (
	"encoding/base64"
	"net/http"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/wrennhq/wrenn/internal/server/service"
)

func (s *Server) createSandbox(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Template            string            `json:"template"`
		VCPUs               int               `json:"vcpus"`
		MemoryMB            int               `json:"memory_mb"`
		TimeoutSec          int               `json:"timeout_sec"`
		AllowInternetAccess *bool             `json:"allow_internet_access"`
		EnvVars             map[string]string `json:"env_vars"`
		Metadata            map[string]string `json:"metadata"`
	}
	if !decode(w, r, &req) {
		return
	}
	sb, err := s.svc.CreateSandbox(r.Context(), principal(r), service.SandboxSpec{
		Template: req.Template, VCPUs: req.VCPUs, MemoryMB: req.MemoryMB, TimeoutSec: req.TimeoutSec,
		AllowInternetAccess: req.AllowInternetAccess, EnvVars: req.EnvVars, Metadata: req.Metadata,
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, sb)
}

func (s *Server) listSandboxes(w http.ResponseWriter, r *http.Request) {
	list, err := s.svc.ListSandboxes(r.Context(), principal(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"sandboxes": list})
}

func (s *Server) getSandbox(w http.ResponseWriter, r *http.Request) {
	sb, err := s.svc.GetSandbox(r.Context(), principal(r), chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sb)
}

func (s *Server) destroySandbox(w http.ResponseWriter, r *http.Request) {
	if err := s.svc.DestroySandbox(r.Context(), principal(r), chi.URLParam(r, "id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// execResponse carries output as text when it is UTF-8, else as base64 (encoding says
// which), so binary output survives JSON.
type execResponse struct {
	Stdout     string `json:"stdout"`
	Stderr     string `json:"stderr"`
	ExitCode   int    `json:"exit_code"`
	DurationMS int64  `json:"duration_ms"`
	TimedOut   bool   `json:"timed_out"`
	Encoding   string `json:"encoding"`
}

func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Cmd        string   `json:"cmd"`
		Args       []string `json:"args"`
		TimeoutSec int      `json:"timeout_sec"`
	}
	if !decode(w, r, &req) {
		return
	}
	res, err := s.svc.Exec(r.Context(), principal(r), chi.URLParam(r, "id"), req.Cmd, req.Args, req.TimeoutSec)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := execResponse{ExitCode: res.ExitCode, DurationMS: res.DurationMS, TimedOut: res.TimedOut, Encoding: "utf-8"}
	if utf8.Valid(res.Stdout) && utf8.Valid(res.Stderr) {
		out.Stdout, out.Stderr = string(res.Stdout), string(res.Stderr)
	} else {
		out.Encoding = "base64"
		out.Stdout, out.Stderr = base64.StdEncoding.EncodeToString(res.Stdout), base64.StdEncoding.EncodeToString(res.Stderr)
	}
	writeJSON(w, http.StatusOK, out)
}
