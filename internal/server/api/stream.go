package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/go-chi/chi/v5"
	"github.com/wrennhq/wrenn/internal/server/service"
)

// streamMessage is one WebSocket message of …/exec/stream, server to client:
// {"type":"start","pid":N}, {"type":"stdout"|"stderr","data":"<base64>"},
// {"type":"exit","exit_code":N,"status":"…","timed_out":bool}, {"type":"error","message":"…"}.
type streamMessage struct {
	Type     string `json:"type"`
	PID      uint32 `json:"pid,omitempty"`
	Data     []byte `json:"data,omitempty"`
	ExitCode *int   `json:"exit_code,omitempty"`
	Status   string `json:"status,omitempty"`
	TimedOut bool   `json:"timed_out,omitempty"`
	Message  string `json:"message,omitempty"`
}

// execStream upgrades to a WebSocket; the client's first message is the command
// ({"cmd","args","timeout_sec"}), then events stream until exit or error.
func (s *Server) execStream(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	id := chi.URLParam(r, "id")
	// Refuse before upgrading when the sandbox is not the caller's, with a normal 404.
	if _, err := s.svc.GetSandbox(r.Context(), p, id); err != nil {
		s.fail(w, r, err)
		return
	}
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept has answered the request
	}
	defer conn.CloseNow()
	ctx := r.Context()
	var req struct {
		Cmd        string   `json:"cmd"`
		Args       []string `json:"args"`
		TimeoutSec int      `json:"timeout_sec"`
	}
	readCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = wsjson.Read(readCtx, conn, &req)
	cancel()
	if err != nil {
		_ = conn.Close(websocket.StatusPolicyViolation, "the first message must be the command as JSON")
		return
	}
	emit := func(ev service.ExecEvent) error {
		m := streamMessage{}
		switch {
		case ev.Exited:
			code := ev.ExitCode
			m = streamMessage{Type: "exit", ExitCode: &code, Status: ev.Status, TimedOut: ev.TimedOut}
		case ev.PID != 0:
			m = streamMessage{Type: "start", PID: ev.PID}
		case ev.Stdout != nil:
			m = streamMessage{Type: "stdout", Data: ev.Stdout}
		case ev.Stderr != nil:
			m = streamMessage{Type: "stderr", Data: ev.Stderr}
		}
		return wsjson.Write(ctx, conn, m)
	}
	if err := s.svc.ExecStream(ctx, p, id, req.Cmd, req.Args, req.TimeoutSec, emit); err != nil {
		msg := err.Error()
		if !errors.Is(err, service.ErrInvalid) && !errors.Is(err, service.ErrNotFound) && !errors.Is(err, service.ErrConflict) {
			s.log.Error("exec stream", "sandbox", id, "err", err)
			msg = "internal error"
		}
		_ = wsjson.Write(ctx, conn, streamMessage{Type: "error", Message: msg})
		_ = conn.Close(websocket.StatusInternalError, "exec failed")
		return
	}
	_ = conn.Close(websocket.StatusNormalClosure, "")
}
