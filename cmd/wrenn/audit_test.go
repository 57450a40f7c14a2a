package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeAuditAPI answers the audit log routes with one page of three entries (a user's,
// an API key's and the system's) and more after it, as the control plane does for
// a user's token; an API key is refused. It records each request's URI. It returns
// the CLI, logged in with "tok", and its environment.
func fakeAuditAPI(t *testing.T) (*[]string, *sync.Mutex, *app, *bytes.Buffer, *bytes.Buffer, map[string]string) {
	t.Helper()
	var mu sync.Mutex
	var uris []string
	page := map[string]any{"audit_logs": []any{
		map[string]any{"id": 3, "team_id": "t1", "action": "sandbox.destroy", "resource_type": "sandbox", "resource_id": "sb0123456789abcdefgh",
			"metadata": map[string]any{}, "created_at": "2025-01-02T03:04:05.123456Z", "actor": map[string]any{"type": "system"}},
		map[string]any{"id": 2, "team_id": "t1", "action": "sandbox.create", "resource_type": "sandbox", "resource_id": "sb0123456789abcdefgh",
			"metadata": map[string]any{"template": "base"}, "created_at": "2025-01-02T03:04:04Z",
			"actor": map[string]any{"type": "api_key", "id": "k1", "prefix": "wrn_0a1b2c", "name": "ci"}},
		map[string]any{"id": 1, "team_id": "t1", "action": "user.signup", "resource_type": "user", "resource_id": "u1",
			"metadata": map[string]any{}, "created_at": "2025-01-02T03:04:03Z", "actor": map[string]any{"type": "user", "id": "u1", "email": "ann@example.com"}},
	}, "next_before": "2025-01-02T03:04:03Z", "next_before_id": 1}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		uris = append(uris, r.URL.RequestURI())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusForbidden)
			json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": "forbidden", "message": "forbidden: this route needs a user's token"}})
			return
		}
		json.NewEncoder(w).Encode(page)
	}))
	t.Cleanup(srv.Close)
	env := map[string]string{}
	a, out, errOut := newTestApp(t, env, "")
	saveLogin(t, a, srv.URL, "tok")
	return &uris, &mu, a, out, errOut, env
}

// `wrenn audit` sends its filters and page flags as the route's query and prints
// each actor's shape; --json prints the page as the API answers it.
func TestAuditCommand(t *testing.T) {
	uris, mu, a, stdout, stderr, env := fakeAuditAPI(t)
	for _, c := range []struct {
		args []string
		code int
		uri  string // "" for none sent
		out  []string
		more bool // the next page's flags are printed (stderr)
	}{
		{[]string{"audit"}, 0, "/v1/audit-logs", []string{"system", "key ci (wrn_0a1b2c)", "ann@example.com", "sandbox.create", "sandbox sb0123456789abcdefgh"}, true},
		{[]string{"audit", "--action", "sandbox.create,sandbox.destroy", "--actor", "system", "--resource-type", "sandbox", "--limit", "3"}, 0,
			"/v1/audit-logs?action=sandbox.create&action=sandbox.destroy&actor=system&limit=3&resource_type=sandbox", []string{"sandbox.destroy"}, true},
		{[]string{"audit", "--before", "2025-01-02T03:04:03Z", "--before-id", "1"}, 0,
			"/v1/audit-logs?before=2025-01-02T03%3A04%3A03Z&before_id=1", nil, true},
		{[]string{"audit", "--all", "--team", "t1,t2"}, 0, "/v1/admin/audit-logs?team_id=t1&team_id=t2", []string{"user.signup"}, true},
		{[]string{"audit", "-o", "wide"}, 0, "/v1/audit-logs", []string{"TEAM  METADATA", `t1    {"template":"base"}`}, true},
		{[]string{"audit", "-q"}, 0, "/v1/audit-logs", []string{"3\n2\n1\n"}, true},
		{[]string{"audit", "--json"}, 0, "/v1/audit-logs", []string{`"next_before_id": 1`, `"prefix": "wrn_0a1b2c"`, `"type": "system"`}, false},
		{[]string{"audit", "-o", "yaml"}, 0, "/v1/audit-logs", []string{"next_before_id: 1", "prefix: wrn_0a1b2c"}, false},
		{[]string{"audit", "--team", "t1"}, exitUsage, "", nil, false},
		{[]string{"audit", "--before", "2025-01-02T03:04:03Z"}, exitUsage, "", nil, false},
		{[]string{"audit", "--before", "yesterday", "--before-id", "1"}, exitUsage, "", nil, false},
		{[]string{"audit", "extra"}, exitUsage, "", nil, false},
	} {
		mu.Lock()
		*uris = nil
		mu.Unlock()
		code, out, errOut := runApp(a, stdout, stderr, c.args...)
		if code != c.code {
			t.Errorf("%v: exit %d, want %d (%s)", c.args, code, c.code, errOut)
		}
		if more := strings.Contains(errOut, "more: --before 2025-01-02T03:04:03Z --before-id 1\n"); more != c.more {
			t.Errorf("%v: next page's flags printed %t, want %t (stderr %q)", c.args, more, c.more, errOut)
		}
		for _, want := range c.out {
			if !strings.Contains(out, want) {
				t.Errorf("%v printed %q, want %q in it", c.args, out, want)
			}
		}
		mu.Lock()
		got := *uris
		mu.Unlock()
		if (c.uri == "" && len(got) != 0) || (c.uri != "" && (len(got) != 1 || got[0] != c.uri)) {
			t.Errorf("%v sent %v, want %q", c.args, got, c.uri)
		}
	}
	// An API key (WRENN_API_KEY wins over the saved login) is refused by the server: exit 1.
	env["WRENN_API_KEY"] = "wrn_0123456789abcdef0123456789abcdef"
	if code, _, _ := runApp(a, stdout, stderr, "audit"); code != 1 {
		t.Errorf("with an API key: exit %d, want 1", code)
	}
}
