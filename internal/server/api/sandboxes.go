package api

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/wrennhq/wrenn/internal/server/sandboxes"
)

// createSandbox answers 201 with the sandbox running, or with "wait": false 202 with
// it starting as soon as it is placed, its host booting it in the background.
func (s *Server) createSandbox(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Template            string            `json:"template"`
		VCPUs               int               `json:"vcpus"`
		MemoryMB            int               `json:"memory_mb"`
		TimeoutSec          int               `json:"timeout_sec"`
		AllowInternetAccess *bool             `json:"allow_internet_access"`
		AllowPublicTraffic  *bool             `json:"allow_public_traffic"`
		EnvVars             map[string]string `json:"env_vars"`
		Metadata            map[string]string `json:"metadata"`
		Wait                *bool             `json:"wait"`
	}
	if !decode(w, r, &req) {
		return
	}
	spec := sandboxes.SandboxSpec{
		Template: req.Template, VCPUs: req.VCPUs, MemoryMB: req.MemoryMB, TimeoutSec: req.TimeoutSec,
		AllowInternetAccess: req.AllowInternetAccess, AllowPublicTraffic: req.AllowPublicTraffic, EnvVars: req.EnvVars, Metadata: req.Metadata,
	}
	create, status := s.sandboxes.CreateSandbox, http.StatusCreated
	if req.Wait != nil && !*req.Wait {
		create, status = s.sandboxes.StartSandbox, http.StatusAccepted
	}
	sb, err := create(r.Context(), principal(r), spec)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, status, sb)
}

// sandboxLogs reads the sandbox's console log: ?offset= (bytes; negative: from the
// end) and ?limit= (bytes, 1..1 MiB; default the most).
func (s *Server) sandboxLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var offset, limit int64
	for _, p := range []struct {
		name string
		v    *int64
	}{{"offset", &offset}, {"limit", &limit}} {
		if v := q.Get(p.name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				writeError(w, http.StatusBadRequest, "invalid_request", p.name+" must be a whole number of bytes")
				return
			}
			*p.v = n
		}
	}
	if q.Has("limit") && limit == 0 {
		writeError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("limit must be 1..%d", sandboxes.MaxConsoleRead))
		return
	}
	log, err := s.sandboxes.SandboxConsoleLog(r.Context(), principal(r), chi.URLParam(r, "id"), offset, limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, log)
}

func (s *Server) listSandboxes(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := sandboxes.ListFilter{}
	if st := q.Get("state"); st != "" {
		f.States = strings.Split(st, ",")
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > sandboxes.MaxList {
			writeError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("limit must be a number in 1..%d", sandboxes.MaxList))
			return
		}
		f.Limit = n
	}
	list, err := s.sandboxes.ListSandboxes(r.Context(), principal(r), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	body, err := list.JSON()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// The listing's JSON may be shared with concurrent requests: written, not re-encoded.
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, `{"sandboxes":`)
	_, _ = w.Write(body)
	_, _ = io.WriteString(w, "}\n")
}

func (s *Server) getSandbox(w http.ResponseWriter, r *http.Request) {
	sb, err := s.sandboxes.GetSandbox(r.Context(), principal(r), chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sb)
}

func (s *Server) destroySandbox(w http.ResponseWriter, r *http.Request) {
	if err := s.sandboxes.DestroySandbox(r.Context(), principal(r), chi.URLParam(r, "id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) pauseSandbox(w http.ResponseWriter, r *http.Request) {
	sb, err := s.sandboxes.PauseSandbox(r.Context(), principal(r), chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sb)
}

// resumeSandbox takes an optional body, {"timeout_sec": n}: a new idle timeout.
func (s *Server) resumeSandbox(w http.ResponseWriter, r *http.Request) {
	var req struct {
		TimeoutSec int `json:"timeout_sec"`
	}
	if hasBody(r) && !decode(w, r, &req) {
		return
	}
	sb, err := s.sandboxes.ResumeSandbox(r.Context(), principal(r), chi.URLParam(r, "id"), req.TimeoutSec)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sb)
}

// hasBody reports whether a request whose body is optional sent one: a declared
// length, or a chunked body that does not end at once (peeked and put back; a body
// that fails to arrive counts as sent, so decode reports why).
func hasBody(r *http.Request) bool {
	if r.ContentLength >= 0 {
		return r.ContentLength > 0
	}
	br := bufio.NewReader(r.Body)
	if _, err := br.Peek(1); errors.Is(err, io.EOF) {
		return false
	}
	r.Body = struct {
		io.Reader
		io.Closer
	}{br, r.Body}
	return true
}

// execRequest is a command to run, as POST …/exec and the exec stream take it.
type execRequest struct {
	Cmd        string            `json:"cmd"`
	Args       []string          `json:"args"`
	TimeoutSec int               `json:"timeout_sec"`
	EnvVars    map[string]string `json:"env_vars"`
	Cwd        string            `json:"cwd"`
}

func (e execRequest) command() sandboxes.Command {
	return sandboxes.Command{Cmd: e.Cmd, Args: e.Args, TimeoutSec: e.TimeoutSec, Env: e.EnvVars, Cwd: e.Cwd}
}

func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	var req runRequest
	if !decode(w, r, &req) {
		return
	}
	res, err := s.sandboxes.Exec(r.Context(), principal(r), chi.URLParam(r, "id"), req.command(), req.MaxOutputBytes)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := writeExecResult(w, res); err != nil {
		s.log.Debug("exec answer not delivered", "err", err) // the client left
	}
}

func (s *Server) ping(w http.ResponseWriter, r *http.Request) {
	if err := s.sandboxes.Ping(r.Context(), principal(r), chi.URLParam(r, "id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// maxPathPart bounds a multipart upload's path field: PATH_MAX.
const maxPathPart = 4096

// writeFile takes a multipart upload (part "file"; the target in the `path` query or
// form field) or a raw octet-stream body with `path` in the query, streamed through.
func (s *Server) writeFile(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Query().Get("path")
	var body io.Reader = r.Body
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		mr, err := r.MultipartReader()
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", "multipart body: "+err.Error())
			return
		}
		for {
			part, err := mr.NextPart()
			if bodyTimedOut(w, err) {
				return
			}
			if err != nil {
				writeError(w, http.StatusBadRequest, "invalid_request", "multipart body has no part named file")
				return
			}
			if part.FormName() == "path" && path == "" {
				// A path longer than PATH_MAX is refused, never cut to a different one.
				b, err := io.ReadAll(io.LimitReader(part, maxPathPart+1))
				if bodyTimedOut(w, err) {
					return
				}
				if len(b) > maxPathPart {
					writeError(w, http.StatusBadRequest, "invalid_request", "multipart part path is longer than 4096 bytes")
					return
				}
				path = string(b)
				continue
			}
			if part.FormName() == "file" {
				body = part
				break
			}
		}
	}
	n, err := s.sandboxes.WriteFile(r.Context(), principal(r), chi.URLParam(r, "id"), path, body)
	if err != nil {
		if bodyTimedOut(w, err) {
			return
		}
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"path": path, "size": n})
}

func (s *Server) readFile(w http.ResponseWriter, r *http.Request) {
	start := func() {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
	}
	err := s.sandboxes.ReadFile(r.Context(), principal(r), chi.URLParam(r, "id"), r.URL.Query().Get("path"), start, w)
	if err != nil && w.Header().Get("Content-Type") != "application/octet-stream" {
		s.fail(w, r, err) // nothing sent yet: a proper error
	} else if err != nil {
		s.log.Warn("read file stream broke", "err", err) // mid-stream: the client sees a short body
	}
}
