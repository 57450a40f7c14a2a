package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeQMP serves QMP like QEMU does: one client at a time, greeting first, events
// sprinkled between commands and answers.
type fakeQMP struct {
	ln    net.Listener
	conns atomic.Int32
	mu    sync.Mutex
	// status is QEMU's run state: running, paused, postmigrate, inmigrate.
	status string
	// greeting overrides the greeting line (to test non-QMP servers).
	greeting string
	// onQuit is called after answering quit.
	onQuit func()
	// Snapshot support (fakesnap_test.go): named fds from getfd, the last
	// migration's outcome, and behaviours picked by the fake VM's id.
	fds        map[string]*os.File
	migration  migrationInfo
	failSave   bool   // migrate fails
	fatal      func() // a failed incoming load ends the process, as in QEMU
	loadedFrom string // the state a successful incoming migration read
}

func startFakeQMP(t *testing.T, path, greeting string) *fakeQMP {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeQMP{ln: ln, status: "running", greeting: greeting}
	go f.serve()
	t.Cleanup(func() { ln.Close() })
	return f
}

func (f *fakeQMP) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.conns.Add(1)
		f.handle(c) // serially, like QEMU's monitor chardev
	}
}

func (f *fakeQMP) handle(c net.Conn) {
	defer c.Close()
	r := &fdReader{c: c.(*net.UnixConn)}
	defer r.closeAll()
	w := bufio.NewWriter(c)
	send := func(s string) { w.WriteString(s + "\r\n"); w.Flush() }
	if f.greeting != "" {
		send(f.greeting)
	} else {
		send(`{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "fake"}, "capabilities": ["oob"]}}`)
	}
	dec := json.NewDecoder(r)
	negotiated := false
	for {
		var req struct {
			Execute   string          `json:"execute"`
			Arguments json.RawMessage `json:"arguments"`
			ID        json.RawMessage `json:"id"`
		}
		if err := dec.Decode(&req); err != nil {
			return
		}
		id := string(req.ID)
		if id == "" {
			id = "null"
		}
		ret := func(v string) { send(fmt.Sprintf(`{"return": %s, "id": %s}`, v, id)) }
		qerr := func(class, desc string) {
			send(fmt.Sprintf(`{"error": {"class": %q, "desc": %q}, "id": %s}`, class, desc, id))
		}
		event := func(name string) {
			send(fmt.Sprintf(`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": %q}`, name))
		}
		if req.Execute != "qmp_capabilities" && !negotiated {
			qerr("CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'")
			continue
		}
		f.mu.Lock()
		switch req.Execute {
		case "qmp_capabilities":
			negotiated = true
			ret("{}")
		case "query-status":
			event("RTC_CHANGE")
			// An answer for another id must be skipped too.
			send(`{"return": {"status": "bogus"}, "id": 999999}`)
			ret(fmt.Sprintf(`{"running": %v, "singlestep": false, "status": %q}`, f.status == "running", f.status))
		case "stop":
			if f.status == "running" {
				f.status = "paused"
			}
			ret("{}")
			event("STOP")
		case "cont":
			if f.status == "inmigrate" {
				qerr("GenericError", "fake: cont during incoming migration")
				break
			}
			f.status = "running"
			event("RESUME")
			ret("{}")
		case "quit":
			ret("{}")
			event("SHUTDOWN")
			if f.onQuit != nil {
				f.onQuit()
			}
		case "hang":
			// never answer
		case "query-version", "migrate-set-capabilities", "migrate-set-parameters", "getfd",
			"migrate", "query-migrate", "migrate_cancel", "migrate-incoming":
			f.snapshotCommand(req.Execute, req.Arguments, r, ret, qerr)
		default:
			qerr("CommandNotFound", "The command "+req.Execute+" has not been found")
		}
		f.mu.Unlock()
	}
}

func TestQMPClient(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qmp.sock")
	f := startFakeQMP(t, path, "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	q, err := dialQMP(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	var st qmpStatus
	if err := q.Execute(ctx, "query-status", nil, &st); err != nil {
		t.Fatal(err)
	}
	if !st.Running || st.Status != "running" {
		t.Errorf("status %+v", st)
	}
	if err := q.Execute(ctx, "stop", nil, nil); err != nil {
		t.Fatal(err)
	}
	// The STOP event sent after stop's answer must not confuse the next command.
	if err := q.Execute(ctx, "query-status", nil, &st); err != nil || st.Status != "paused" {
		t.Errorf("after stop: %+v, %v", st, err)
	}
	err = q.Execute(ctx, "no-such-command", map[string]any{"x": 1}, nil)
	var qe *QMPError
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Errorf("error answer: %v", err)
	}
	// A command that never gets an answer ends with its context.
	hctx, hcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	t0 := time.Now()
	err = q.Execute(hctx, "hang", nil, nil)
	hcancel()
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(t0) > 2*time.Second {
		t.Errorf("hang: %v after %s", err, time.Since(t0))
	}
	q.Close()

	// qmpClient: one connection per call.
	c := &qmpClient{path: path}
	before := f.conns.Load()
	if err := c.do(ctx, "cont", nil, nil); err != nil {
		t.Fatal(err)
	}
	if st, err := c.status(ctx); err != nil || st.Status != "running" {
		t.Errorf("client status %+v, %v", st, err)
	}
	if n := f.conns.Load() - before; n != 2 {
		t.Errorf("%d connections for 2 calls", n)
	}
}

func TestQMPCancel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qmp.sock")
	startFakeQMP(t, path, "")
	ctx, cancel := context.WithCancel(context.Background())
	q, err := dialQMP(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	if err := q.Execute(ctx, "hang", nil, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled hang: %v", err)
	}
}

func TestQMPNotQMP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qmp.sock")
	startFakeQMP(t, path, `{"hello": "world"}`)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if q, err := dialQMP(ctx, path); err == nil {
		q.Close()
		t.Fatal("accepted a non-QMP greeting")
	}
	if _, err := dialQMP(ctx, filepath.Join(t.TempDir(), "none.sock")); err == nil {
		t.Fatal("dialled a missing socket")
	}
}

func TestQMPGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.WriteString(c, "not json at all\n")
		c.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if q, err := dialQMP(ctx, path); err == nil {
		q.Close()
		t.Fatal("accepted garbage")
	}
}
