package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// QMP is QEMU's line-oriented JSON monitor protocol: the server greets with
// {"QMP": {...}}, the client must send qmp_capabilities, then each
// {"execute": cmd, "arguments": {...}, "id": n} gets one {"return": ...} or
// {"error": {"class", "desc"}} carrying the same id. Asynchronous {"event": ...}
// objects may arrive at any time, also between a command and its answer.
//
// The driver opens one connection per operation instead of holding one: QEMU's QMP
// socket serves one client at a time, and a held connection would lock out a second
// agent process (or a test) that adopts the same VM.

// QMPError is an {"error": ...} answer from QEMU.
type QMPError struct {
	Command string
	Class   string
	Desc    string
}

func (e *QMPError) Error() string {
	return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc)
}

type qmpConn struct {
	conn   net.Conn
	dec    *json.Decoder
	nextID int
}

// qmpMessage is the union of everything QEMU sends.
type qmpMessage struct {
	QMP    json.RawMessage `json:"QMP"`
	Event  string          `json:"event"`
	ID     json.RawMessage `json:"id"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
}

// dialQMP connects to a QMP socket, reads the greeting and negotiates capabilities.
// Every read and write is bounded by ctx.
func dialQMP(ctx context.Context, path string) (*qmpConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qmp dial %s: %w", path, err)
	}
	q := &qmpConn{conn: c, dec: json.NewDecoder(c)}
	var greet qmpMessage
	done := q.bound(ctx)
	err = q.read(ctx, &greet)
	done()
	if err != nil {
		q.Close()
		return nil, fmt.Errorf("qmp greeting: %w", err)
	}
	if greet.QMP == nil {
		q.Close()
		return nil, errors.New("qmp greeting: not a QMP server")
	}
	if err := q.Execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		q.Close()
		return nil, err
	}
	return q, nil
}

func (q *qmpConn) Close() error { return q.conn.Close() }

// bound makes I/O on the connection end with ctx (its deadline, or its
// cancellation) until the returned func is called.
func (q *qmpConn) bound(ctx context.Context) func() {
	dl, _ := ctx.Deadline() // zero = no deadline
	q.conn.SetDeadline(dl)
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		q.conn.SetDeadline(time.Unix(1, 0))
		close(fired)
	})
	return func() {
		if !stop() {
			<-fired // never let a late watcher clobber the next call's deadline
		}
	}
}

func (q *qmpConn) read(ctx context.Context, m *qmpMessage) error {
	*m = qmpMessage{}
	if err := q.dec.Decode(m); err != nil {
		return ctxErr(ctx, err)
	}
	return nil
}

// Execute runs one command. args is marshalled as "arguments" when non-nil; the
// "return" value is unmarshalled into out when non-nil. Events are skipped.
func (q *qmpConn) Execute(ctx context.Context, cmd string, args, out any) error {
	return q.execute(ctx, cmd, args, nil, out)
}

// ExecuteFD runs one command with f passed along as SCM_RIGHTS ancillary data, for
// getfd: QEMU keeps the descriptor that arrives with the command under the given
// name, on this monitor, for a later "fd:NAME" migration URI. QEMU runs with
// -sandbox spawn=deny, so handing it an open file is the only way to have it read or
// write one it could not open itself. Our copy of f stays open; the caller closes it.
func (q *qmpConn) ExecuteFD(ctx context.Context, cmd string, args any, f *os.File, out any) error {
	return q.execute(ctx, cmd, args, f, out)
}

func (q *qmpConn) execute(ctx context.Context, cmd string, args any, f *os.File, out any) error {
	defer q.bound(ctx)()
	q.nextID++
	id := q.nextID
	req := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
		ID        int    `json:"id"`
	}{cmd, args, id}
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	b = append(b, '\n')
	if f == nil {
		_, err = q.conn.Write(b)
	} else {
		uc, ok := q.conn.(*net.UnixConn)
		if !ok {
			return fmt.Errorf("qmp %s: passing a file needs a unix socket", cmd)
		}
		_, _, err = uc.WriteMsgUnix(b, syscall.UnixRights(int(f.Fd())), nil)
		runtime.KeepAlive(f)
	}
	if err != nil {
		return fmt.Errorf("qmp %s: write: %w", cmd, ctxErr(ctx, err))
	}
	for {
		var m qmpMessage
		if err := q.read(ctx, &m); err != nil {
			return fmt.Errorf("qmp %s: read: %w", cmd, err)
		}
		if m.Event != "" || (m.Return == nil && m.Error == nil) {
			continue // async event (or something we do not understand)
		}
		if m.ID != nil {
			var got int
			if json.Unmarshal(m.ID, &got) != nil || got != id {
				continue // an answer to someone else's id
			}
		}
		if m.Error != nil {
			return &QMPError{Command: cmd, Class: m.Error.Class, Desc: m.Error.Desc}
		}
		if out != nil {
			if err := json.Unmarshal(m.Return, out); err != nil {
				return fmt.Errorf("qmp %s: decode return: %w", cmd, err)
			}
		}
		return nil
	}
}

// ctxErr reports an I/O error caused by ctx as ctx's error. The connection's
// deadline equals ctx's, and the socket may time out a moment before ctx's own
// timer marks it done.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if dl, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return err
}

// qmpStatus is the answer to query-status.
type qmpStatus struct {
	Running bool   `json:"running"`
	Status  string `json:"status"`
}

// qmpClient runs commands against one VM's socket, one connection per call,
// serialized so two callers in this process never queue on QEMU's single slot.
type qmpClient struct {
	path string
	mu   sync.Mutex
}

func (c *qmpClient) do(ctx context.Context, cmd string, args, out any) error {
	return c.session(ctx, func(q *qmpConn) error { return q.Execute(ctx, cmd, args, out) })
}

// session runs fn on one connection, for sequences that must share a monitor
// session (getfd and the migration that uses the fd) or must not interleave with
// other callers.
func (c *qmpClient) session(ctx context.Context, fn func(q *qmpConn) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	q, err := dialQMP(ctx, c.path)
	if err != nil {
		return err
	}
	defer q.Close()
	return fn(q)
}

func (c *qmpClient) status(ctx context.Context) (qmpStatus, error) {
	var st qmpStatus
	err := c.do(ctx, "query-status", nil, &st)
	return st, err
}
