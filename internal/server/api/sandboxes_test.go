package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"mime/multipart"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wrennhq/wrenn/internal/server/servertest"
)

// sandboxRoutes is every route that takes a sandbox id, with a valid request each.
func sandboxRoutes(id string) []struct{ method, path, body string } {
	return []struct{ method, path, body string }{
		{"GET", "/v1/sandboxes/" + id, ""},
		{"GET", "/v1/sandboxes/" + id + "/logs", ""},
		{"POST", "/v1/sandboxes/" + id + "/exec", `{"cmd":"echo","args":["secret"]}`},
		{"POST", "/v1/sandboxes/" + id + "/ping", ""},
		{"GET", "/v1/sandboxes/" + id + "/files/read?path=/home/user/data", ""},
		{"GET", "/v1/sandboxes/" + id + "/files/stream/read?path=/home/user/data", ""},
		{"POST", "/v1/sandboxes/" + id + "/files/write?path=/home/user/x", "x"},
		{"POST", "/v1/sandboxes/" + id + "/files/stream/write?path=/home/user/x", "x"},
		{"GET", "/v1/sandboxes/" + id + "/files/list?path=/home/user&depth=2", ""},
		{"POST", "/v1/sandboxes/" + id + "/files/mkdir?path=/home/user/newdir", ""},
		{"DELETE", "/v1/sandboxes/" + id + "/files?path=/home/user/data", ""},
		{"GET", "/v1/sandboxes/" + id + "/exec/stream", ""},
		{"POST", "/v1/sandboxes/" + id + "/pause", ""},
		{"POST", "/v1/sandboxes/" + id + "/resume", `{"timeout_sec":60}`},
		{"DELETE", "/v1/sandboxes/" + id, ""},
	}
}

func (c call) send(method, path, body string) (int, map[string]any) {
	c.t.Helper()
	switch {
	case strings.Contains(path, "/files/") && method == "POST":
		status, raw, _ := c.raw(method, path, "application/octet-stream", strings.NewReader(body))
		return status, decodeMaybe(raw)
	case strings.HasSuffix(path, "/exec/stream"):
		status, raw, _ := c.raw(method, path, "", nil) // not an upgrade: the auth check still answers first
		return status, decodeMaybe(raw)
	}
	return c.do(method, path, body)
}

