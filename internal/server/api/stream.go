package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/go-chi/chi/v5"
	"github.com/wrennhq/wrenn/internal/httpjson"
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
	if err := sandboxes.NotRunning(sb); err != nil {
		s.fail(w, r, err)
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
	ws := &execSocket{conn: conn, ctx: ctx, id: id, log: s.log, idle: s.streamIdle}
	// The upgrade left the server's deadlines behind: a client that stops answering
	// pings or taking output is cut off after ws.idle instead of holding the stream.
	go ws.keepAlive(cancel)

	var start streamStart
	if err := readStart(ctx, conn, execStartTimeout, &start); err != nil {
		ws.fail(fmt.Errorf("%w: the first message must be the command as JSON: %v", core.ErrInvalid, err))
		return
	}
	cmd := start.command()
	cmd.Stdin, cmd.PTY = start.Stdin, start.PTY
	sess, err := s.sandboxes.StartExec(ctx, p, id, cmd)
	if err != nil {
		ws.fail(err)
		return
	}
	defer sess.Close()
	if err := ws.send(streamMessage{Type: "start", PID: sess.PID()}); err != nil {
		return
	}
	go func() {
		defer cancel()
		ws.forwardInput(sess)
	}()
	if err := ws.forwardEvents(sess); err != nil {
		if ctx.Err() == nil {
			ws.fail(err)
		}
		return
	}
	_ = conn.Close(websocket.StatusNormalClosure, "")
}

// execSocket is one exec stream's WebSocket: writes from the event and input loops
// are serialised.
type execSocket struct {
	conn    *websocket.Conn
	ctx     context.Context
	id      string // the sandbox
	log     *slog.Logger
	idle    time.Duration
	writeMu sync.Mutex
}

func (ws *execSocket) send(m streamMessage) error {
	ws.writeMu.Lock()
	defer ws.writeMu.Unlock()
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ws.ctx, ws.idle)
	defer cancel()
	return ws.conn.Write(ctx, websocket.MessageText, b)
}

// keepAlive pings the client every idle/2 and ends the stream (cancel) when a pong
// does not come within idle. The reads of forwardInput, or of the first message,
// take the pongs.
func (ws *execSocket) keepAlive(cancel func()) {
	t := time.NewTicker(ws.idle / 2)
	defer t.Stop()
	for {
		select {
		case <-ws.ctx.Done():
			return
		case <-t.C:
		}
		ctx, done := context.WithTimeout(ws.ctx, ws.idle)
		err := ws.conn.Ping(ctx)
		done()
		if err != nil {
			cancel()
			return
		}
	}
}

// fail sends the error (the user's own, or "internal error" logged here) and closes.
func (ws *execSocket) fail(err error) {
	msg := err.Error()
	if !errors.Is(err, core.ErrInvalid) && !errors.Is(err, core.ErrNotFound) && !errors.Is(err, core.ErrConflict) {
		ws.log.Error("exec stream", "sandbox", ws.id, "err", err)
		msg = "internal error"
	}
	_ = ws.send(streamMessage{Type: "error", Message: msg})
	_ = ws.conn.Close(websocket.StatusPolicyViolation, "exec failed")
}

// forwardInput passes the client's stdin, eof and resizes to the command until the
// client goes away or sends something unreadable.
func (ws *execSocket) forwardInput(sess *sandboxes.ExecSession) {
	for {
		var m clientMessage
		if err := readJSON(ws.ctx, ws.conn, &m); err != nil {
			if ws.ctx.Err() == nil && websocket.CloseStatus(err) == -1 {
				_ = ws.send(streamMessage{Type: "error", Message: "bad message: " + err.Error()})
			}
			return
		}
		if err := clientInput(ws.ctx, sess, m); err != nil {
			if !errors.Is(err, core.ErrInvalid) && !errors.Is(err, core.ErrNotFound) {
				ws.log.Warn("exec stream input", "sandbox", ws.id, "err", err)
			}
			_ = ws.send(streamMessage{Type: "error", Message: err.Error()})
		}
	}
}

// forwardEvents sends the command's output and exit to the client as they happen.
func (ws *execSocket) forwardEvents(sess *sandboxes.ExecSession) error {
	return sess.Events(func(ev sandboxes.ExecEvent) error {
		switch {
		case ev.Exited:
			code := ev.ExitCode
			return ws.send(streamMessage{Type: "exit", ExitCode: &code, Status: ev.Status, TimedOut: ev.TimedOut})
		case ev.Stdout != nil:
			return ws.send(streamMessage{Type: "stdout", Data: ev.Stdout})
		default:
			return ws.send(streamMessage{Type: "stderr", Data: ev.Stderr})
		}
	})
}

// clientInput applies one client message to the command.
func clientInput(ctx context.Context, sess *sandboxes.ExecSession, m clientMessage) error {
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

// execStartTimeout is how long a client has to send its first message.
const execStartTimeout = 30 * time.Second

// readStart reads the client's first message into v, waiting at most timeout. The
// wait is not the read's context: coder/websocket closes the connection when a read's
// context ends, and the client would never hear why. Here the caller can still send
// the error and close the connection (which ends the read).
func readStart(ctx context.Context, conn *websocket.Conn, timeout time.Duration, v any) error {
	var msg json.RawMessage
	read := make(chan error, 1)
	go func() { read <- readJSON(ctx, conn, &msg) }()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-read:
		if err != nil {
			return err
		}
		return decodeFrame(msg, v)
	case <-t.C:
		return fmt.Errorf("none within %v", timeout)
	}
}

// readJSON reads one text or binary message as strict JSON.
func readJSON(ctx context.Context, conn *websocket.Conn, v any) error {
	_, b, err := conn.Read(ctx)
	if err != nil {
		return err
	}
	return decodeFrame(b, v)
}

// decodeFrame decodes one message strictly: no unknown fields, and names matched
// exactly ({"Stdin": …} is not stdin), as the REST bodies are (decode).
func decodeFrame(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	return httpjson.CheckKeys(b, reflect.TypeOf(v))
}
