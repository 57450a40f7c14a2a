package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Command is a command to run in a sandbox.
type Command struct {
	Cmd     string
	Args    []string
	Env     map[string]string
	Cwd     string
	Timeout time.Duration // 0 = the server's default; with Stdin or PTY: while connected
	// Stdin keeps the command's stdin open for Stream.Write (stream only).
	Stdin bool
	// PTY runs the command in a terminal of this size; its output is then stdout
	// (stream only).
	PTY *PTYSize
	// MaxOutputBytes is how much of each of stdout and stderr Run keeps (0 = the
	// server's default, 1 MiB; at most 16 MiB); the rest is dropped and the result
	// says so. Streams keep nothing, so they do not take it.
	MaxOutputBytes int64
}

// PTYSize is a terminal's size in characters (1..1000 each).
type PTYSize struct {
	Cols uint32 `json:"cols"`
	Rows uint32 `json:"rows"`
}

func (c Command) body() map[string]any {
	m := map[string]any{"cmd": c.Cmd, "args": c.Args, "timeout_sec": int(c.Timeout / time.Second)}
	if len(c.Env) > 0 {
		m["env_vars"] = c.Env
	}
	if c.Cwd != "" {
		m["cwd"] = c.Cwd
	}
	return m
}

// Stream is a command running over the exec WebSocket: read its events with Recv,
// feed it with Write/CloseStdin, resize its terminal with Resize.
type Stream struct {
	conn    *websocket.Conn
	pid     uint32
	writeMu sync.Mutex
}

// Event is one thing a streamed command did: output (Stdout or Stderr set) or its
// end (Exited).
type Event struct {
	Stdout   []byte
	Stderr   []byte
	Exited   bool
	ExitCode int
	Status   string
	TimedOut bool
}

type wireMessage struct {
	Type     string `json:"type"`
	PID      uint32 `json:"pid,omitempty"`
	Data     []byte `json:"data,omitempty"`
	ExitCode int    `json:"exit_code,omitempty"`
	Status   string `json:"status,omitempty"`
	TimedOut bool   `json:"timed_out,omitempty"`
	Message  string `json:"message,omitempty"`
	Cols     uint32 `json:"cols,omitempty"`
	Rows     uint32 `json:"rows,omitempty"`
}

// StreamError is an error the server reported on the stream.
type StreamError struct{ Message string }

func (e *StreamError) Error() string { return "wrenn: exec stream: " + e.Message }

// ExecStream starts cmd in a sandbox and returns once it runs.
func (c *Client) ExecStream(ctx context.Context, id string, cmd Command) (*Stream, error) {
	if cmd.MaxOutputBytes != 0 {
		return nil, errors.New("wrenn: MaxOutputBytes is for Run: a stream delivers all output")
	}
	wsURL := "ws" + strings.TrimPrefix(c.base, "http") + "/v1/sandboxes/" + url.PathEscape(id) + "/exec/stream"
	h := http.Header{}
	switch {
	case c.token != "":
		h.Set("Authorization", "Bearer "+c.token)
	case c.apiKey != "":
		h.Set("X-API-Key", c.apiKey)
	}
	conn, resp, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: c.http, HTTPHeader: h})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, responseError(resp)
		}
		return nil, fmt.Errorf("wrenn: exec stream: %w", err)
	}
	conn.SetReadLimit(16 << 20)
	s := &Stream{conn: conn}
	start := cmd.body()
	if cmd.Stdin {
		start["stdin"] = true
	}
	if cmd.PTY != nil {
		start["pty"] = cmd.PTY
	}
	if err := s.send(ctx, start); err != nil {
		conn.CloseNow()
		return nil, err
	}
	m, err := s.read(ctx)
	if err != nil {
		conn.CloseNow()
		return nil, err
	}
	if m.Type != "start" {
		conn.CloseNow()
		return nil, fmt.Errorf("wrenn: exec stream: got %q before start", m.Type)
	}
	s.pid = m.PID
	return s, nil
}

// PID is the command's process id in the sandbox.
func (s *Stream) PID() uint32 { return s.pid }

func (s *Stream) send(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.conn.Write(ctx, websocket.MessageText, b); err != nil {
		return fmt.Errorf("wrenn: exec stream: %w", err)
	}
	return nil
}

func (s *Stream) read(ctx context.Context) (*wireMessage, error) {
	_, b, err := s.conn.Read(ctx)
	if err != nil {
		return nil, fmt.Errorf("wrenn: exec stream: %w", err)
	}
	var m wireMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("wrenn: exec stream: bad message: %w", err)
	}
	if m.Type == "error" {
		return nil, &StreamError{Message: m.Message}
	}
	return &m, nil
}

// Recv returns the next event; after the exit event it returns io.EOF. A server
// error arrives as *StreamError.
func (s *Stream) Recv(ctx context.Context) (*Event, error) {
	for {
		m, err := s.read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) == websocket.StatusNormalClosure {
				return nil, io.EOF
			}
			return nil, err
		}
		switch m.Type {
		case "stdout":
			return &Event{Stdout: m.Data}, nil
		case "stderr":
			return &Event{Stderr: m.Data}, nil
		case "exit":
			return &Event{Exited: true, ExitCode: m.ExitCode, Status: m.Status, TimedOut: m.TimedOut}, nil
		}
	}
}

// Wait copies output to stdout and stderr until the command ends and returns how it
// ended.
func (s *Stream) Wait(ctx context.Context, stdout, stderr io.Writer) (*Event, error) {
	for {
		ev, err := s.Recv(ctx)
		if errors.Is(err, io.EOF) {
			return nil, errors.New("wrenn: exec stream ended without an exit event")
		}
		if err != nil {
			return nil, err
		}
		switch {
		case ev.Exited:
			return ev, nil
		case ev.Stdout != nil:
			if _, err := stdout.Write(ev.Stdout); err != nil {
				return nil, err
			}
		case ev.Stderr != nil:
			if _, err := stderr.Write(ev.Stderr); err != nil {
				return nil, err
			}
		}
	}
}

// Write sends p to the command's stdin (or terminal).
func (s *Stream) Write(p []byte) (int, error) {
	if err := s.send(context.Background(), wireMessage{Type: "stdin", Data: p}); err != nil {
		return 0, err
	}
	return len(p), nil
}

// CloseStdin ends the command's input (Ctrl-D on a terminal).
func (s *Stream) CloseStdin() error {
	return s.send(context.Background(), wireMessage{Type: "eof"})
}

// Resize changes the command's terminal size.
func (s *Stream) Resize(size PTYSize) error {
	return s.send(context.Background(), wireMessage{Type: "resize", Cols: size.Cols, Rows: size.Rows})
}

// Close ends the stream; a command with stdin or a terminal is then killed.
func (s *Stream) Close() error {
	return s.conn.Close(websocket.StatusNormalClosure, "")
}
