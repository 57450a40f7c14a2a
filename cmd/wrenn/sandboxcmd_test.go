package main

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// apiCall is one request the CLI sent.
type apiCall struct {
	method, path, key, body string
}

// fakeAPI answers every sandbox route with a sandbox in status, and records the calls.
func fakeAPI(t *testing.T, status string) (*[]apiCall, *sync.Mutex) {
	t.Helper()
	var mu sync.Mutex
	var calls []apiCall
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		calls = append(calls, apiCall{r.Method, r.URL.Path, r.Header.Get("X-API-Key"), string(b)})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/v1/sandboxes/sb000000000000000409/pause" {
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, `{"error":{"code":"conflict","message":"conflict: sandbox sb000000000000000409 is paused: cannot pause"}}`)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"id": "sb0123456789abcdefgh", "template": "base", "status": status,
			"vcpus": 1, "memory_mb": 512, "created_at": time.Now()})
	}))
	t.Cleanup(srv.Close)
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("WRENN_URL", srv.URL)
	t.Setenv("WRENN_API_KEY", "wrn_0123456789abcdef0123456789abcdef")
	return &calls, &mu
}

// `wrenn sandbox pause ID` and `wrenn sandbox resume ID [--timeout N]` send the
// routes' requests; the timeout is seconds or a duration, before or after the ID.
func TestSandboxPauseResume(t *testing.T) {
	calls, mu := fakeAPI(t, "paused")
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
		mu.Lock()
		*calls = nil
		mu.Unlock()
		if code := run(ctx, c.args); code != c.code {
			t.Errorf("%v: exit %d, want %d", c.args, code, c.code)
		}
		mu.Lock()
		got := *calls
		mu.Unlock()
		if len(got) != 1 || got[0].method != c.want.method || got[0].path != c.want.path || got[0].body != c.want.body || got[0].key == "" {
			t.Errorf("%v sent %+v, want %+v with the API key", c.args, got, c.want)
		}
	}
	// Usage errors reach no server.
	mu.Lock()
	*calls = nil
	mu.Unlock()
	for _, args := range [][]string{
		{"sandbox", "pause"},
		{"sandbox", "pause", "a", "b"},
		{"sandbox", "resume", "sb0123456789abcdefgh", "--timeout", "soon"},
		{"sandbox", "resume", "sb0123456789abcdefgh", "--timeout", "-5"},
	} {
		if code := run(ctx, args); code != 1 {
			t.Errorf("%v: exit %d, want 1", args, code)
		}
	}
	if code := run(ctx, []string{"sandbox", "resume", "-h"}); code != 0 {
		t.Errorf("resume -h: exit %d", code)
	}
	if len(*calls) != 0 {
		t.Errorf("usage errors sent %+v", *calls)
	}
}

// Flags after the positional arguments are read; "--" ends them.
func TestParseInterspersed(t *testing.T) {
	for _, c := range []struct {
		args    []string
		json    bool
		timeout string
		rest    []string
	}{
		{[]string{"ID"}, false, "", []string{"ID"}},
		{[]string{"ID", "--json"}, true, "", []string{"ID"}},
		{[]string{"--json", "ID", "--timeout", "5"}, true, "5", []string{"ID"}},
		{[]string{"A", "--timeout", "5", "B"}, false, "5", []string{"A", "B"}},
		{[]string{"A", "--", "--json"}, false, "", []string{"A", "--json"}},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		asJSON := fs.Bool("json", false, "")
		timeout := fs.String("timeout", "", "")
		if err := parseInterspersed(fs, c.args); err != nil {
			t.Errorf("%v: %v", c.args, err)
			continue
		}
		if *asJSON != c.json || *timeout != c.timeout || len(fs.Args()) != len(c.rest) {
			t.Errorf("%v: json %v timeout %q args %q", c.args, *asJSON, *timeout, fs.Args())
			continue
		}
		for i := range c.rest {
			if fs.Arg(i) != c.rest[i] {
				t.Errorf("%v: args %q, want %q", c.args, fs.Args(), c.rest)
			}
		}
	}
}
