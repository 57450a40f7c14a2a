package envd_test

// End-to-end tests of WatchDir and the polling watchers against the real envd binary.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	fspb "github.com/wrennhq/wrenn/gen/envd/filesystem"
	"github.com/wrennhq/wrenn/gen/envd/filesystem/filesystemconnect"
	"github.com/wrennhq/wrenn/internal/envd/envdtest"
	"github.com/wrennhq/wrenn/internal/testutil"
)

// watchStream is the client side of a WatchDir call.
type watchStream = connect.ServerStreamForClient[fspb.WatchDirResponse]

// openWatch starts WatchDir and waits for its start event; the stream is closed when
// the test ends and cannot outlive 20 s.
func openWatch(t *testing.T, c filesystemconnect.FilesystemClient, msg *fspb.WatchDirRequest, header ...string) *watchStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	s, err := c.WatchDir(ctx, fsReq(msg, header...))
	if err != nil {
		cancel()
		t.Fatalf("WatchDir %s: %v", msg.GetPath(), err)
	}
	t.Cleanup(func() { cancel(); s.Close() })
	if !s.Receive() {
		t.Fatalf("WatchDir %s: no start event: %v", msg.GetPath(), s.Err())
	}
	if s.Msg().GetStart() == nil {
		t.Fatalf("WatchDir %s: first message %v, want start", msg.GetPath(), s.Msg())
	}
	return s
}

// waitEvent reads the stream until an event matches, returning it and everything
// seen before it.
func waitEvent(t *testing.T, s *watchStream, what string, match func(*fspb.FilesystemEvent) bool) (*fspb.FilesystemEvent, []*fspb.FilesystemEvent) {
	t.Helper()
	var seen []*fspb.FilesystemEvent
	for s.Receive() {
		ev := s.Msg().GetFilesystem()
		if ev == nil {
			continue
		}
		if match(ev) {
			return ev, seen
		}
		seen = append(seen, ev)
	}
	t.Fatalf("stream ended before %s: %v (events so far: %v)", what, s.Err(), seen)
	return nil, nil
}

func isEvent(name string, typ fspb.EventType) func(*fspb.FilesystemEvent) bool {
	return func(ev *fspb.FilesystemEvent) bool { return ev.GetName() == name && ev.GetType() == typ }
}

// watchErr returns the error of a WatchDir call that must fail before any message.
func watchErr(t *testing.T, c filesystemconnect.FilesystemClient, msg *fspb.WatchDirRequest, header ...string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.WatchDir(ctx, fsReq(msg, header...))
	if err != nil {
		return err
	}
	defer s.Close()
	if s.Receive() {
		t.Errorf("WatchDir %s: got %v, want an error", msg.GetPath(), s.Msg())
		return nil
	}
	return s.Err()
}

