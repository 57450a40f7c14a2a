package filesystem

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	rpc "github.com/wrennhq/wrenn/gen/envd/filesystem"
	"github.com/wrennhq/wrenn/internal/testutil"
)

// poll calls GetWatcherEvents until cond holds for everything received so far.
func (e *env) poll(t *testing.T, id, what string, cond func([]*rpc.FilesystemEvent) bool) []*rpc.FilesystemEvent {
	t.Helper()
	var got []*rpc.FilesystemEvent
	deadline := time.Now().Add(evTimeout)
	for !cond(got) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out polling for %s; got %s", what, evString(got))
		}
		res, err := e.client.GetWatcherEvents(ctx(t), connect.NewRequest(&rpc.GetWatcherEventsRequest{WatcherId: id}))
		if err != nil {
			t.Fatalf("GetWatcherEvents: %v", err)
		}
		got = append(got, res.Msg.GetEvents()...)
		time.Sleep(20 * time.Millisecond)
	}
	return got
}

func TestPollingWatcher(t *testing.T) {
	eachCodec(t, func(t *testing.T, e *env) {
		before := inotifyFDs(t)
		res, err := e.client.CreateWatcher(ctx(t), connect.NewRequest(&rpc.CreateWatcherRequest{Path: e.dir, Recursive: true, IncludeEntry: true}))
		if err != nil {
			t.Fatal(err)
		}
		id := res.Msg.GetWatcherId()
		if !regexp.MustCompile(`^w[a-z0-9]{16,}$`).MatchString(id) {
			t.Fatalf("watcher id %q, want w + random", id)
		}
		res2, err := e.client.CreateWatcher(ctx(t), connect.NewRequest(&rpc.CreateWatcherRequest{Path: e.dir}))
		if err != nil {
			t.Fatal(err)
		}
		if res2.Msg.GetWatcherId() == id {
			t.Fatal("two watchers got the same id")
		}

		mkdir(t, e.path("sub"))
		e.poll(t, id, "CREATE sub", hasAll("sub", evCreate))
		writeFile(t, e.path("sub", "f"), "data", 0o644)
		got := e.poll(t, id, "WRITE sub/f", hasAll("sub/f", evCreate, "sub/f", evWrite))
		if en := find(got, "sub/f", evWrite).GetEntry(); en.GetPath() != e.path("sub", "f") || en.GetName() != "f" || en.GetType() != rpc.FileType_FILE_TYPE_FILE {
			t.Fatalf("entry %v", en)
		}
		// Events were drained by the polls; nothing new has happened since.
		time.Sleep(100 * time.Millisecond)
		again, err := e.client.GetWatcherEvents(ctx(t), connect.NewRequest(&rpc.GetWatcherEventsRequest{WatcherId: id}))
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range again.Msg.GetEvents() {
			if ev.GetName() == "sub" && ev.GetType() == evCreate {
				t.Fatalf("event returned twice: %v", ev)
			}
		}

		// The non-recursive watcher saw only the top level.
		got = e.poll(t, res2.Msg.GetWatcherId(), "CREATE sub (non-recursive)", hasAll("sub", evCreate))
		for _, ev := range got {
			if strings.HasPrefix(ev.GetName(), "sub/") {
				t.Fatalf("non-recursive watcher reported %v", ev)
			}
		}

		for _, w := range []string{id, res2.Msg.GetWatcherId()} {
			if _, err := e.client.RemoveWatcher(ctx(t), connect.NewRequest(&rpc.RemoveWatcherRequest{WatcherId: w})); err != nil {
				t.Fatal(err)
			}
		}
		if n := inotifyFDs(t); n != before {
			t.Fatalf("%d inotify fds after RemoveWatcher, want %d", n, before)
		}
		_, err = e.client.GetWatcherEvents(ctx(t), connect.NewRequest(&rpc.GetWatcherEventsRequest{WatcherId: id}))
		testutil.WantCode(t, "GetWatcherEvents after RemoveWatcher", err, connect.CodeNotFound, "watcher with id "+id+" not found")
		_, err = e.client.RemoveWatcher(ctx(t), connect.NewRequest(&rpc.RemoveWatcherRequest{WatcherId: id}))
		testutil.WantCode(t, "second RemoveWatcher", err, connect.CodeNotFound, "watcher with id "+id+" not found")
	})
}

