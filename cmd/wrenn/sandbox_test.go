package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// apiCall is one request the CLI sent.
type apiCall struct {
	method, path, key, body string
}

// fakeAPI answers the sandbox routes: every sandbox is in status, the list holds two,
// exec answers with exit code 3, pausing sb000000000000000409 is a 409. It records
// the calls and returns the settings that point the CLI at it with an API key.
func fakeAPI(t *testing.T, status string) (*[]apiCall, *sync.Mutex, map[string]string) {
	t.Helper()
	var mu sync.Mutex
	var calls []apiCall
	sandbox := func(id string) map[string]any {
		return map[string]any{"id": id, "template": "base", "status": status, "vcpus": 1, "memory_mb": 512,
			"timeout_sec": 300, "created_at": time.Now().Add(-90 * time.Second),
			"limits": map[string]any{"cpus": 1, "memory_bytes": 768 << 20, "pids": 512, "jail_uid": 1000000007,
				"disk_bytes_per_sec": 256 << 20, "disk_ops_per_sec": 8000}}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		calls = append(calls, apiCall{r.Method, r.URL.Path, r.Header.Get("X-API-Key"), string(b)})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/v1/sandboxes/sb000000000000000409/pause":
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, `{"error":{"code":"conflict","message":"conflict: sandbox sb000000000000000409 is paused: cannot pause"}}`)
		case r.Method == "GET" && r.URL.Path == "/v1/sandboxes":
			json.NewEncoder(w).Encode(map[string]any{"sandboxes": []any{sandbox("sb0123456789abcdefgh"), sandbox("sb1111111111111111xx")}})
		case r.Method == "DELETE":
			w.WriteHeader(http.StatusNoContent)
		case strings.HasSuffix(r.URL.Path, "/exec"):
			json.NewEncoder(w).Encode(map[string]any{"exit_code": 3, "stdout": "out\n", "stderr": "err\n"})
		default:
			json.NewEncoder(w).Encode(sandbox("sb0123456789abcdefgh"))
		}
	}))
	t.Cleanup(srv.Close)
	return &calls, &mu, map[string]string{"WRENN_URL": srv.URL, "WRENN_API_KEY": "wrn_0123456789abcdef0123456789abcdef"}
}

// take returns the calls recorded so far and forgets them.
func take(calls *[]apiCall, mu *sync.Mutex) []apiCall {
	mu.Lock()
	defer mu.Unlock()
	got := *calls
	*calls = nil
	return got
}