func TestSandboxLifecycle(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	ann := signup(anon, "ann@example.com")
	annC := anon.bearer(ann["token"].(string))
	_, key := annC.do("POST", "/v1/api-keys", `{"name":"k"}`)
	keyC := anon.with("X-API-Key", key["key"].(string))

	status, sb := keyC.do("POST", "/v1/sandboxes", `{"template":"base","vcpus":2,"memory_mb":1024,"timeout_sec":300,"allow_internet_access":false,"env_vars":{"X":"42"},"metadata":{"purpose":"test"}}`)
	if status != 201 || sb["status"] != "running" || sb["vcpus"] != float64(2) || sb["memory_mb"] != float64(1024) || sb["timeout_sec"] != float64(300) {
		t.Fatalf("create: %d %v", status, sb)
	}
	id := sb["id"].(string)
	if len(id) != 20 || !strings.HasPrefix(id, "sb") || strings.Trim(id, "abcdefghijklmnopqrstuvwxyz0123456789") != "" {
		t.Errorf("id %q is not sb + 18 base36", id)
	}
	if status, list := annC.do("GET", "/v1/sandboxes", ""); status != 200 || len(list["sandboxes"].([]any)) != 1 {
		t.Errorf("list with the user's token: %d %v", status, list)
	}
	if status, got := keyC.do("GET", "/v1/sandboxes/"+id, ""); status != 200 || got["metadata"].(map[string]any)["purpose"] != "test" {
		t.Errorf("get: %d %v", status, got)
	}
	status, out := keyC.do("POST", "/v1/sandboxes/"+id+"/exec", `{"cmd":"printenv","args":["X"]}`)
	if status != 200 || out["stdout"] != "42\n" || out["exit_code"] != float64(0) || out["encoding"] != "utf-8" {
		t.Errorf("exec sees the sandbox's env: %d %v", status, out)
	}
	status, out = keyC.do("POST", "/v1/sandboxes/"+id+"/exec", `{"cmd":"printenv","args":["Y"],"env_vars":{"Y":"y"},"cwd":"/tmp","timeout_sec":5}`)
	if status != 200 || out["stdout"] != "y\n" {
		t.Errorf("exec with env_vars: %d %v", status, out)
	}
	if status, out := keyC.do("POST", "/v1/sandboxes/"+id+"/exec", `{"cmd":"sh","args":["-c","exit 7"]}`); status != 200 || out["exit_code"] != float64(7) {
		t.Errorf("exit code: %d %v", status, out)
	}
	// Files: multipart and raw uploads, both read routes; binary content comes back
	// as base64 through exec.
	blob := []byte{0, 1, 2, 0xff, 0xfe}
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	_ = mw.WriteField("path", "/home/user/blob")
	fw, _ := mw.CreateFormFile("file", "blob")
	fw.Write(blob)
	mw.Close()
	if status, raw, _ := keyC.raw("POST", "/v1/sandboxes/"+id+"/files/write", mw.FormDataContentType(), &form); status != 200 || !strings.Contains(string(raw), `"size":5`) {
		t.Errorf("multipart write: %d %s", status, raw)
	}
	for _, read := range []string{"/files/read", "/files/stream/read"} {
		if status, raw, hdr := keyC.raw("GET", "/v1/sandboxes/"+id+read+"?path=/home/user/blob", "", nil); status != 200 || !bytes.Equal(raw, blob) || hdr.Get("Content-Type") != "application/octet-stream" {
			t.Errorf("%s: %d %q", read, status, raw)
		}
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB, chunked
	if status, raw, _ := keyC.raw("POST", "/v1/sandboxes/"+id+"/files/stream/write?path=/home/user/big", "application/octet-stream", struct{ *bytes.Reader }{bytes.NewReader(big)}); status != 200 {
		t.Errorf("chunked write: %d %s", status, raw)
	}
	if status, raw, _ := keyC.raw("GET", "/v1/sandboxes/"+id+"/files/stream/read?path=/home/user/big", "", nil); status != 200 || !bytes.Equal(raw, big) {
		t.Errorf("chunked read back: %d, %d bytes", status, len(raw))
	}
	if status, out := keyC.do("POST", "/v1/sandboxes/"+id+"/exec", `{"cmd":"cat","args":["/home/user/blob"]}`); status != 200 || out["encoding"] != "base64" || out["stdout"] != "AAEC//4=" {
		t.Errorf("binary exec output: %d %v", status, out)
	}
	if status, _ := keyC.do("POST", "/v1/sandboxes/"+id+"/ping", ""); status != 204 {
		t.Errorf("ping: %d", status)
	}

	// Bad input: 4xx with a message, nothing half-made.
	for _, c := range []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/v1/sandboxes", `{"vcpus":-1}`, 400},
		{"POST", "/v1/sandboxes", `{"vcpus":999}`, 400},
		{"POST", "/v1/sandboxes", `{"template":"nope"}`, 404},
		{"POST", "/v1/sandboxes", `{"gpu":true}`, 400},
		{"POST", "/v1/sandboxes", `{"timeout_sec":-5}`, 400},
		{"POST", "/v1/sandboxes/" + id + "/exec", `{}`, 400},
		{"POST", "/v1/sandboxes/" + id + "/exec", `{"cmd":"true","timeout_sec":100000}`, 400},
		{"POST", "/v1/sandboxes/" + id + "/exec", `{"cmd":"true","stdin":true}`, 400},
		{"POST", "/v1/sandboxes/" + id + "/exec", `not json`, 400},
		{"GET", "/v1/sandboxes/" + id + "/files/read", "", 400},
		// A relative path is the user's home's (as in E2B's envd); this one does not exist.
		{"GET", "/v1/sandboxes/" + id + "/files/read?path=relative", "", 404},
		{"GET", "/v1/sandboxes/" + id + "/files/read?path=/missing", "", 404},
		{"GET", "/v1/sandboxes/sbnotanid", "", 404},
		{"GET", "/v1/sandboxes/..%2F..%2Fetc", "", 404},
		{"GET", "/v1/sandboxes/sb0123456789abcdefgh", "", 404},
	} {
		if status, body := keyC.send(c.method, c.path, c.body); status != c.status || errCode(body) == "" {
			t.Errorf("%s %s %s: %d %v, want %d with an error body", c.method, c.path, c.body, status, body, c.status)
		}
	}
	if status, body := keyC.send("POST", "/v1/sandboxes/"+id+"/files/write", "x"); status != 400 || errCode(body) == "" {
		t.Errorf("write without a path: %d %v", status, body)
	}
	if n := len(env.Agent.Manager.List()); n != 1 {
		t.Errorf("bad creates left %d sandboxes on the agent", n)
	}
	if n := env.Agent.Calls("CreateSandbox"); n != 2 {
		t.Errorf("the agent saw %d creates; only the first and the unknown template should reach it", n)
	}

	// A create the host refuses or fails is recorded on the sandbox with the reason
	// (sandboxes are never deleted), never left pending; internals stay in the record.
	env.Agent.Driver.FailNextStart(errors.New("disk full"))
	if status, body := keyC.do("POST", "/v1/sandboxes", `{}`); status != 500 || errCode(body) != "internal" || strings.Contains(body["error"].(map[string]any)["message"].(string), "disk") {
		t.Errorf("agent failure: %d %v", status, body)
	}
	// Failed creates are listed when asked for, not among the team's live sandboxes.
	if _, live := keyC.do("GET", "/v1/sandboxes", ""); len(live["sandboxes"].([]any)) != 1 {
		t.Errorf("the default listing shows failed creates: %v", live)
	}
	_, list := keyC.do("GET", "/v1/sandboxes?state=running,error", "")
	var failed []string
	for _, s := range list["sandboxes"].([]any) {
		switch m := s.(map[string]any); m["status"] {
		case "error":
			failed = append(failed, m["error"].(string))
		case "running":
		default:
			t.Errorf("sandbox left as %v", m)
		}
	}
	// The agent's own words: which template, and what failed.
	slices.Sort(failed)
	if len(failed) != 2 || !strings.HasSuffix(failed[0], ": disk full") || !strings.HasPrefix(failed[1], `template "nope": `) {
		t.Errorf("failed creates recorded as %q", failed)
	}

	if status, _ := keyC.do("DELETE", "/v1/sandboxes/"+id, ""); status != 204 {
		t.Fatalf("destroy: %d", status)
	}
	if status, got := keyC.do("GET", "/v1/sandboxes/"+id, ""); status != 200 || got["status"] != "stopped" || got["stopped_at"] == nil {
		t.Errorf("after destroy: %d %v", status, got)
	}
	for _, c := range sandboxRoutes(id)[1:] {
		if status, body := keyC.send(c.method, c.path, c.body); status/100 != 4 || errCode(body) == "" {
			t.Errorf("%s %s on a stopped sandbox: %d %v", c.method, c.path, status, body)
		}
	}

	// The audit log has the lifecycle.
	var n int
	if err := env.DB.QueryRow(context.Background(), `SELECT count(*) FROM audit_logs WHERE resource_id = $1 AND action IN ('sandbox.create','sandbox.destroy')`, id).Scan(&n); err != nil || n != 2 {
		t.Errorf("audit entries for %s: %d %v", id, n, err)
	}
}

