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
	"time"
)

// fakeKeysHostsAPI answers the API key and host routes for the token "tok" (anything
// else is a 403): one key never used, one host online, a new key and a new host
// (with its registration token) on POST, 204 to changes, 404 for an unknown id. It
// records each request as "METHOD URI BODY" and returns the CLI, logged in.
func fakeKeysHostsAPI(t *testing.T) (*[]string, *sync.Mutex, *app, *bytes.Buffer, *bytes.Buffer, string) {
	t.Helper()
	var mu sync.Mutex
	var reqs []string
	host := map[string]any{"id": "h1", "team_id": "", "name": "worker-1", "status": "online", "address": "10.0.0.2:50051",
		"agent_version": "v1.2.3", "vcpus": 16, "memory_mb": 65536, "sandboxes": 3, "tags": []string{"gpu", "ssd"},
		"created_at": "2025-01-02T03:04:05Z", "last_heartbeat_at": "2025-01-02T04:04:05Z"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		reqs = append(reqs, strings.TrimSpace(r.Method+" "+r.URL.RequestURI()+" "+string(b)))
		mu.Unlock()
		var body map[string]any
		_ = json.Unmarshal(b, &body)
		w.Header().Set("Content-Type", "application/json")
		reply := func(status int, v any) {
			w.WriteHeader(status)
			if v != nil {
				json.NewEncoder(w).Encode(v)
			}
		}
		switch route := r.Method + " " + r.URL.Path; {
		case r.Header.Get("Authorization") != "Bearer tok":
			reply(403, map[string]any{"error": map[string]string{"code": "forbidden", "message": "forbidden"}})
		case route == "POST /v1/api-keys":
			reply(201, map[string]any{"id": "k2", "name": body["name"], "prefix": "wrn_9f8e7d", "created_at": "2025-01-03T03:04:05Z",
				"key": "wrn_9f8e7d6c5b4a39281706f5e4d3c2b1a0", "e2b_key": "e2b_9f8e7d6c5b4a39281706f5e4d3c2b1a0"})
		case route == "GET /v1/api-keys":
			reply(200, map[string]any{"api_keys": []any{map[string]any{"id": "k1", "name": "ci", "prefix": "wrn_0a1b2c", "created_by": "u1",
				"created_at": "2025-01-02T03:04:05Z", "last_used_at": nil}}})
		case route == "DELETE /v1/api-keys/k1", route == "DELETE /v1/hosts/h1", route == "PUT /v1/hosts/h1/tags/gpu", route == "DELETE /v1/hosts/h1/tags/gpu":
			reply(204, nil)
		case route == "POST /v1/hosts":
			h := map[string]any{"registration_token": "wrnh_secret", "registration_token_expires_at": time.Now().Add(time.Hour).Format(time.RFC3339)}
			for k, v := range host {
				h[k] = v
			}
			h["id"], h["name"], h["status"] = "h2", body["name"], "pending"
			reply(201, h)
		case route == "GET /v1/hosts":
			reply(200, map[string]any{"hosts": []any{host}})
		case route == "GET /v1/hosts/h1":
			reply(200, host)
		default:
			reply(404, map[string]any{"error": map[string]string{"code": "not_found", "message": "not found: " + route}})
		}
	}))
	t.Cleanup(srv.Close)
	a, out, errOut := newTestApp(t, nil, "")
	saveLogin(t, a, srv.URL, "tok")
	return &reqs, &mu, a, out, errOut, srv.URL
}

