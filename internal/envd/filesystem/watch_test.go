package filesystem

import (
	"context"
	"errors"
	"github.com/wrennhq/wrenn/internal/envd/streamx"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/fsnotify/fsnotify"

	rpc "github.com/wrennhq/wrenn/gen/envd/filesystem"
	"github.com/wrennhq/wrenn/internal/testutil"
)

const evTimeout = 10 * time.Second

const (
	evCreate = rpc.EventType_EVENT_TYPE_CREATE
	evWrite  = rpc.EventType_EVENT_TYPE_WRITE
	evRemove = rpc.EventType_EVENT_TYPE_REMOVE
	evRename = rpc.EventType_EVENT_TYPE_RENAME
	evChmod  = rpc.EventType_EVENT_TYPE_CHMOD
)

func hasAll(want ...any) func([]*rpc.FilesystemEvent) bool {
	return func(evs []*rpc.FilesystemEvent) bool {
		for i := 0; i < len(want); i += 2 {
			if !has(evs, want[i].(string), want[i+1].(rpc.EventType)) {
				return false
			}
		}
		return true
	}
}

func TestWatchDirEvents(t *testing.T) {
	eachCodec(t, func(t *testing.T, e *env) {
		w := e.startWatch(t, connect.NewRequest(&rpc.WatchDirRequest{Path: e.dir}))

		writeFile(t, e.path("f.txt"), "hello", 0o644) // create, write, chmod
		got := w.until(evTimeout, "create+write", hasAll("f.txt", evCreate, "f.txt", evWrite, "f.txt", evChmod))
		if got[0].GetName() != "f.txt" || got[0].GetType() != evCreate {
			t.Fatalf("first event %v, want CREATE f.txt", got[0])
		}
		for _, ev := range got {
			if ev.Entry != nil {
				t.Fatalf("entry attached without include_entry: %v", ev)
			}
		}

		if err := os.Rename(e.path("f.txt"), e.path("g.txt")); err != nil {
			t.Fatal(err)
		}
		w.until(evTimeout, "rename", hasAll("f.txt", evRename, "g.txt", evCreate))
		if err := os.Remove(e.path("g.txt")); err != nil {
			t.Fatal(err)
		}
		w.until(evTimeout, "remove", hasAll("g.txt", evRemove))

		// Not recursive: a subdirectory's creation is seen, changes inside it are not.
		mkdir(t, e.path("sub"))
		writeFile(t, e.path("sub", "inner"), "x", 0o644)
		writeFile(t, e.path("marker"), "", 0o644)
		got = w.until(evTimeout, "marker", hasAll("sub", evCreate, "marker", evCreate))
		for _, ev := range got {
			if ev.GetName() == "sub/inner" {
				t.Fatalf("non-recursive watch reported %v", ev)
			}
		}
	})
}