// Another team's key or token gets 404 on every sandbox route and never the data;
// the owner's sandbox is untouched afterwards.
func TestSandboxCrossTeam(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	ann := signup(anon, "ann@example.com")
	annC := anon.bearer(ann["token"].(string))
	_, sb := annC.do("POST", "/v1/sandboxes", `{}`)
	id := sb["id"].(string)
	keyC := annC
	if status, _, _ := annC.raw("POST", "/v1/sandboxes/"+id+"/files/write?path=/home/user/data", "application/octet-stream", strings.NewReader("ann's secret")); status != 200 {
		t.Fatal("write ann's file")
	}

	bob := signup(anon, "bob@example.com")
	bobC := anon.bearer(bob["token"].(string))
	_, bobKey := bobC.do("POST", "/v1/api-keys", `{"name":"b"}`)
	for name, other := range map[string]call{"bob's token": bobC, "bob's key": anon.with("X-API-Key", bobKey["key"].(string))} {
		for _, c := range sandboxRoutes(id) {
			status, body := other.send(c.method, c.path, c.body)
			if status != 404 || errCode(body) != "not_found" || strings.Contains(toJSON(body), "secret") {
				t.Errorf("%s: %s %s: %d %v", name, c.method, c.path, status, body)
			}
		}
		if status, list := other.do("GET", "/v1/sandboxes", ""); status != 200 || len(list["sandboxes"].([]any)) != 0 {
			t.Errorf("%s lists: %d %v", name, status, list)
		}
		// The WebSocket upgrade itself is refused before any command is read.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(env.URL, "http")+"/v1/sandboxes/"+id+"/exec/stream", &websocket.DialOptions{HTTPHeader: other.header})
		cancel()
		if err == nil || resp == nil || resp.StatusCode != 404 {
			t.Errorf("%s opening a stream: %v", name, err)
		}
	}
	if status, got := keyC.do("GET", "/v1/sandboxes/"+id, ""); status != 200 || got["status"] != "running" {
		t.Errorf("ann's sandbox after bob: %d %v", status, got)
	}
	if status, raw, _ := keyC.raw("GET", "/v1/sandboxes/"+id+"/files/read?path=/home/user/data", "", nil); status != 200 || string(raw) != "ann's secret" {
		t.Errorf("ann's file after bob: %d %q", status, raw)
	}
	if status, _ := anon.do("GET", "/v1/sandboxes/"+id, ""); status != 401 {
		t.Errorf("no credentials: %d", status)
	}
}