// `wrenn keys …` and `wrenn host …` send their requests, print tables, JSON, YAML or
// ids, and refuse wrong arguments before any request.
func TestKeysAndHostCommands(t *testing.T) {
	reqs, mu, a, stdout, stderr, url := fakeKeysHostsAPI(t)
	for _, c := range []struct {
		args    []string
		code    int
		request string // "" for none sent
		out     []string
	}{
		{[]string{"keys", "create", "laptop", "of", "Ann"}, 0, `POST /v1/api-keys {"name":"laptop of Ann"}`,
			[]string{"KEY (shown once)", "k2  laptop of Ann  wrn_9f8e7d6c5b4a39281706f5e4d3c2b1a0  e2b_9f8e7d6c5b4a39281706f5e4d3c2b1a0\n"}},
		{[]string{"keys", "create", "--json", "cli"}, 0, `POST /v1/api-keys {"name":"cli"}`, []string{`"key": "wrn_9f8e7d6c5b4a39281706f5e4d3c2b1a0"`, `"e2b_key"`}},
		{[]string{"keys", "create", "-q", "ci"}, 0, `POST /v1/api-keys {"name":"ci"}`, []string{"wrn_9f8e7d6c5b4a39281706f5e4d3c2b1a0\n"}},
		{[]string{"keys", "ls"}, 0, "GET /v1/api-keys", []string{"ID  NAME  PREFIX       CREATED               LAST USED\n", "k1  ci    wrn_0a1b2c…  2025-01-02T03:04:05Z  never\n"}},
		{[]string{"keys", "ls", "-o", "wide"}, 0, "GET /v1/api-keys", []string{"LAST USED  CREATED BY\n", "never      u1\n"}},
		{[]string{"keys", "ls", "-q"}, 0, "GET /v1/api-keys", []string{"k1\n"}},
		{[]string{"keys", "rm", "k1"}, 0, "DELETE /v1/api-keys/k1", nil},
		{[]string{"keys", "rm", "k9"}, 1, "DELETE /v1/api-keys/k9", nil},
		{[]string{"keys", "create"}, exitUsage, "", nil},
		{[]string{"keys", "rm"}, exitUsage, "", nil},
		{[]string{"keys", "rm", "k1", "k2"}, exitUsage, "", nil},
		{[]string{"keys", "ls", "x"}, exitUsage, "", nil},
		{[]string{"keys", "bogus"}, exitUsage, "", nil},

		{[]string{"host", "create", "--platform", "worker-2"}, 0, `POST /v1/hosts {"name":"worker-2","platform":true}`,
			[]string{"host h2 created", "wrenn agent --server " + url + " --token wrnh_secret --advertise ADDRESS:50051"}},
		{[]string{"host", "create", "gpu-box", "--json"}, 0, `POST /v1/hosts {"name":"gpu-box","platform":false}`, []string{`"registration_token": "wrnh_secret"`, `"id": "h2"`}},
		{[]string{"host", "create", "-q", "gpu-box"}, 0, `POST /v1/hosts {"name":"gpu-box","platform":false}`, []string{"h2\n"}},
		{[]string{"host", "ls"}, 0, "GET /v1/hosts", []string{"ID  NAME      STATUS  ADDRESS", "h1  worker-1  online  10.0.0.2:50051  16     65536 MiB  3          gpu,ssd\n"}},
		{[]string{"host", "ls", "-o", "wide"}, 0, "GET /v1/hosts", []string{"platform  v1.2.3", "2025-01-02T04:04:05Z\n"}},
		{[]string{"host", "get", "h1", "-o", "yaml"}, 0, "GET /v1/hosts/h1", []string{"name: worker-1", "- gpu"}},
		{[]string{"host", "rm", "h1"}, 0, "DELETE /v1/hosts/h1", nil},
		{[]string{"host", "rm", "--force", "h1"}, 0, "DELETE /v1/hosts/h1?force=true", nil},
		{[]string{"host", "tag", "h1", "gpu"}, 0, "PUT /v1/hosts/h1/tags/gpu", nil},
		{[]string{"host", "untag", "h1", "gpu"}, 0, "DELETE /v1/hosts/h1/tags/gpu", nil},
		{[]string{"host", "get", "h9"}, 1, "GET /v1/hosts/h9", nil},
		{[]string{"host", "create"}, exitUsage, "", nil},
		{[]string{"host", "get"}, exitUsage, "", nil},
		{[]string{"host", "tag", "h1"}, exitUsage, "", nil},
		{[]string{"host", "rm", "--platform", "h1"}, exitUsage, "", nil}, // create's flag, not rm's
		{[]string{"host", "ls", "-o", "xml"}, exitUsage, "", nil},
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
		mu.Lock()
		got := *reqs
		mu.Unlock()
		if (c.request == "" && len(got) != 0) || (c.request != "" && (len(got) != 1 || got[0] != c.request)) {
			t.Errorf("%v sent %q, want %q", c.args, got, c.request)
		}
	}
}
