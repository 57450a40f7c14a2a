package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeAdminAPI answers the platform administrators' routes as the control plane does
// for an administrator's token ("Bearer tok"): a page of one team, user and sandbox
// with more after it, the platform's templates, 204 to changes; anything else is a
// 403. It records each request as "METHOD URI BODY". It returns the CLI, logged in
// with "tok", and its environment.
func fakeAdminAPI(t *testing.T) (*[]string, *sync.Mutex, *app, *bytes.Buffer, *bytes.Buffer, map[string]string) {
	t.Helper()
	var mu sync.Mutex
	var reqs []string
	next := "bmV4dA"
	answers := map[string]any{
		"/v1/admin/teams": map[string]any{"teams": []any{map[string]any{"id": "t1", "name": "ann's team", "slug": "0123456789ab", "is_byoc": true,
			"created_at": "2025-01-02T03:04:05Z", "deleted_at": nil, "members": 3, "sandboxes": 2}}, "next_cursor": next},
		"/v1/admin/users": map[string]any{"users": []any{map[string]any{"id": "u1", "email": "a_b@example.com", "name": "Ann", "is_admin": true,
			"created_at": "2025-01-02T03:04:05Z", "teams": 2}}, "next_cursor": nil},
		"/v1/admin/sandboxes": map[string]any{"sandboxes": []any{map[string]any{"id": "sb0123456789abcdefgh", "team_id": "t1", "template": "base",
			"status": "running", "vcpus": 2, "memory_mb": 512, "created_at": "2025-01-02T03:04:05Z"}}, "next_cursor": next},
		"/v1/admin/templates": map[string]any{"templates": []any{
			map[string]any{"name": "base", "team_id": nil, "kind": "base", "base_template": nil, "vcpus": nil, "memory_mb": nil, "disk_mb": nil,
				"size_bytes": 0, "created_at": "2025-01-02T03:04:05Z", "hosts": []string{}},
			map[string]any{"name": "golden", "team_id": nil, "kind": "snapshot", "base_template": "base", "vcpus": 2, "memory_mb": 256, "disk_mb": 0,
				"size_bytes": 3 << 20, "created_at": "2025-01-02T03:04:05Z", "hosts": []string{"h1"}},
		}},
		"/v1/admin/templates/golden": map[string]any{"name": "golden", "team_id": "t1", "kind": "snapshot", "base_template": "base", "vcpus": 2,
			"memory_mb": 256, "disk_mb": 0, "size_bytes": 1, "created_at": "2025-01-02T03:04:05Z", "hosts": []string{"h1"}},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		reqs = append(reqs, strings.TrimSpace(r.Method+" "+r.URL.RequestURI()+" "+string(b)))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusForbidden)
			json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": "forbidden", "message": "forbidden: platform administrators only"}})
			return
		}
		if r.Method != http.MethodGet {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		json.NewEncoder(w).Encode(answers[r.URL.Path])
	}))
	t.Cleanup(srv.Close)
	env := map[string]string{"WRENN_DATABASE_URL": ""}
	a, out, errOut := newTestApp(t, env, "")
	saveLogin(t, a, srv.URL, "tok")
	return &reqs, &mu, a, out, errOut, env
}