// API-key use is recorded at most once a minute per key (debounced in Redis), not
// on every request.
func TestAPIKeyLastUsed(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	ann := signup(anon, "ann@example.com")
	annC := anon.bearer(ann["token"].(string))
	_, key := annC.do("POST", "/v1/api-keys", `{"name":"k"}`)
	keyC := anon.with("X-API-Key", key["key"].(string))
	ctx := context.Background()
	lastUsed := func() *time.Time {
		var ts *time.Time
		if err := env.DB.QueryRow(ctx, `SELECT last_used_at FROM team_api_keys`).Scan(&ts); err != nil {
			t.Fatal(err)
		}
		return ts
	}
	if lastUsed() != nil {
		t.Fatal("a new key has been used")
	}
	keyC.do("GET", "/v1/sandboxes", "")
	first := lastUsed()
	if first == nil {
		t.Fatal("first use not recorded")
	}
	for range 5 {
		keyC.do("GET", "/v1/sandboxes", "")
	}
	if again := lastUsed(); !again.Equal(*first) {
		t.Errorf("last_used rewritten within the minute: %v then %v", first, again)
	}
	if _, list := annC.do("GET", "/v1/api-keys", ""); list["api_keys"].([]any)[0].(map[string]any)["last_used_at"] == nil {
		t.Errorf("list does not show last use: %v", list)
	}
}

func decodeMaybe(raw []byte) map[string]any {
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return out
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// Listing: live sandboxes by default, states and limit on request, and every change
// visible to the next listing (the list cache never hides a caller's own write).
func TestListSandboxes(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	c := anon.bearer(signup(anon, "ann@example.com")["token"].(string))
	ids := func(path string) []string {
		t.Helper()
		status, list := c.do("GET", path, "")
		if status != 200 {
			t.Fatalf("GET %s: %d %v", path, status, list)
		}
		var out []string
		for _, s := range list["sandboxes"].([]any) {
			out = append(out, s.(map[string]any)["id"].(string))
		}
		return out
	}
	var created []string
	for range 3 {
		_, sb := c.do("POST", "/v1/sandboxes", `{}`)
		created = append(created, sb["id"].(string))
		if got := ids("/v1/sandboxes"); len(got) != len(created) || got[0] != sb["id"] {
			t.Fatalf("right after create: %v, want %d newest first", got, len(created))
		}
	}
	c.do("DELETE", "/v1/sandboxes/"+created[0], "")
	if got := ids("/v1/sandboxes"); len(got) != 2 || strings.Contains(strings.Join(got, ","), created[0]) {
		t.Errorf("right after destroy: %v", got)
	}
	if got := ids("/v1/sandboxes?state=stopped"); len(got) != 1 || got[0] != created[0] {
		t.Errorf("stopped: %v", got)
	}
	if got := ids("/v1/sandboxes?state=all"); len(got) != 3 {
		t.Errorf("all: %v", got)
	}
	if got := ids("/v1/sandboxes?state=running,stopped&limit=2"); len(got) != 2 || got[0] != created[2] {
		t.Errorf("running,stopped limit 2: %v", got)
	}
	for _, bad := range []string{"?state=sleeping", "?limit=0", "?limit=1001", "?limit=ten"} {
		if status, body := c.do("GET", "/v1/sandboxes"+bad, ""); status != 400 || errCode(body) != "invalid_request" {
			t.Errorf("%s: %d %v", bad, status, body)
		}
	}
}

// A body that is JSON but not an object (null above all, which decodes into the zero
// request) is refused, and no sandbox is made of it.
func TestBodyMustBeAnObject(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	ann := signup(anon, "ann@example.com")
	_, key := anon.bearer(ann["token"].(string)).do("POST", "/v1/api-keys", `{"name":"k"}`)
	keyC := anon.with("X-API-Key", key["key"].(string))
	for _, body := range []string{`null`, ` null `, `[]`, `"x"`, `1`, `true`} {
		if status, resp := keyC.do("POST", "/v1/sandboxes", body); status != 400 || errCode(resp) != "invalid_json" {
			t.Errorf("create with body %s: %d %v, want 400 invalid_json", body, status, resp)
		}
	}
	if n := len(env.Agent.Manager.List()); n != 0 {
		t.Errorf("%d sandboxes made of bodies that are not objects", n)
	}
}