func TestWatchDirRecursive(t *testing.T) {
	eachCodec(t, func(t *testing.T, e *env) {
		mkdir(t, e.path("nested", "deeper"))
		w := e.startWatch(t, connect.NewRequest(&rpc.WatchDirRequest{Path: e.dir, Recursive: true}))

		// Existing subdirectories are watched from the start.
		writeFile(t, e.path("nested", "file.txt"), "x", 0o644)
		writeFile(t, e.path("nested", "deeper", "d.txt"), "x", 0o644)
		w.until(evTimeout, "nested writes", hasAll("nested/file.txt", evWrite, "nested/deeper/d.txt", evWrite))

		// New subdirectories get watches, including ones created all at once.
		mkdir(t, e.path("newdir"))
		w.until(evTimeout, "newdir", hasAll("newdir", evCreate))
		writeFile(t, e.path("newdir", "f"), "x", 0o644)
		w.until(evTimeout, "newdir/f", hasAll("newdir/f", evCreate, "newdir/f", evWrite))

		if err := os.MkdirAll(e.path("p", "q", "r"), 0o755); err != nil {
			t.Fatal(err)
		}
		w.until(evTimeout, "mkdir -p", hasAll("p", evCreate, "p/q", evCreate, "p/q/r", evCreate))
		writeFile(t, e.path("p", "q", "r", "f"), "x", 0o644)
		w.until(evTimeout, "deep write", hasAll("p/q/r/f", evWrite))

		// A directory renamed inside the tree: one RENAME, and later events use the new name.
		if err := os.Rename(e.path("newdir"), e.path("moved")); err != nil {
			t.Fatal(err)
		}
		got := w.until(evTimeout, "rename newdir", hasAll("newdir", evRename, "moved", evCreate))
		// The watch on the new name is armed before its CREATE is sent.
		writeFile(t, e.path("moved", "g"), "x", 0o644)
		got = append(got, w.until(evTimeout, "moved/g", hasAll("moved/g", evWrite))...)
		if n := count(got, "newdir", evRename); n != 1 {
			t.Fatalf("%d RENAME newdir events, want 1: %s", n, evString(got))
		}
		for _, ev := range got {
			if ev.GetName() == "newdir/g" {
				t.Fatalf("event with a stale name: %v", ev)
			}
		}

		// A directory moved out of the tree: one RENAME, nothing afterwards.
		outside := filepath.Join(tempDir(t), "out")
		if err := os.Rename(e.path("nested"), outside); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(outside, "after"), "x", 0o644)
		writeFile(t, e.path("marker1"), "", 0o644)
		got = w.until(evTimeout, "marker1", hasAll("marker1", evCreate))
		if n := count(got, "nested", evRename); n != 1 {
			t.Fatalf("%d RENAME nested events, want 1: %s", n, evString(got))
		}
		for _, ev := range got {
			if ev.GetName() == "nested/after" || ev.GetName() == "out/after" {
				t.Fatalf("event from outside the tree: %v", ev)
			}
		}

		// Removed and re-created directories keep working.
		if err := os.RemoveAll(e.path("p")); err != nil {
			t.Fatal(err)
		}
		w.until(evTimeout, "rm -r p", hasAll("p/q/r/f", evRemove, "p", evRemove))
		mkdir(t, e.path("p"))
		w.until(evTimeout, "p again", hasAll("p", evCreate))
		writeFile(t, e.path("p", "again"), "x", 0o644)
		w.until(evTimeout, "p/again", hasAll("p/again", evWrite))

		// A tree moved in from outside is announced and watched.
		src := filepath.Join(tempDir(t), "tree")
		writeFile(t, filepath.Join(src, "t1", "leaf"), "x", 0o644)
		if err := os.Rename(src, e.path("tree")); err != nil {
			t.Fatal(err)
		}
		w.until(evTimeout, "moved-in tree", hasAll("tree", evCreate, "tree/t1", evCreate, "tree/t1/leaf", evCreate))
		writeFile(t, e.path("tree", "t1", "leaf"), "y", 0o644)
		w.until(evTimeout, "write in moved-in tree", hasAll("tree/t1/leaf", evWrite))
	})
}

func TestWatchDirIncludeEntry(t *testing.T) {
	eachCodec(t, func(t *testing.T, e *env) {
		w := e.startWatch(t, connect.NewRequest(&rpc.WatchDirRequest{Path: e.dir, Recursive: true, IncludeEntry: true}))
		mkdir(t, e.path("d"))
		got := w.until(evTimeout, "create d", hasAll("d", evCreate))
		writeFile(t, e.path("d", "f.txt"), "hello", 0o600)
		got = append(got, w.until(evTimeout, "create/write/chmod", hasAll("d/f.txt", evCreate, "d/f.txt", evWrite, "d/f.txt", evChmod))...)
		if en := find(got, "d", evCreate).GetEntry(); en.GetPath() != e.path("d") || en.GetType() != rpc.FileType_FILE_TYPE_DIRECTORY || en.GetName() != "d" {
			t.Fatalf("dir create entry %v", en)
		}
		f := e.path("d", "f.txt")
		if en := find(got, "d/f.txt", evCreate).GetEntry(); en.GetPath() != f || en.GetType() != rpc.FileType_FILE_TYPE_FILE {
			t.Fatalf("file create entry %v", en)
		}
		if en := find(got, "d/f.txt", evChmod).GetEntry(); en.GetMode() != 0o600 {
			t.Fatalf("chmod entry %v", en)
		}
		if err := os.Rename(f, e.path("d", "g.txt")); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(e.path("d", "g.txt")); err != nil {
			t.Fatal(err)
		}
		got = w.until(evTimeout, "rename/remove", hasAll("d/f.txt", evRename, "d/g.txt", evRemove))
		for _, ev := range got {
			if (ev.GetType() == evRename || ev.GetType() == evRemove) && ev.Entry != nil {
				t.Fatalf("entry on %v", ev)
			}
		}
	})
}