func TestCreateWatcherErrors(t *testing.T) {
	eachCodec(t, func(t *testing.T, e *env) {
		missing := e.path("missing")
		_, err := e.client.CreateWatcher(ctx(t), connect.NewRequest(&rpc.CreateWatcherRequest{Path: missing}))
		testutil.WantCode(t, "CreateWatcher on a missing dir", err, connect.CodeNotFound, "path "+missing+" not found: ")
		writeFile(t, e.path("f"), "", 0o644)
		_, err = e.client.CreateWatcher(ctx(t), connect.NewRequest(&rpc.CreateWatcherRequest{Path: e.path("f")}))
		testutil.WantCode(t, "CreateWatcher on a file", err, connect.CodeInvalidArgument, "path "+e.path("f")+" not a directory")
		_, err = e.client.CreateWatcher(ctx(t), connect.NewRequest(&rpc.CreateWatcherRequest{Path: "~nobody/x"}))
		testutil.WantCode(t, "CreateWatcher of ~nobody/x", err, connect.CodeInvalidArgument, "invalid path")
	})
}

// A watcher nobody polls stops at its buffer bound and reports that on the next poll.
func TestPollingWatcherOverflow(t *testing.T) {
	e := newEnv(t, codecs[1])
	e.svc.maxBuffered = 5
	before := inotifyFDs(t)
	res, err := e.client.CreateWatcher(ctx(t), connect.NewRequest(&rpc.CreateWatcherRequest{Path: e.dir}))
	if err != nil {
		t.Fatal(err)
	}
	id := res.Msg.GetWatcherId()
	for i := range 10 {
		writeFile(t, e.path(fmt.Sprintf("f%d", i)), "x", 0o644)
	}
	testutil.WaitFor(t, evTimeout, "overflowed watcher to release inotify", func() bool { return inotifyFDs(t) == before })
	for range 2 { // the failure is sticky
		_, err = e.client.GetWatcherEvents(ctx(t), connect.NewRequest(&rpc.GetWatcherEventsRequest{WatcherId: id}))
		testutil.WantCode(t, "GetWatcherEvents of an overflowed watcher", err, connect.CodeResourceExhausted, "watcher "+id+" buffered more than 5 events")
	}
	if _, err := e.client.RemoveWatcher(ctx(t), connect.NewRequest(&rpc.RemoveWatcherRequest{WatcherId: id})); err != nil {
		t.Fatal(err)
	}
}

// --- raw Connect wire checks (what the JS/Python SDKs actually put on the wire) ---

func envelope(flags byte, payload []byte) []byte {
	b := make([]byte, 5, 5+len(payload))
	b[0] = flags
	binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
	return append(b, payload...)
}

func readEnvelope(r *bufio.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	payload := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	return hdr[0], payload, nil
}