// `wrenn sandbox pause ID` and `wrenn sandbox resume ID [--timeout N]` send the
// routes' requests; the timeout is seconds or a duration, before or after the ID.
func TestSandboxPauseResume(t *testing.T) {
	calls, mu, env := fakeAPI(t, "paused")
	ctx := context.Background()
	for _, c := range []struct {
		args []string
		code int
		want apiCall
	}{
		{[]string{"sandbox", "pause", "sb0123456789abcdefgh"}, 0, apiCall{"POST", "/v1/sandboxes/sb0123456789abcdefgh/pause", "", ""}},
		{[]string{"sandbox", "resume", "sb0123456789abcdefgh"}, 0, apiCall{"POST", "/v1/sandboxes/sb0123456789abcdefgh/resume", "", ""}},
		{[]string{"sandbox", "resume", "sb0123456789abcdefgh", "--timeout", "300"}, 0, apiCall{"POST", "/v1/sandboxes/sb0123456789abcdefgh/resume", "", `{"timeout_sec":300}`}},
		{[]string{"sandbox", "resume", "--timeout", "10m", "--json", "sb0123456789abcdefgh"}, 0, apiCall{"POST", "/v1/sandboxes/sb0123456789abcdefgh/resume", "", `{"timeout_sec":600}`}},
		{[]string{"sandbox", "resume", "sb0123456789abcdefgh", "--timeout", "1.5s"}, 0, apiCall{"POST", "/v1/sandboxes/sb0123456789abcdefgh/resume", "", `{"timeout_sec":2}`}},
		{[]string{"sandbox", "pause", "sb000000000000000409"}, 1, apiCall{"POST", "/v1/sandboxes/sb000000000000000409/pause", "", ""}},
	} {
		a, _, _ := newTestApp(t, env, "")
		if code := run(ctx, a, c.args); code != c.code {
			t.Errorf("%v: exit %d, want %d", c.args, code, c.code)
		}
		got := take(calls, mu)
		if len(got) != 1 || got[0].method != c.want.method || got[0].path != c.want.path || got[0].body != c.want.body || got[0].key == "" {
			t.Errorf("%v sent %+v, want %+v with the API key", c.args, got, c.want)
		}
	}
	// Usage errors reach no server and exit 2.
	for _, args := range [][]string{
		{"sandbox", "pause"},
		{"sandbox", "pause", "a", "b"},
		{"sandbox", "resume", "sb0123456789abcdefgh", "--timeout", "soon"},
		{"sandbox", "resume", "sb0123456789abcdefgh", "--timeout", "-5"},
		{"sandbox", "ls", "-o", "xml"},
		{"sandbox", "create", "--env", "NOEQUALS"},
		{"sandbox", "rm"},
		{"sandbox", "rm", "--all", "sb0123456789abcdefgh"},
	} {
		a, _, _ := newTestApp(t, env, "")
		if code := run(ctx, a, args); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	a, _, _ := newTestApp(t, env, "")
	if code := run(ctx, a, []string{"sandbox", "resume", "-h"}); code != 0 {
		t.Errorf("resume -h: exit %d", code)
	}
	if got := take(calls, mu); len(got) != 0 {
		t.Errorf("usage errors sent %+v", got)
	}
}

// Lists and gets print a table (wide adds columns), JSON, YAML or bare ids; create
// -q prints the id alone, so that scripts can capture it.
func TestSandboxOutputFormats(t *testing.T) {
	_, _, env := fakeAPI(t, "running")
	ctx := context.Background()
	for _, c := range []struct {
		args      []string
		want      []string // lines or fragments in stdout
		wantNot   []string
		exactLine string
	}{
		{args: []string{"sandbox", "ls"}, want: []string{"ID", "STATUS", "sb0123456789abcdefgh  base", "running", "1m"}, wantNot: []string{"CREATED", "\x1b["}},
		{args: []string{"sandbox", "ls", "-o", "wide"}, want: []string{"CREATED", "IDLE TIMEOUT", "5m0s", "LIMITS", "1 CPU, 768 MiB, 512 tasks, uid 1000000007, disk 256 MiB/s, 8000 IOPS"}},
		{args: []string{"sandbox", "ls", "-q"}, exactLine: "sb0123456789abcdefgh\nsb1111111111111111xx\n"},
		{args: []string{"sandbox", "ls", "-o", "json"}, want: []string{`"id": "sb0123456789abcdefgh"`, `"timeout_sec": 300`}},
		{args: []string{"sandbox", "ls", "-o", "yaml"}, want: []string{"- id: sb0123456789abcdefgh\n  template: base\n  status: running"}},
		{args: []string{"sandbox", "get", "-o", "yaml", "sb0123456789abcdefgh"}, want: []string{"id: sb0123456789abcdefgh\ntemplate: base\n"}},
		{args: []string{"sandbox", "create", "-q"}, exactLine: "sb0123456789abcdefgh\n"},
		{args: []string{"sandbox", "create", "--json"}, want: []string{`"status": "running"`}},
	} {
		a, stdout, stderr := newTestApp(t, env, "")
		if code := run(ctx, a, c.args); code != 0 {
			t.Errorf("%v: exit %d: %s", c.args, code, stderr)
			continue
		}
		out := stdout.String()
		if c.exactLine != "" && out != c.exactLine {
			t.Errorf("%v printed %q, want exactly %q", c.args, out, c.exactLine)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v printed %q, want %q in it", c.args, out, w)
			}
		}
		for _, w := range c.wantNot {
			if strings.Contains(out, w) {
				t.Errorf("%v printed %q, want no %q in it", c.args, out, w)
			}
		}
	}
}

// create sends the flags' values; env and metadata are KEY=VALUE, internet only
// when given.
func TestSandboxCreateRequest(t *testing.T) {
	calls, mu, env := fakeAPI(t, "running")
	a, _, stderr := newTestApp(t, env, "")
	args := []string{"sandbox", "create", "--template", "py", "--vcpus", "2", "--memory", "1024", "--timeout", "10m",
		"--env", "A=1", "--env", "B=x=y", "--metadata", "owner=ci", "--internet=false"}
	if code := run(context.Background(), a, args); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	got := take(calls, mu)
	if len(got) != 1 || got[0].method != "POST" || got[0].path != "/v1/sandboxes" {
		t.Fatalf("sent %+v", got)
	}
	var body any // re-encoded: keys sorted
	if err := json.Unmarshal([]byte(got[0].body), &body); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(body)
	want := `{"allow_internet_access":false,"env_vars":{"A":"1","B":"x=y"},"memory_mb":1024,"metadata":{"owner":"ci"},"template":"py","timeout_sec":600,"vcpus":2}`
	if string(b) != want {
		t.Errorf("body %s\nwant %s", b, want)
	}
	// Not a terminal: the progress is a plain line on stderr.
	if !strings.HasPrefix(stderr.String(), "creating a sandbox from py (") {
		t.Errorf("progress: %q", stderr)
	}
}

