package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/go-chi/chi/v5"
	"github.com/wrennhq/wrenn/internal/lifecycle"
	"github.com/wrennhq/wrenn/internal/server/core"
	"github.com/wrennhq/wrenn/internal/server/sandboxes"
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

// streamStart is the client's first message: the command, and whether it gets stdin
// or a terminal.
type streamStart struct {
	execRequest
	Stdin bool               `json:"stdin"`
	PTY   *sandboxes.PTYSize `json:"pty"`
}

// clientMessage is any later client message: {"type":"stdin","data":"<base64>"},
// {"type":"eof"} or {"type":"resize","cols":N,"rows":N}.
type clientMessage struct {
	Type string `json:"type"`
	Data []byte `json:"data"`
	Cols uint32 `json:"cols"`
	Rows uint32 `json:"rows"`
}

// maxStreamMessage bounds one client message (stdin arrives in chunks).
const maxStreamMessage = 1 << 20

// execStream upgrades to a WebSocket; the client's first message is the command, then
// events stream until exit or error while the client may send input and resizes.
func (s *Server) execStream(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	id := chi.URLParam(r, "id")
	// Refuse before upgrading when the sandbox is not the caller's (a normal 404) or
	// not running, and answer a plain request in the API's error shape.
	sb, err := s.sandboxes.GetSandbox(r.Context(), p, id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if sb.Status != lifecycle.Running {
		writeError(w, http.StatusConflict, "conflict", fmt.Sprintf("sandbox %s is %s", id, sb.Status))
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		writeError(w, http.StatusBadRequest, "invalid_request", "this route is a WebSocket: send Upgrade: websocket")
		return
	}
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept has answered the request
	}
	defer conn.CloseNow()
	conn.SetReadLimit(maxStreamMessage)
	// ctx ends when the client goes away: the agent then stops the command's stream
	// (and kills it when it has stdin or a pty, since nobody can drive it any more).
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var writeMu sync.Mutex
	send := func(m streamMessage) error {
		writeMu.Lock()
		defer writeMu.Unlock()
		b, err := json.Marshal(m)
		if err != nil {
			return err
		}
		return conn.Write(ctx, websocket.MessageText, b)
	}
	fail := func(err error) {
		msg := err.Error()
		if !errors.Is(err, core.ErrInvalid) && !errors.Is(err, core.ErrNotFound) && !errors.Is(err, core.ErrConflict) {
			s.log.Error("exec stream", "sandbox", id, "err", err)
			msg = "internal error"
		}
		_ = send(streamMessage{Type: "error", Message: msg})
		_ = conn.Close(websocket.StatusPolicyViolation, "exec failed")
	}

	var start streamStart
	readCtx, readCancel := context.WithTimeout(ctx, 30*time.Second)
	err = readJSON(readCtx, conn, &start)
	readCancel()
	if err != nil {
		fail(fmt.Errorf("%w: the first message must be the command as JSON: %v", core.ErrInvalid, err))
		return
	}
	cmd := start.command()
	cmd.Stdin, cmd.PTY = start.Stdin, start.PTY
	sess, err := s.sandboxes.StartExec(ctx, p, id, cmd)
	if err != nil {
		fail(err)
		return
	}
	defer sess.Close()
	if err := send(streamMessage{Type: "start", PID: sess.PID()}); err != nil {
		return
	}
	go func() {
		defer cancel()
		for {
			var m clientMessage
			if err := readJSON(ctx, conn, &m); err != nil {
				if ctx.Err() == nil && websocket.CloseStatus(err) == -1 {
					_ = send(streamMessage{Type: "error", Message: "bad message: " + err.Error()})
				}
				return
			}
			if err := s.clientInput(ctx, sess, m); err != nil {
				msg := err.Error()
				if !errors.Is(err, core.ErrInvalid) && !errors.Is(err, core.ErrNotFound) {
					s.log.Warn("exec stream input", "sandbox", id, "err", err)
				}
				_ = send(streamMessage{Type: "error", Message: msg})
			}
		}
	}()
	err = sess.Events(func(ev sandboxes.ExecEvent) error {
		switch {
		case ev.Exited:
			code := ev.ExitCode
			return send(streamMessage{Type: "exit", ExitCode: &code, Status: ev.Status, TimedOut: ev.TimedOut})
		case ev.Stdout != nil:
			return send(streamMessage{Type: "stdout", Data: ev.Stdout})
		default:
			return send(streamMessage{Type: "stderr", Data: ev.Stderr})
		}
	})
	if err != nil {
		if ctx.Err() == nil {
			fail(err)
		}
		return
	}
	_ = conn.Close(websocket.StatusNormalClosure, "")
}

func (s *Server) clientInput(ctx context.Context, sess *sandboxes.ExecSession, m clientMessage) error {
	switch m.Type {
	case "stdin":
		return sess.Input(ctx, m.Data, false)
	case "eof":
		return sess.Input(ctx, m.Data, true)
	case "resize":
		return sess.Resize(ctx, sandboxes.PTYSize{Cols: m.Cols, Rows: m.Rows})
	}
	return fmt.Errorf("%w: unknown message type %q (want stdin, eof or resize)", core.ErrInvalid, m.Type)
}

// readJSON reads one text or binary message as strict JSON.
func readJSON(ctx context.Context, conn *websocket.Conn, v any) error {
	_, b, err := conn.Read(ctx)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
