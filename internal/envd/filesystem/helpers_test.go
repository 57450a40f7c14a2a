package filesystem

import (
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	rpc "github.com/wrennhq/wrenn/gen/envd/filesystem"
	"github.com/wrennhq/wrenn/gen/envd/filesystem/filesystemconnect"
	"github.com/wrennhq/wrenn/internal/envd/state"
)

// env is one service behind a real HTTP server, with a client in one codec.
type env struct {
	svc    *Service
	st     *state.State
	srv    *httptest.Server
	client filesystemconnect.FilesystemClient
	dir    string // a fresh, symlink-free temporary directory
}

type codec struct {
	name string
	opts []connect.ClientOption
}

// codecs are the two encodings the SDKs and Go clients use: binary proto and JSON.
var codecs = []codec{
	{"proto", nil},
	{"json", []connect.ClientOption{connect.WithProtoJSON()}},
}

func newEnv(t *testing.T, c codec) *env {
	t.Helper()
	st := state.New()
	// Failures the tests provoke on purpose are logged; show them only with -v.
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	svc := New(st, log)
	mux := http.NewServeMux()
	mux.Handle(filesystemconnect.NewFilesystemHandler(svc))
	srv := httptest.NewServer(mux)
	// Cleanups run last-in first-out: the service closes first so open streams end
	// and the server can drain.
	t.Cleanup(srv.Close)
	t.Cleanup(svc.Close)
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &env{
		svc:    svc,
		st:     st,
		srv:    srv,
		client: filesystemconnect.NewFilesystemClient(srv.Client(), srv.URL, c.opts...),
		dir:    dir,
	}
}

// eachCodec runs f once per codec, each with its own environment.
func eachCodec(t *testing.T, f func(t *testing.T, e *env)) {
	t.Helper()
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) { f(t, newEnv(t, c)) })
	}
}

func (e *env) path(parts ...string) string {
	return filepath.Join(append([]string{e.dir}, parts...)...)
}

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func basic(name string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(name+":"))
}

func withUser[T any](msg *T, user string) *connect.Request[T] {
	req := connect.NewRequest(msg)
	if user != "" {
		req.Header().Set("Authorization", basic(user))
	}
	return req
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // not subject to the umask
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o755); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// inotifyFDs counts this process's open inotify descriptors.
func inotifyFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("skipping fd accounting: %v", err)
	}
	n := 0
	for _, de := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + de.Name()); err == nil && l == "anon_inode:inotify" {
			n++
		}
	}
	return n
}

// watchGoroutines counts goroutines belonging to watches: fsnotify's readers and
// this package's watch loops.
func watchGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	c := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "fsnotify.(*inotify).readEvents") ||
			strings.Contains(g, "filesystem.(*dirWatch).drainErrors") ||
			strings.Contains(g, "filesystem.(*pollWatcher).run") ||
			strings.Contains(g, "filesystem.(*Service).WatchDir") {
			c++
		}
	}
	return c
}

// watch is a WatchDir stream read by a goroutine, so tests can wait with timeouts.
type watch struct {
	t      *testing.T
	cancel context.CancelFunc
	msgs   chan *rpc.WatchDirResponse
	done   chan error // the stream's final error (nil on clean end)
}

// startWatch opens a WatchDir stream and waits for its start event.
func (e *env) startWatch(t *testing.T, req *connect.Request[rpc.WatchDirRequest]) *watch {
	t.Helper()
	w := e.openWatch(t, req)
	select {
	case m := <-w.msgs:
		if m.GetStart() == nil {
			t.Fatalf("first message %v, want start", m)
		}
	case err := <-w.done:
		t.Fatalf("stream ended before start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no start event")
	}
	return w
}

func (e *env) openWatch(t *testing.T, req *connect.Request[rpc.WatchDirRequest]) *watch {
	t.Helper()
	c, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := e.client.WatchDir(c, req)
	if err != nil {
		t.Fatalf("WatchDir: %v", err)
	}
	w := &watch{t: t, cancel: cancel, msgs: make(chan *rpc.WatchDirResponse, 1024), done: make(chan error, 1)}
	go func() {
		defer func() { _ = stream.Close() }()
		for stream.Receive() {
			w.msgs <- stream.Msg()
		}
		w.done <- stream.Err()
	}()
	return w
}

// until collects filesystem events until cond is true for the collected ones.
func (w *watch) until(timeout time.Duration, what string, cond func([]*rpc.FilesystemEvent) bool) []*rpc.FilesystemEvent {
	w.t.Helper()
	var got []*rpc.FilesystemEvent
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for !cond(got) {
		select {
		case m := <-w.msgs:
			if fe := m.GetFilesystem(); fe != nil {
				got = append(got, fe)
			}
		case err := <-w.done:
			w.t.Fatalf("stream ended (%v) while waiting for %s; got %s", err, what, evString(got))
		case <-timer.C:
			w.t.Fatalf("timed out waiting for %s; got %s", what, evString(got))
		}
	}
	return got
}

// end waits for the stream to finish and returns its error.
func (w *watch) end(timeout time.Duration) error {
	w.t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case <-w.msgs:
		case err := <-w.done:
			return err
		case <-timer.C:
			w.t.Fatal("stream did not end")
			return nil
		}
	}
}

func has(evs []*rpc.FilesystemEvent, name string, typ rpc.EventType) bool {
	return find(evs, name, typ) != nil
}

func find(evs []*rpc.FilesystemEvent, name string, typ rpc.EventType) *rpc.FilesystemEvent {
	for _, e := range evs {
		if e.GetName() == name && e.GetType() == typ {
			return e
		}
	}
	return nil
}

func count(evs []*rpc.FilesystemEvent, name string, typ rpc.EventType) int {
	n := 0
	for _, e := range evs {
		if e.GetName() == name && e.GetType() == typ {
			n++
		}
	}
	return n
}

func evString(evs []*rpc.FilesystemEvent) string {
	var b strings.Builder
	b.WriteString("[")
	for i, e := range evs {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(strings.TrimPrefix(e.GetType().String(), "EVENT_TYPE_") + ":" + e.GetName())
	}
	b.WriteString("]")
	return b.String()
}