// `wrenn admin`'s API commands send their flags as the routes' queries and bodies,
// print tables (or the API's JSON) and the --cursor of the next page; wrong
// arguments reach no server.
func TestAdminCommand(t *testing.T) {
	reqs, mu, a, stdout, stderr, env := fakeAdminAPI(t)
	for _, c := range []struct {
		args    []string
		code    int
		request string // "" for none sent
		out     []string
		more    bool // the next page's --cursor is printed
	}{
		{[]string{"admin", "teams"}, 0, "GET /v1/admin/teams", []string{"ann's team", "0123456789ab", "yes", "MEMBERS"}, true},
		{[]string{"admin", "teams", "--deleted", "--limit", "5", "--cursor", "abc"}, 0, "GET /v1/admin/teams?cursor=abc&include_deleted=true&limit=5", nil, true},
		{[]string{"admin", "teams", "--json"}, 0, "GET /v1/admin/teams", []string{`"next_cursor": "bmV4dA"`, `"members": 3`}, false},
		{[]string{"admin", "teams", "-q"}, 0, "GET /v1/admin/teams", []string{"t1\n"}, true},
		{[]string{"admin", "teams", "-o", "yaml"}, 0, "GET /v1/admin/teams", []string{"next_cursor: bmV4dA", "members: 3"}, false},
		{[]string{"admin", "users", "--email", "a_b"}, 0, "GET /v1/admin/users?email=a_b", []string{"a_b@example.com", "Ann"}, false},
		{[]string{"admin", "users", "--json"}, 0, "GET /v1/admin/users", []string{`"next_cursor": null`, `"is_admin": true`}, false},
		{[]string{"admin", "byoc", "t1", "on"}, 0, `PUT /v1/admin/teams/t1/byoc {"byoc":true}`, []string{"its own hosts only"}, false},
		{[]string{"admin", "byoc", "t1", "off"}, 0, `PUT /v1/admin/teams/t1/byoc {"byoc":false}`, []string{"the platform's hosts"}, false},
		{[]string{"admin", "templates"}, 0, "GET /v1/admin/templates", []string{"platform", "golden", "3 MiB", "h1", "256 MiB"}, false},
		{[]string{"admin", "templates", "--team", "t1"}, 0, "GET /v1/admin/templates?team_id=t1", nil, false},
		{[]string{"admin", "template", "get", "golden"}, 0, "GET /v1/admin/templates/golden", []string{"NAME    TEAM  KIND", "golden  t1    snapshot  base"}, false},
		{[]string{"admin", "template", "get", "golden", "--json"}, 0, "GET /v1/admin/templates/golden", []string{`"team_id": "t1"`}, false},
		{[]string{"admin", "template", "rm", "golden", "--team", "t1"}, 0, "DELETE /v1/admin/templates/golden?team_id=t1", nil, false},
		{[]string{"admin", "template", "rm", "base"}, 0, "DELETE /v1/admin/templates/base", nil, false},
		{[]string{"admin", "sandboxes", "--state", "running,paused", "--team", "t1", "--host", "h1", "--limit", "2"}, 0,
			"GET /v1/admin/sandboxes?host_id=h1&limit=2&state=running%2Cpaused&team_id=t1", []string{"sb0123456789abcdefgh", "t1", "running"}, true},
		{[]string{"admin", "byoc", "t1", "maybe"}, exitUsage, "", nil, false},
		{[]string{"admin", "byoc", "t1"}, exitUsage, "", nil, false},
		{[]string{"admin", "template", "golden"}, exitUsage, "", nil, false},
		{[]string{"admin", "template", "mv", "a", "b"}, exitUsage, "", nil, false},
		{[]string{"admin", "teams", "extra"}, exitUsage, "", nil, false},
		{[]string{"admin", "nonsense"}, exitUsage, "", nil, false},
		{[]string{"admin", "grant", "ann@example.com"}, 1, "", nil, false}, // no WRENN_DATABASE_URL
		{[]string{"admin", "grant"}, exitUsage, "", nil, false},
		{[]string{"admin", "create-user", "--name", "Ann"}, exitUsage, "", nil, false},
		{[]string{"admin", "teams", "--email", "x"}, exitUsage, "", nil, false}, // users' flag, not teams'
		{[]string{"admin", "teams", "-o", "csv"}, exitUsage, "", nil, false},
		{[]string{"admin"}, 0, "", []string{"grant, revoke and create-user go straight", "create-user"}, false}, // its help
	} {
		mu.Lock()
		*reqs = nil
		mu.Unlock()
		code, out, errOut := runApp(a, stdout, stderr, c.args...)
		if code != c.code {
			t.Errorf("%v: exit %d, want %d (%s)", c.args, code, c.code, errOut)
		}
		for _, want := range c.out {
			if !strings.Contains(out, want) {
				t.Errorf("%v printed %q, want %q in it", c.args, out, want)
			}
		}
		if more := strings.Contains(errOut, "more: --cursor bmV4dA"); more != c.more {
			t.Errorf("%v: next page's flag printed %t, want %t (stderr %q)", c.args, more, c.more, errOut)
		}
		mu.Lock()
		got := *reqs
		mu.Unlock()
		if (c.request == "" && len(got) != 0) || (c.request != "" && (len(got) != 1 || got[0] != c.request)) {
			t.Errorf("%v sent %q, want %q", c.args, got, c.request)
		}
	}
	// A non-administrator (here an API key, which WRENN_API_KEY makes the CLI send) is
	// refused by the server: exit 1.
	env["WRENN_API_KEY"] = "wrn_0123456789abcdef0123456789abcdef"
	if code, _, _ := runApp(a, stdout, stderr, "admin", "teams"); code != 1 {
		t.Errorf("refused by the server: exit %d, want 1", code)
	}
}
