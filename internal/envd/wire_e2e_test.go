package envd_test

// The JSON wire format of the filesystem service, checked byte by byte over raw HTTP.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/envd/envdtest"
)

// rawRPC posts a unary Connect request with a hand-written JSON body and returns the
// status, Content-Type and decoded JSON body.
func rawRPC(t *testing.T, e *envdtest.Envd, method, body string) (int, string, map[string]any) {
	t.Helper()
	resp := e.Post(t, "/filesystem.Filesystem/"+method, body, "Connect-Protocol-Version", "1")
	raw := envdtest.ReadAll(t, resp)
	var out map[string]any
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		t.Fatalf("%s: body %q is not a JSON object: %v", method, raw, err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), out
}

// The JSON the SDKs actually parse (spec §1.3): lowerCamelCase names, int64 as strings,
// enums as names, RFC 3339 timestamps; snake_case requests accepted; errors as
// {"code","message"}; stream envelopes with a JSON end-of-stream message.
func TestE2EFilesystemJSONWire(t *testing.T) {
	t.Parallel()
	e := userEnvd(t)
	hostWrite(t, e, "/home/user/wire/a.txt", "abcd")
	hostSymlink(t, e, "a.txt", "/home/user/wire/link")
	hostMkdir(t, e, "/home/user/wire/sub")

	status, ct, body := rawRPC(t, e, "Stat", `{"path":"/home/user/wire/link"}`)
	if status != 200 || ct != "application/json" {
		t.Fatalf("Stat: %d %q %v", status, ct, body)
	}
	entry, _ := body["entry"].(map[string]any)
	for k, want := range map[string]any{
		"name": "link", "type": "FILE_TYPE_FILE", "path": "/home/user/wire/link", "mode": float64(420),
		"permissions": "Lrwxrwxrwx", "owner": "user", "group": "user", "symlinkTarget": "/home/user/wire/a.txt",
	} {
		if entry[k] != want {
			t.Errorf("Stat JSON %s = %#v, want %#v (entry %v)", k, entry[k], want, entry)
		}
	}
	if size, ok := entry["size"].(string); !ok || size == "" {
		t.Errorf("Stat JSON size = %#v, want an int64 string", entry["size"])
	}
	if mt, ok := entry["modifiedTime"].(string); !ok || !strings.HasSuffix(mt, "Z") {
		t.Errorf("Stat JSON modifiedTime = %#v, want an RFC 3339 UTC string", entry["modifiedTime"])
	} else if _, err := time.Parse(time.RFC3339Nano, mt); err != nil {
		t.Errorf("Stat JSON modifiedTime %q: %v", mt, err)
	}
	for k := range entry {
		if strings.Contains(k, "_") {
			t.Errorf("Stat JSON has snake_case key %q", k)
		}
	}
	_, _, body = rawRPC(t, e, "Stat", `{"path":"/home/user/wire/a.txt"}`)
	if entry, _ := body["entry"].(map[string]any); entry["size"] != "4" {
		t.Errorf("Stat JSON size of a.txt = %#v, want \"4\"", entry["size"])
	}

	// snake_case and numeric enum-free requests; a depth given as a number.
	status, _, body = rawRPC(t, e, "ListDir", `{"path":"/home/user/wire","depth":2}`)
	entries, _ := body["entries"].([]any)
	if status != 200 || len(entries) != 3 {
		t.Errorf("ListDir JSON: %d %v", status, body)
	}
	status, _, body = rawRPC(t, e, "CreateWatcher", `{"path":"/home/user/wire","recursive":true,"include_entry":true}`)
	id, _ := body["watcherId"].(string)
	if status != 200 || !strings.HasPrefix(id, "w") {
		t.Fatalf("CreateWatcher JSON: %d %v", status, body)
	}
	status, _, body = rawRPC(t, e, "GetWatcherEvents", `{"watcher_id":"`+id+`"}`)
	if status != 200 || len(body) != 0 {
		t.Errorf("GetWatcherEvents (snake_case) with no events: %d %v, want 200 {}", status, body)
	}
	if status, _, body = rawRPC(t, e, "RemoveWatcher", `{"watcherId":"`+id+`"}`); status != 200 || len(body) != 0 {
		t.Errorf("RemoveWatcher JSON: %d %v", status, body)
	}

	// Unary errors.
	status, ct, body = rawRPC(t, e, "Stat", `{"path":"/home/user/wire/missing"}`)
	if msg, _ := body["message"].(string); status != 404 || ct != "application/json" || body["code"] != "not_found" || !strings.Contains(msg, "file not found") {
		t.Errorf("Stat missing: %d %q %v", status, ct, body)
	}
	status, _, body = rawRPC(t, e, "MakeDir", `{"path":"/home/user/wire/sub"}`)
	if status != 409 || body["code"] != "already_exists" {
		t.Errorf("MakeDir existing: %d %v", status, body)
	}
	status, _, body = rawRPC(t, e, "ListDir", `{"path":"/home/user/wire/a.txt"}`)
	if status != 400 || body["code"] != "invalid_argument" {
		t.Errorf("ListDir of a file: %d %v", status, body)
	}

	// A WatchDir stream, byte for byte: start, keepalive, then a JSON end-of-stream
	// message carrying deadline_exceeded.
	for _, codec := range []string{"json", "proto"} {
		var payload []byte
		if codec == "json" {
			payload = []byte(`{"path":"/home/user/wire"}`)
		} else {
			payload = append([]byte{0x0a, byte(len("/home/user/wire"))}, "/home/user/wire"...)
		}
		frame := append([]byte{0, 0, 0, 0, byte(len(payload))}, payload...)
		req, err := http.NewRequest(http.MethodPost, e.URL+"/filesystem.Filesystem/WatchDir", bytes.NewReader(frame))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/connect+"+codec)
		req.Header.Set("Connect-Protocol-Version", "1")
		req.Header.Set("Connect-Timeout-Ms", "1500")
		req.Header.Set("Keepalive-Ping-Interval", "1")
		resp, err := e.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/connect+"+codec {
			t.Fatalf("%s WatchDir: %d %q", codec, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		type envelope struct {
			flags   byte
			payload string
		}
		var envs []envelope
		for len(raw) >= 5 {
			n := int(binary.BigEndian.Uint32(raw[1:5]))
			if len(raw) < 5+n {
				t.Fatalf("%s WatchDir: truncated envelope", codec)
			}
			envs = append(envs, envelope{raw[0], string(raw[5 : 5+n])})
			raw = raw[5+n:]
		}
		if len(raw) != 0 || len(envs) < 3 {
			t.Fatalf("%s WatchDir: envelopes %q, trailing %q", codec, envs, raw)
		}
		last := envs[len(envs)-1]
		var end struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if last.flags != 0x02 || json.Unmarshal([]byte(last.payload), &end) != nil || end.Error.Code != "deadline_exceeded" {
			t.Errorf("%s WatchDir: end-of-stream %#x %q, want 0x02 with a deadline_exceeded JSON error", codec, last.flags, last.payload)
		}
		if codec == "json" {
			if envs[0].flags != 0 || envs[0].payload != `{"start":{}}` || envs[1].flags != 0 || envs[1].payload != `{"keepalive":{}}` {
				t.Errorf("json WatchDir messages %q, want {\"start\":{}} then {\"keepalive\":{}}", envs)
			}
		} else if envs[0].payload != "\x0a\x00" || envs[1].payload != "\x1a\x00" {
			t.Errorf("proto WatchDir messages %q, want start (field 1) then keepalive (field 3)", envs)
		}
	}
}