// rm destroys one sandbox without asking, several or --all only when confirmed on a
// terminal or with --yes; without a terminal nothing is destroyed.
func TestSandboxRemove(t *testing.T) {
	calls, mu, env := fakeAPI(t, "running")
	ctx := context.Background()
	deletes := func(got []apiCall) (ids []string) {
		for _, c := range got {
			if c.method == "DELETE" {
				ids = append(ids, strings.TrimPrefix(c.path, "/v1/sandboxes/"))
			}
		}
		return ids
	}
	a, stdout, _ := newTestApp(t, env, "")
	if code := run(ctx, a, []string{"sandbox", "rm", "sb0123456789abcdefgh"}); code != 0 || stdout.String() != "sb0123456789abcdefgh\n" {
		t.Errorf("rm ID: exit %d, printed %q", code, stdout)
	}
	if d := deletes(take(calls, mu)); len(d) != 1 {
		t.Errorf("rm ID deleted %v", d)
	}
	a, _, stderr := newTestApp(t, env, "y\n") // a "y" on a pipe is not a confirmation
	if code := run(ctx, a, []string{"sandbox", "rm", "sb0123456789abcdefgh", "sb1111111111111111xx"}); code != 1 || !strings.Contains(stderr.String(), "--yes") {
		t.Errorf("rm two ids without a terminal: exit %d, stderr %q", code, stderr)
	}
	if d := deletes(take(calls, mu)); len(d) != 0 {
		t.Errorf("unconfirmed rm deleted %v", d)
	}
	a, _, _ = newTestApp(t, env, "n\n")
	a.inTTY = true
	if code := run(ctx, a, []string{"sandbox", "rm", "--all"}); code != 1 {
		t.Errorf("rm --all answered n: exit %d", code)
	}
	if d := deletes(take(calls, mu)); len(d) != 0 {
		t.Errorf("rm --all answered n deleted %v", d)
	}
	a, _, stderr = newTestApp(t, env, "yes\n")
	a.inTTY = true
	if code := run(ctx, a, []string{"sandbox", "rm", "--all"}); code != 0 || !strings.Contains(stderr.String(), "Destroy 2 sandboxes") {
		t.Errorf("rm --all answered yes: exit %d, stderr %q", code, stderr)
	}
	if d := deletes(take(calls, mu)); strings.Join(d, " ") != "sb0123456789abcdefgh sb1111111111111111xx" {
		t.Errorf("rm --all deleted %v", d)
	}
	a, _, _ = newTestApp(t, env, "")
	if code := run(ctx, a, []string{"sandbox", "rm", "-y", "sb0123456789abcdefgh", "sb1111111111111111xx"}); code != 0 {
		t.Errorf("rm -y two ids: exit %d", code)
	}
	if d := deletes(take(calls, mu)); len(d) != 2 {
		t.Errorf("rm -y deleted %v", d)
	}
}

// exec prints the command's output and exits with its status; everything after the
// id is the command's, its flags included.
func TestSandboxExec(t *testing.T) {
	calls, mu, env := fakeAPI(t, "running")
	a, stdout, stderr := newTestApp(t, env, "")
	code := run(context.Background(), a, []string{"sandbox", "exec", "sb0123456789abcdefgh", "ls", "-la", "--color"})
	if code != 3 || stdout.String() != "out\n" || stderr.String() != "err\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	got := take(calls, mu)
	if len(got) != 1 || !strings.Contains(got[0].body, `"args":["-la","--color"],"cmd":"ls"`) {
		t.Errorf("sent %+v", got)
	}
	a, _, _ = newTestApp(t, env, "")
	if code := run(context.Background(), a, []string{"sandbox", "exec", "--timeout", "5", "sb0123456789abcdefgh", "--", "true"}); code != 3 {
		t.Errorf("exec --timeout 5 ID -- true: exit %d", code)
	}
	if got := take(calls, mu); len(got) != 1 || !strings.Contains(got[0].body, `"cmd":"true"`) {
		t.Errorf("sent %+v", got)
	}
}