func TestE2EFilesystemWatchDir(t *testing.T) {
	t.Parallel()
	e := userEnvd(t)
	forCodecs(t, func(t *testing.T, codec envdtest.Codec, dir string) {
		c := e.Filesystem(codec)
		w := dir + "/watched"
		hostMkdir(t, e, w+"/sub")
		hostMkdir(t, e, w+"/sub/deeper")

		// Recursive, without entries.
		s := openWatch(t, c, &fspb.WatchDirRequest{Path: w, Recursive: true})
		if err := os.WriteFile(e.HostPath(w+"/sub/file.txt"), []byte("hello"), 0o644); err != nil {
			t.Fatal(err)
		}
		ev, before := waitEvent(t, s, "WRITE sub/file.txt", isEvent("sub/file.txt", fspb.EventType_EVENT_TYPE_WRITE))
		if ev.Entry != nil {
			t.Errorf("entry without include_entry: %v", ev)
		}
		if len(before) == 0 || !isEvent("sub/file.txt", fspb.EventType_EVENT_TYPE_CREATE)(before[0]) {
			t.Errorf("events before the write: %v, want CREATE sub/file.txt first", before)
		}
		if err := os.Mkdir(e.HostPath(w+"/newdir"), 0o755); err != nil {
			t.Fatal(err)
		}
		waitEvent(t, s, "CREATE newdir", isEvent("newdir", fspb.EventType_EVENT_TYPE_CREATE))
		// The new directory is watched too.
		if err := os.WriteFile(e.HostPath(w+"/newdir/n.txt"), []byte("n"), 0o644); err != nil {
			t.Fatal(err)
		}
		waitEvent(t, s, "WRITE newdir/n.txt", isEvent("newdir/n.txt", fspb.EventType_EVENT_TYPE_WRITE))
		if err := os.WriteFile(e.HostPath(w+"/sub/deeper/d.txt"), []byte("d"), 0o644); err != nil {
			t.Fatal(err)
		}
		waitEvent(t, s, "WRITE sub/deeper/d.txt", isEvent("sub/deeper/d.txt", fspb.EventType_EVENT_TYPE_WRITE))
		if err := os.Remove(e.HostPath(w + "/sub/file.txt")); err != nil {
			t.Fatal(err)
		}
		ev, _ = waitEvent(t, s, "REMOVE sub/file.txt", isEvent("sub/file.txt", fspb.EventType_EVENT_TYPE_REMOVE))
		if ev.Entry != nil {
			t.Errorf("REMOVE with an entry: %v", ev)
		}

		// chmod and rename inside the tree.
		if err := os.Chmod(e.HostPath(w+"/sub/deeper/d.txt"), 0o600); err != nil {
			t.Fatal(err)
		}
		waitEvent(t, s, "CHMOD sub/deeper/d.txt", isEvent("sub/deeper/d.txt", fspb.EventType_EVENT_TYPE_CHMOD))
		if err := os.Rename(e.HostPath(w+"/sub/deeper/d.txt"), e.HostPath(w+"/sub/renamed.txt")); err != nil {
			t.Fatal(err)
		}
		waitEvent(t, s, "RENAME sub/deeper/d.txt", isEvent("sub/deeper/d.txt", fspb.EventType_EVENT_TYPE_RENAME))
		waitEvent(t, s, "CREATE sub/renamed.txt", isEvent("sub/renamed.txt", fspb.EventType_EVENT_TYPE_CREATE))

		// Writes through /files (the SDK's files.write) are WRITE events too, both for
		// a new file and for an overwrite.
		for i, content := range []string{"first", "second"} {
			r := uploadRaw(t, e, query("path", w+"/sub/uploaded.txt"), []byte(content))
			if r.status != 200 {
				t.Fatalf("upload %d: %d %s", i, r.status, r.body)
			}
			waitEvent(t, s, "WRITE sub/uploaded.txt after upload", isEvent("sub/uploaded.txt", fspb.EventType_EVENT_TYPE_WRITE))
		}

		// include_entry attaches the entry, with the absolute path.
		s2 := openWatch(t, c, &fspb.WatchDirRequest{Path: w, Recursive: true, IncludeEntry: true})
		if err := os.WriteFile(e.HostPath(w+"/sub/entry.txt"), []byte("12345"), 0o644); err != nil {
			t.Fatal(err)
		}
		ev, _ = waitEvent(t, s2, "WRITE sub/entry.txt", isEvent("sub/entry.txt", fspb.EventType_EVENT_TYPE_WRITE))
		en := ev.GetEntry()
		if en == nil || en.GetPath() != w+"/sub/entry.txt" || en.GetName() != "entry.txt" || en.GetType() != fspb.FileType_FILE_TYPE_FILE || en.GetSize() != 5 {
			t.Errorf("WRITE entry: %v", en)
		}
		if err := os.Mkdir(e.HostPath(w+"/sub/entrydir"), 0o755); err != nil {
			t.Fatal(err)
		}
		ev, _ = waitEvent(t, s2, "CREATE sub/entrydir", isEvent("sub/entrydir", fspb.EventType_EVENT_TYPE_CREATE))
		if en := ev.GetEntry(); en == nil || en.GetPath() != w+"/sub/entrydir" || en.GetType() != fspb.FileType_FILE_TYPE_DIRECTORY {
			t.Errorf("CREATE entry: %v", en)
		}

		// Not recursive: changes below a subdirectory are not reported, changes of the
		// directory itself are (relative paths resolve against home).
		s3 := openWatch(t, c, &fspb.WatchDirRequest{Path: strings.TrimPrefix(w, "/home/user/")})
		if err := os.WriteFile(e.HostPath(w+"/sub/ignored.txt"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(e.HostPath(w+"/top.txt"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, before = waitEvent(t, s3, "WRITE top.txt", isEvent("top.txt", fspb.EventType_EVENT_TYPE_WRITE))
		for _, ev := range before {
			if strings.Contains(ev.GetName(), "ignored") {
				t.Errorf("non-recursive watch reported %v", ev)
			}
		}

		hostWrite(t, e, dir+"/plain.txt", "x")
		testutil.WantCode(t, "WatchDir on a file", watchErr(t, c, &fspb.WatchDirRequest{Path: dir + "/plain.txt"}), connect.CodeInvalidArgument, "path "+dir+"/plain.txt not a directory")
		testutil.WantCode(t, "WatchDir on a missing dir", watchErr(t, c, &fspb.WatchDirRequest{Path: dir + "/nope"}), connect.CodeNotFound, "path "+dir+"/nope not found")
	})
}

// An idle WatchDir stream gets keepalives at the requested interval and is ended by the
// server with deadline_exceeded when Connect-Timeout-Ms elapses.
func TestE2EFilesystemWatchDirKeepaliveAndDeadline(t *testing.T) {
	t.Parallel()
	e := userEnvd(t)
	forCodecs(t, func(t *testing.T, codec envdtest.Codec, dir string) {
		c := e.Filesystem(codec)
		hostMkdir(t, e, dir+"/idle")
		// No client-side deadline (only a safety net): the header alone must make the
		// server end the stream.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		safety := time.AfterFunc(15*time.Second, cancel)
		defer safety.Stop()
		req := fsReq(&fspb.WatchDirRequest{Path: dir + "/idle"}, "Keepalive-Ping-Interval", "1", "Connect-Timeout-Ms", "2500")
		start := time.Now()
		s, err := c.WatchDir(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var starts, keepalives, others int
		for s.Receive() {
			switch {
			case s.Msg().GetStart() != nil:
				starts++
			case s.Msg().GetKeepalive() != nil:
				keepalives++
			default:
				others++
			}
		}
		elapsed := time.Since(start)
		if starts != 1 || keepalives < 1 || others != 0 {
			t.Errorf("idle stream: %d start, %d keepalive, %d other messages; want 1, ≥1, 0", starts, keepalives, others)
		}
		if ctx.Err() != nil {
			t.Fatalf("the server did not end the stream within 15 s (Connect-Timeout-Ms 2500)")
		}
		if connect.CodeOf(s.Err()) != connect.CodeDeadlineExceeded {
			t.Errorf("stream ended with %v, want deadline_exceeded", s.Err())
		}
		if elapsed < 2*time.Second || elapsed > 6*time.Second {
			t.Errorf("stream ended after %v, want about 2.5 s", elapsed)
		}
	})
}

func TestE2EFilesystemPollingWatcher(t *testing.T) {
	t.Parallel()
	e := userEnvd(t)
	forCodecs(t, func(t *testing.T, codec envdtest.Codec, dir string) {
		c := e.Filesystem(codec)
		w := dir + "/polled"
		hostMkdir(t, e, w+"/sub")
		resp, err := c.CreateWatcher(context.Background(), fsReq(&fspb.CreateWatcherRequest{Path: w, Recursive: true, IncludeEntry: true}))
		if err != nil {
			t.Fatal(err)
		}
		id := resp.Msg.GetWatcherId()
		if !strings.HasPrefix(id, "w") || len(id) < 2 {
			t.Errorf("watcher id %q, want w + random id", id)
		}
		poll := func() ([]*fspb.FilesystemEvent, error) {
			r, err := c.GetWatcherEvents(context.Background(), fsReq(&fspb.GetWatcherEventsRequest{WatcherId: id}))
			if err != nil {
				return nil, err
			}
			return r.Msg.GetEvents(), nil
		}

		if evs, err := poll(); err != nil || len(evs) != 0 {
			t.Fatalf("first poll before any change: %v %v", evs, err)
		}
		if err := os.WriteFile(e.HostPath(w+"/sub/f.txt"), []byte("abc"), 0o644); err != nil {
			t.Fatal(err)
		}
		var all []*fspb.FilesystemEvent
		var write *fspb.FilesystemEvent
		for deadline := time.Now().Add(5 * time.Second); write == nil; {
			evs, err := poll()
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, evs...)
			for _, ev := range evs {
				if isEvent("sub/f.txt", fspb.EventType_EVENT_TYPE_WRITE)(ev) {
					write = ev
				}
			}
			if write == nil && time.Now().After(deadline) {
				t.Fatalf("no WRITE sub/f.txt within 5 s; events: %v", all)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !isEvent("sub/f.txt", fspb.EventType_EVENT_TYPE_CREATE)(all[0]) {
			t.Errorf("polled events %v, want CREATE sub/f.txt first", all)
		}
		if en := write.GetEntry(); en == nil || en.GetPath() != w+"/sub/f.txt" || en.GetSize() != 3 {
			t.Errorf("WRITE entry: %v", write.GetEntry())
		}
		// Drained: nothing happened since.
		if evs, err := poll(); err != nil || len(evs) != 0 {
			t.Errorf("second poll: %v %v, want no events", evs, err)
		}

		if _, err := c.RemoveWatcher(context.Background(), fsReq(&fspb.RemoveWatcherRequest{WatcherId: id})); err != nil {
			t.Fatal(err)
		}
		_, err = poll()
		testutil.WantCode(t, "GetWatcherEvents after RemoveWatcher", err, connect.CodeNotFound, fmt.Sprintf("watcher with id %s not found", id))
		_, err = c.RemoveWatcher(context.Background(), fsReq(&fspb.RemoveWatcherRequest{WatcherId: id}))
		testutil.WantCode(t, "second RemoveWatcher", err, connect.CodeNotFound, "")
		_, err = c.GetWatcherEvents(context.Background(), fsReq(&fspb.GetWatcherEventsRequest{WatcherId: "wnosuchwatcher"}))
		testutil.WantCode(t, "GetWatcherEvents of an unknown id", err, connect.CodeNotFound, "watcher with id wnosuchwatcher not found")

		hostWrite(t, e, dir+"/plain.txt", "x")
		_, err = c.CreateWatcher(context.Background(), fsReq(&fspb.CreateWatcherRequest{Path: dir + "/plain.txt"}))
		testutil.WantCode(t, "CreateWatcher on a file", err, connect.CodeInvalidArgument, "path "+dir+"/plain.txt not a directory")
		_, err = c.CreateWatcher(context.Background(), fsReq(&fspb.CreateWatcherRequest{Path: dir + "/nope"}))
		testutil.WantCode(t, "CreateWatcher on a missing dir", err, connect.CodeNotFound, "")
	})
}
