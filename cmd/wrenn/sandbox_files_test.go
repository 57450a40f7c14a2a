package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// `wrenn sandbox files ls|mkdir|rm` send the routes' requests (path escaped in the
// query) and print what they answer: a table named relative to the listed directory,
// paths with -q, JSON; a listing cut short says so on stderr.
func TestSandboxFiles(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.RequestURI())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == "GET" && r.URL.Query().Get("path") == "/big":
			io.WriteString(w, `{"entries":[{"name":"a","path":"/big/a","type":"file","size":1,"mode":420,"permissions":"-rw-r--r--","owner":"user","group":"user"}],"truncated":true}`)
		case r.Method == "GET":
			io.WriteString(w, `{"entries":[
				{"name":"src","path":"/home/user/p q/src","type":"dir","size":4096,"mode":493,"permissions":"drwxr-xr-x","owner":"user","group":"user","modified_at":"2026-01-02T03:04:05Z"},
				{"name":"main.go","path":"/home/user/p q/src/main.go","type":"file","size":13,"mode":420,"permissions":"-rw-r--r--","owner":"user","group":"user","modified_at":"2026-01-02T03:04:05Z"},
				{"name":"ln","path":"/home/user/p q/ln","type":"symlink","size":7,"mode":511,"permissions":"Lrwxrwxrwx","owner":"user","group":"user","symlink_target":"/etc/hosts"}],"truncated":false}`)
		case r.Method == "POST":
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"name":"d","path":"/home/user/d","type":"dir","size":4096,"mode":493,"permissions":"drwxr-xr-x","owner":"user","group":"user"}`)
		case r.URL.Query().Get("path") == "/missing":
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":{"code":"not_found","message":"not found: path not found: /missing"}}`)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	t.Cleanup(srv.Close)
	env := map[string]string{"WRENN_URL": srv.URL, "WRENN_API_KEY": "wrn_0123456789abcdef0123456789abcdef"}
	const id = "sb0123456789abcdefgh"
	for _, c := range []struct {
		args           []string
		code           int
		req            string
		want, wantNot  []string
		exact, wantErr string
	}{
		{args: []string{"sandbox", "files", "ls", id, "/home/user/p q"}, req: "GET /v1/sandboxes/" + id + "/files/list?path=%2Fhome%2Fuser%2Fp+q&depth=1",
			want: []string{"NAME", "MODIFIED", "src ", "src/main.go", "file", "13", "2026-01-02T03:04:05Z", "symlink"}, wantNot: []string{"OWNER", "/etc/hosts", "/home/user"}},
		{args: []string{"sandbox", "files", "ls", "--depth", "3", "-o", "wide", id, "/home/user/p q/"}, req: "GET /v1/sandboxes/" + id + "/files/list?path=%2Fhome%2Fuser%2Fp+q%2F&depth=3",
			want: []string{"OWNER", "PERMISSIONS", "-rw-r--r--", "/etc/hosts", "src/main.go"}},
		{args: []string{"sandbox", "files", "ls", "-q", id, "/home/user/p q"}, exact: "/home/user/p q/src\n/home/user/p q/src/main.go\n/home/user/p q/ln\n"},
		{args: []string{"sandbox", "files", "ls", "-o", "json", id, "/home/user/p q"}, want: []string{`"symlink_target": "/etc/hosts"`, `"mode": 420`}},
		{args: []string{"sandbox", "files", "ls", id, "/big"}, wantErr: "listing truncated: the first 1 entries shown"},
		{args: []string{"sandbox", "files", "mkdir", id, "/home/user/d"}, req: "POST /v1/sandboxes/" + id + "/files/mkdir?path=%2Fhome%2Fuser%2Fd", want: []string{"d ", "dir", "drwxr-xr-x"}},
		{args: []string{"sandbox", "files", "mkdir", "-q", id, "/home/user/d"}, exact: "/home/user/d\n"},
		{args: []string{"sandbox", "files", "rm", id, "/home/user/d"}, req: "DELETE /v1/sandboxes/" + id + "/files?path=%2Fhome%2Fuser%2Fd", exact: "/home/user/d\n"},
		{args: []string{"sandbox", "files", "rm", id, "/missing"}, code: 1, wantErr: "path not found: /missing"},
		{args: []string{"sandbox", "files", "rm", id}, code: 2},
		{args: []string{"sandbox", "files", "ls", "-o", "xml", id, "/"}, code: 2},
	} {
		mu.Lock()
		got = nil
		mu.Unlock()
		a, out, errOut := newTestApp(t, env, "")
		if code := run(context.Background(), a, c.args); code != c.code {
			t.Errorf("%v: exit %d, want %d (stderr %q)", c.args, code, c.code, errOut)
			continue
		}
		mu.Lock()
		sent := got
		mu.Unlock()
		if c.req != "" && (len(sent) != 1 || sent[0] != c.req) {
			t.Errorf("%v sent %q, want %q", c.args, sent, c.req)
		}
		if c.code == 2 && len(sent) != 0 {
			t.Errorf("%v: a usage error sent %q", c.args, sent)
		}
		for _, w := range c.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%v: stdout lacks %q:\n%s", c.args, w, out)
			}
		}
		for _, w := range c.wantNot {
			if strings.Contains(out.String(), w) {
				t.Errorf("%v: stdout has %q:\n%s", c.args, w, out)
			}
		}
		if c.exact != "" && out.String() != c.exact {
			t.Errorf("%v: stdout %q, want %q", c.args, out, c.exact)
		}
		if c.wantErr != "" && !strings.Contains(errOut.String(), c.wantErr) {
			t.Errorf("%v: stderr %q lacks %q", c.args, errOut, c.wantErr)
		}
	}
}