func TestWatchDirErrors(t *testing.T) {
	eachCodec(t, func(t *testing.T, e *env) {
		watchErr := func(req *rpc.WatchDirRequest) error {
			s, err := e.client.WatchDir(ctx(t), connect.NewRequest(req))
			if err != nil {
				return err
			}
			defer s.Close()
			if s.Receive() {
				return nil
			}
			return s.Err()
		}
		missing := e.path("missing")
		testutil.WantCode(t, "WatchDir on a missing dir", watchErr(&rpc.WatchDirRequest{Path: missing}), connect.CodeNotFound, "path "+missing+" not found: ")
		writeFile(t, e.path("file"), "", 0o644)
		testutil.WantCode(t, "WatchDir on a file", watchErr(&rpc.WatchDirRequest{Path: e.path("file")}), connect.CodeInvalidArgument, "path "+e.path("file")+" not a directory")
		testutil.WantCode(t, "WatchDir on a NUL path", watchErr(&rpc.WatchDirRequest{Path: "x\x00"}), connect.CodeInvalidArgument, "invalid path")

		// Network mounts are refused unless allowed.
		e.svc.fsType = func(string) (uint32, error) { return fuseSuperMagic, nil }
		testutil.WantCode(t, "WatchDir on a network mount", watchErr(&rpc.WatchDirRequest{Path: e.dir}), connect.CodeInvalidArgument, "cannot watch path on network filesystem: "+e.dir)
		_, err := e.client.CreateWatcher(ctx(t), connect.NewRequest(&rpc.CreateWatcherRequest{Path: e.dir}))
		testutil.WantCode(t, "CreateWatcher on a network mount", err, connect.CodeInvalidArgument, "cannot watch path on network filesystem: ")
		if err := watchErr(&rpc.WatchDirRequest{Path: e.dir, AllowNetworkMounts: true}); err != nil {
			t.Fatalf("allowed network mount: %v", err)
		}
		res, err := e.client.CreateWatcher(ctx(t), connect.NewRequest(&rpc.CreateWatcherRequest{Path: e.dir, AllowNetworkMounts: true}))
		if err != nil {
			t.Fatalf("allowed network mount (polling): %v", err)
		}
		if _, err := e.client.RemoveWatcher(ctx(t), connect.NewRequest(&rpc.RemoveWatcherRequest{WatcherId: res.Msg.GetWatcherId()})); err != nil {
			t.Fatal(err)
		}
		e.svc.fsType = func(string) (uint32, error) { return 0, errors.New("statfs broke") }
		testutil.WantCode(t, "WatchDir when statfs fails", watchErr(&rpc.WatchDirRequest{Path: e.dir}), connect.CodeInternal, "error checking mount status")
	})
}

