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

// fakeSnapshotAPI answers the snapshot routes as the control plane does for a team
// with one snapshot, "my-snap" (3 MiB and a bit): creating "taken" without overwrite
// is a 409, any other name but "my-snap" is a 404 to get or delete. It records the
// calls.
func fakeSnapshotAPI(t *testing.T) (*[]apiCall, *sync.Mutex, map[string]string) {
	t.Helper()
	var mu sync.Mutex
	var calls []apiCall
	snap := map[string]any{"name": "my-snap", "sandbox_id": "sb0123456789abcdefgh", "template": "base", "vcpus": 2,
		"memory_mb": 512, "disk_mb": 2048, "size_bytes": 3<<20 + 1, "created_at": time.Now(), "updated_at": time.Now()}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		calls = append(calls, apiCall{r.Method, r.URL.RequestURI(), r.Header.Get("X-API-Key"), string(b)})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fail := func(status int, code, msg string) {
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
		}
		switch {
		case r.Method == "POST" && r.URL.Path == "/v1/snapshots":
			if strings.Contains(string(b), `"taken"`) && r.URL.Query().Get("overwrite") != "true" {
				fail(http.StatusConflict, "conflict", "conflict: snapshot taken exists; overwrite it or pick another name")
				return
			}
			w.WriteHeader(http.StatusCreated)
			json.NewEncoder(w).Encode(snap)
		case r.Method == "GET" && r.URL.Path == "/v1/snapshots":
			json.NewEncoder(w).Encode(map[string]any{"snapshots": []any{snap}})
		case r.URL.Path != "/v1/snapshots/my-snap":
			fail(http.StatusNotFound, "not_found", "not found: snapshot")
		case r.Method == "GET":
			json.NewEncoder(w).Encode(snap)
		case r.Method == "DELETE":
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	t.Cleanup(srv.Close)
	return &calls, &mu, map[string]string{"WRENN_URL": srv.URL, "WRENN_API_KEY": "wrn_0123456789abcdef0123456789abcdef"}
}

// `wrenn snapshot create|ls|get|rm` send the routes' requests (flags before or after
// the arguments) and print what the API answers; API errors exit 1.
func TestSnapshotCommands(t *testing.T) {
	calls, mu, env := fakeSnapshotAPI(t)
	ctx := context.Background()
	for _, c := range []struct {
		args []string
		code int
		want apiCall
		out  string // in stdout
	}{
		{[]string{"snapshot", "create", "sb0123456789abcdefgh", "my-snap"}, 0,
			apiCall{"POST", "/v1/snapshots", "", `{"name":"my-snap","sandbox_id":"sb0123456789abcdefgh"}`}, "4 MiB"},
		{[]string{"snapshot", "create", "sb0123456789abcdefgh", "taken"}, 1,
			apiCall{"POST", "/v1/snapshots", "", `{"name":"taken","sandbox_id":"sb0123456789abcdefgh"}`}, ""},
		{[]string{"snapshot", "create", "sb0123456789abcdefgh", "taken", "--overwrite"}, 0,
			apiCall{"POST", "/v1/snapshots?overwrite=true", "", `{"name":"taken","sandbox_id":"sb0123456789abcdefgh"}`}, "my-snap"},
		{[]string{"snapshot", "create", "--overwrite", "--json", "sb0123456789abcdefgh", "taken"}, 0,
			apiCall{"POST", "/v1/snapshots?overwrite=true", "", `{"name":"taken","sandbox_id":"sb0123456789abcdefgh"}`}, `"size_bytes": 3145729`},
		{[]string{"snapshot", "ls"}, 0, apiCall{"GET", "/v1/snapshots", "", ""}, "my-snap"},
		{[]string{"snapshot", "ls", "--json"}, 0, apiCall{"GET", "/v1/snapshots", "", ""}, `"name": "my-snap"`},
		{[]string{"snapshot", "get", "my-snap"}, 0, apiCall{"GET", "/v1/snapshots/my-snap", "", ""}, "2048 MiB"},
		{[]string{"snapshot", "get", "nope"}, 1, apiCall{"GET", "/v1/snapshots/nope", "", ""}, ""},
		{[]string{"snapshot", "rm", "my-snap"}, 0, apiCall{"DELETE", "/v1/snapshots/my-snap", "", ""}, ""},
		{[]string{"snapshot", "rm", "nope"}, 1, apiCall{"DELETE", "/v1/snapshots/nope", "", ""}, ""},
	} {
		mu.Lock()
		*calls = nil
		mu.Unlock()
		a, stdout, _ := newTestApp(t, env, "")
		code := run(ctx, a, c.args)
		out := stdout.String()
		if code != c.code {
			t.Errorf("%v: exit %d, want %d", c.args, code, c.code)
		}
		if !strings.Contains(out, c.out) {
			t.Errorf("%v printed %q, want %q in it", c.args, out, c.out)
		}
		mu.Lock()
		got := *calls
		mu.Unlock()
		if len(got) != 1 || got[0].method != c.want.method || got[0].path != c.want.path || got[0].body != c.want.body || got[0].key == "" {
			t.Errorf("%v sent %+v, want %+v with the API key", c.args, got, c.want)
		}
	}
}

// Wrong arguments exit 2 with where to read the usage, before any request.
func TestSnapshotUsageErrors(t *testing.T) {
	calls, mu, env := fakeSnapshotAPI(t)
	ctx := context.Background()
	for _, args := range [][]string{
		{"snapshot", "create"},
		{"snapshot", "create", "sb0123456789abcdefgh"},
		{"snapshot", "create", "sb0123456789abcdefgh", "a", "b"},
		{"snapshot", "ls", "extra"},
		{"snapshot", "get"},
		{"snapshot", "rm"},
		{"snapshot", "rm", "a", "b"},
		{"snapshot", "rm", "--force", "my-snap"},
		{"snapshot", "bogus"},
	} {
		a, _, stderr := newTestApp(t, env, "")
		if code := run(ctx, a, args); code != 2 || !strings.Contains(stderr.String(), "--help' for usage") {
			t.Errorf("%v: exit %d, want 2; stderr %q", args, code, stderr)
		}
	}
	for _, args := range [][]string{{"snapshot"}, {"snapshot", "-h"}, {"snapshot", "create", "-h"}} {
		a, stdout, _ := newTestApp(t, env, "")
		if code := run(ctx, a, args); code != 0 || !strings.Contains(stdout.String(), "Usage:") {
			t.Errorf("%v: exit %d, want 0 and the usage on stdout", args, code)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(*calls) != 0 {
		t.Errorf("usage errors sent %+v", *calls)
	}
}