func jsonEqual(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("bad JSON %q: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestWatchDirWireJSON(t *testing.T) {
	e := newEnv(t, codecs[1])
	body := fmt.Sprintf(`{"path":%q,"include_entry":true}`, e.dir) // snake_case accepted
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/filesystem.Filesystem/WatchDir", bytes.NewReader(envelope(0, []byte(body))))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/connect+json")
	req.Header.Set("Connect-Protocol-Version", "1")
	req.Header.Set("Keepalive-Ping-Interval", "1")
	req.Header.Set("Connect-Timeout-Ms", "2600")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/connect+json" {
		t.Fatalf("status %d content-type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	r := bufio.NewReader(resp.Body)
	flags, payload, err := readEnvelope(r)
	if err != nil || flags != 0 {
		t.Fatalf("first envelope: flags %d err %v", flags, err)
	}
	jsonEqual(t, payload, `{"start":{}}`)

	writeFile(t, e.path("f"), "abc", 0o644)
	var sawEvent, sawKeepalive bool
	for {
		flags, payload, err := readEnvelope(r)
		if err != nil {
			t.Fatalf("stream cut without end-of-stream: %v", err)
		}
		if flags == 0x02 {
			var end struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.Unmarshal(payload, &end); err != nil {
				t.Fatalf("end-of-stream %q: %v", payload, err)
			}
			if end.Error.Code != "deadline_exceeded" {
				t.Fatalf("end-of-stream %s, want deadline_exceeded", payload)
			}
			break
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(payload, &m); err != nil {
			t.Fatal(err)
		}
		switch {
		case m["keepalive"] != nil:
			jsonEqual(t, payload, `{"keepalive":{}}`)
			sawKeepalive = true
		case m["filesystem"] != nil:
			var fe struct {
				Name  string         `json:"name"`
				Type  string         `json:"type"`
				Entry map[string]any `json:"entry"`
			}
			if err := json.Unmarshal(m["filesystem"], &fe); err != nil {
				t.Fatal(err)
			}
			if fe.Name != "f" {
				t.Fatalf("event %s", payload)
			}
			if fe.Type == "EVENT_TYPE_WRITE" {
				sawEvent = true
				// proto3 JSON: lowerCamelCase, int64 as string, enum names, RFC 3339 times.
				if fe.Entry["size"] != "3" || fe.Entry["type"] != "FILE_TYPE_FILE" || fe.Entry["path"] != e.path("f") ||
					fe.Entry["permissions"] != "-rw-r--r--" || fe.Entry["mode"] != float64(0o644) {
					t.Fatalf("entry JSON %s", m["filesystem"])
				}
				if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(fe.Entry["modifiedTime"])); err != nil {
					t.Fatalf("modifiedTime in %s: %v", m["filesystem"], err)
				}
			}
		default:
			t.Fatalf("unexpected message %s", payload)
		}
	}
	if !sawEvent || !sawKeepalive {
		t.Fatalf("saw write event %v, keepalive %v", sawEvent, sawKeepalive)
	}
}

// Unary errors are non-2xx JSON bodies with E2B's codes and messages.
func TestUnaryWireErrors(t *testing.T) {
	e := newEnv(t, codecs[1])
	mkdir(t, e.path("d"))
	call := func(method, body, auth string) (int, map[string]any) {
		req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/filesystem.Filesystem/"+method, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, out
	}
	cases := []struct {
		method, body, auth string
		status             int
		code, msg          string
	}{
		{"Stat", fmt.Sprintf(`{"path":%q}`, e.path("nope")), "", 404, "not_found", "file not found: lstat " + e.path("nope") + ": no such file or directory"},
		{"MakeDir", fmt.Sprintf(`{"path":%q}`, e.path("d")), "", 409, "already_exists", "directory already exists: " + e.path("d")},
		{"ListDir", fmt.Sprintf(`{"path":%q}`, e.path("nope")), "", 404, "not_found", "path not found: lstat " + e.path("nope") + ": no such file or directory"},
		{"Move", fmt.Sprintf(`{"source":%q,"destination":%q}`, e.path("nope"), e.path("x")), "", 404, "not_found", "source file not found: lstat " + e.path("nope") + ": no such file or directory"},
		{"GetWatcherEvents", `{"watcherId":"wnope"}`, "", 404, "not_found", "watcher with id wnope not found"},
		{"RemoveWatcher", `{"watcher_id":"wnope"}`, "", 404, "not_found", "watcher with id wnope not found"},
		{"Stat", `{"path":"/"}`, basic("ghost"), 401, "unauthenticated", "invalid username: 'ghost'"},
	}
	for _, tc := range cases {
		status, out := call(tc.method, tc.body, tc.auth)
		if status != tc.status || out["code"] != tc.code || out["message"] != tc.msg {
			t.Errorf("%s %s: got %d %v, want %d %s %q", tc.method, tc.body, status, out, tc.status, tc.code, tc.msg)
		}
	}
	// Success: a bare JSON message with camelCase fields.
	status, out := call("Stat", fmt.Sprintf(`{"path":%q}`, e.path("d")), "")
	entry, _ := out["entry"].(map[string]any)
	if status != 200 || entry["type"] != "FILE_TYPE_DIRECTORY" || entry["modifiedTime"] == nil || entry["symlinkTarget"] != nil {
		t.Fatalf("Stat: %d %v", status, out)
	}
	_ = os.Remove(e.path("d"))
}