func TestNetworkFSMagic(t *testing.T) {
	for _, m := range []uint32{nfsSuperMagic, smbSuperMagic, cifsMagic, smb2Magic, fuseSuperMagic} {
		if !isNetworkFS(m) {
			t.Errorf("%#x not recognised as a network filesystem", m)
		}
	}
	for _, m := range []uint32{0xef53 /* ext4 */, 0x01021994 /* tmpfs */, 0x9123683e /* btrfs */, 0x58465342 /* xfs */} {
		if isNetworkFS(m) {
			t.Errorf("%#x taken for a network filesystem", m)
		}
	}
	if _, err := statfsType(tempDir(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := statfsType("/does/not/exist"); err == nil {
		t.Fatal("statfs of a missing path succeeded")
	}
}

func TestWatchDirKeepalive(t *testing.T) {
	eachCodec(t, func(t *testing.T, e *env) {
		req := connect.NewRequest(&rpc.WatchDirRequest{Path: e.dir})
		req.Header().Set("Keepalive-Ping-Interval", "1")
		w := e.startWatch(t, req)
		start := time.Now()
		keepalives := 0
		for keepalives < 2 {
			select {
			case m := <-w.msgs:
				if m.GetKeepalive() == nil {
					t.Fatalf("unexpected message %v", m)
				}
				keepalives++
			case err := <-w.done:
				t.Fatalf("stream ended: %v", err)
			case <-time.After(5 * time.Second):
				t.Fatal("no keepalive within 5s at a 1s interval")
			}
		}
		if el := time.Since(start); el < 1500*time.Millisecond {
			t.Fatalf("two keepalives after %v, want about 2s", el)
		}
		// Events reset the idle timer: with events every 300ms, no keepalive is sent.
		for i := range 6 {
			writeFile(t, e.path("tick"), string(rune('a'+i)), 0o644)
			time.Sleep(300 * time.Millisecond)
		}
		deadline := time.After(300 * time.Millisecond)
		for done := false; !done; {
			select {
			case m := <-w.msgs:
				if m.GetKeepalive() != nil {
					t.Fatal("keepalive sent although events kept the stream busy")
				}
			case <-deadline:
				done = true
			}
		}
	})
}

func TestKeepaliveInterval(t *testing.T) {
	cases := map[string]time.Duration{
		"":                     90 * time.Second,
		"50":                   50 * time.Second,
		" 7 ":                  7 * time.Second,
		"abc":                  90 * time.Second,
		"1.5":                  90 * time.Second,
		"0":                    90 * time.Second,
		"-3":                   90 * time.Second,
		"99999999999999999999": 90 * time.Second,
		"9999999999":           24 * time.Hour,
	}
	for in, want := range cases {
		h := http.Header{}
		if in != "" {
			h.Set("Keepalive-Ping-Interval", in)
		}
		if got := streamx.KeepaliveInterval(h); got != want {
			t.Errorf("%q: got %v want %v", in, got, want)
		}
	}
}

func TestWatchDirDeadlineAndCancel(t *testing.T) {
	eachCodec(t, func(t *testing.T, e *env) {
		before := inotifyFDs(t)
		c, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
		defer cancel()
		s, err := e.client.WatchDir(c, connect.NewRequest(&rpc.WatchDirRequest{Path: e.dir}))
		if err != nil {
			t.Fatal(err)
		}
		if !s.Receive() || s.Msg().GetStart() == nil {
			t.Fatalf("no start: %v", s.Err())
		}
		for s.Receive() {
		}
		testutil.WantCode(t, "WatchDir past its deadline", s.Err(), connect.CodeDeadlineExceeded, "")
		_ = s.Close()
		testutil.WaitFor(t, 5*time.Second, "inotify fd release after deadline", func() bool { return inotifyFDs(t) == before })

		// A client cancel ends the server side too.
		w := e.startWatch(t, connect.NewRequest(&rpc.WatchDirRequest{Path: e.dir, Recursive: true}))
		if inotifyFDs(t) != before+1 {
			t.Fatalf("%d inotify fds, want %d", inotifyFDs(t), before+1)
		}
		w.cancel()
		testutil.WantCode(t, "cancelled WatchDir", w.end(5*time.Second), connect.CodeCanceled, "")
		testutil.WaitFor(t, 5*time.Second, "inotify fd release after cancel", func() bool { return inotifyFDs(t) == before })
	})
}

// One OS event with several operations yields one protocol event per operation, in
// E2B's order, with entries only where the spec allows them.
func TestHandleOpOrder(t *testing.T) {
	root := tempDir(t)
	writeFile(t, filepath.Join(root, "f"), "x", 0o644)
	d, err := openDirWatch(root, false, true, newIDNames(0))
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	all := fsnotify.Create | fsnotify.Write | fsnotify.Remove | fsnotify.Rename | fsnotify.Chmod
	evs, err := d.handle(fsnotify.Event{Name: filepath.Join(root, "f"), Op: all})
	if err != nil {
		t.Fatal(err)
	}
	want := []rpc.EventType{evCreate, evRename, evChmod, evWrite, evRemove}
	if len(evs) != len(want) {
		t.Fatalf("got %s", evString(evs))
	}
	for i, ev := range evs {
		if ev.GetType() != want[i] || ev.GetName() != "f" {
			t.Fatalf("event %d: %v, want %v f", i, ev, want[i])
		}
		withEntry := ev.GetType() == evCreate || ev.GetType() == evWrite || ev.GetType() == evChmod
		if withEntry != (ev.Entry != nil) {
			t.Fatalf("event %v: entry presence %v", ev, ev.Entry != nil)
		}
	}
	// Best effort: a file already gone gets no entry, and no error.
	evs, err = d.handle(fsnotify.Event{Name: filepath.Join(root, "gone"), Op: fsnotify.Create})
	if err != nil || len(evs) != 1 || evs[0].Entry != nil {
		t.Fatalf("gone file: %v %v", evs, err)
	}
	// Events outside the root and without known operations are dropped.
	if evs, _ := d.handle(fsnotify.Event{Name: "/elsewhere/x", Op: fsnotify.Create}); len(evs) != 0 {
		t.Fatalf("outside root: %v", evs)
	}
	if evs, _ := d.handle(fsnotify.Event{Name: filepath.Join(root, "f")}); len(evs) != 0 {
		t.Fatalf("no op: %v", evs)
	}
}

func TestCloseStopsEverything(t *testing.T) {
	e := newEnv(t, codecs[0])
	before := inotifyFDs(t)
	for range 3 {
		if _, err := e.client.CreateWatcher(ctx(t), connect.NewRequest(&rpc.CreateWatcherRequest{Path: e.dir, Recursive: true})); err != nil {
			t.Fatal(err)
		}
	}
	w := e.startWatch(t, connect.NewRequest(&rpc.WatchDirRequest{Path: e.dir}))
	if n := inotifyFDs(t); n != before+4 {
		t.Fatalf("%d inotify fds, want %d", n, before+4)
	}
	if n := watchGoroutines(); n < 4*3 { // per watch: fsnotify reader, error drain, loop
		t.Fatalf("%d watch goroutines, want at least 12", n)
	}
	e.svc.Close()
	testutil.WantCode(t, "WatchDir when the service closes", w.end(5*time.Second), connect.CodeUnavailable, "")
	testutil.WaitFor(t, 5*time.Second, "all inotify fds released", func() bool { return inotifyFDs(t) == before })
	testutil.WaitFor(t, 5*time.Second, "all watch goroutines gone", func() bool { return watchGoroutines() == 0 })

	_, err := e.client.CreateWatcher(ctx(t), connect.NewRequest(&rpc.CreateWatcherRequest{Path: e.dir}))
	testutil.WantCode(t, "CreateWatcher after Close", err, connect.CodeUnavailable, "")
	s, err := e.client.WatchDir(ctx(t), connect.NewRequest(&rpc.WatchDirRequest{Path: e.dir}))
	if err != nil {
		t.Fatal(err)
	}
	for s.Receive() {
		t.Fatalf("message after Close: %v", s.Msg())
	}
	testutil.WantCode(t, "WatchDir after Close", s.Err(), connect.CodeUnavailable, "")
	_ = s.Close()
	e.svc.Close() // idempotent
	if n := inotifyFDs(t); n != before {
		t.Fatalf("%d inotify fds after Close, want %d", n, before)
	}
}

// When fsnotify handles a moved directory's own IN_MOVE_SELF before the consumer has
// dropped that directory's watch, it reports a second RENAME; it must be filtered out.
func TestRecursiveMoveOutSingleRename(t *testing.T) {
	root := tempDir(t)
	mkdir(t, filepath.Join(root, "sub", "inner"))
	d, err := openDirWatch(root, true, false, newIDNames(0))
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	if err := os.Rename(filepath.Join(root, "sub"), filepath.Join(tempDir(t), "away")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "marker"), "", 0o644)
	var got []*rpc.FilesystemEvent
	timeout := time.After(evTimeout)
	for !has(got, "marker", evCreate) {
		select {
		case ev := <-d.events():
			// Let fsnotify's reader run ahead, as a slow consumer would.
			time.Sleep(50 * time.Millisecond)
			evs, err := d.handle(ev)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, evs...)
		case err := <-d.errs:
			t.Fatal(err)
		case <-timeout:
			t.Fatalf("timed out; got %s", evString(got))
		}
	}
	if n := count(got, "sub", evRename); n != 1 {
		t.Fatalf("%d RENAME sub events, want 1: %s", n, evString(got))
	}
	if len(d.dirs) != 0 {
		t.Fatalf("watches left on moved-away directories: %v", d.dirs)
	}
	if len(d.dupRename) != 0 {
		t.Fatalf("expected duplicate never consumed: %v", d.dupRename)
	}
}
