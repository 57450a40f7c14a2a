package api_test

import (
	"strings"
	"testing"

	"github.com/wrennhq/wrenn/internal/server/servertest"
)

// Directories through the API: list (depth, the entry's fields), mkdir, delete, what
// each refuses and how (the documented shapes are checked by the openapitest
// transport on every exchange). Another team's caller gets 404 on these routes too:
// they are in sandboxRoutes, which TestSandboxCrossTeam walks.
func TestFileDirectories(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	ann := signup(anon, "ann@example.com")
	annC := anon.bearer(ann["token"].(string))
	_, key := annC.do("POST", "/v1/api-keys", `{"name":"k"}`)
	keyC := anon.with("X-API-Key", key["key"].(string))
	status, sb := keyC.do("POST", "/v1/sandboxes", `{"timeout_sec":300}`)
	if status != 201 {
		t.Fatalf("create: %d %v", status, sb)
	}
	base := "/v1/sandboxes/" + sb["id"].(string)

	status, made := keyC.do("POST", base+"/files/mkdir?path=/home/user/proj/src", "")
	if status != 201 || made["type"] != "dir" || made["path"] != "/home/user/proj/src" || made["name"] != "src" || made["owner"] != "user" || made["mode"] != float64(0o755) {
		t.Fatalf("mkdir: %d %v", status, made)
	}
	if status, body := keyC.do("POST", base+"/files/mkdir?path=/home/user/proj/src", ""); status != 409 || errCode(body) != "conflict" || !strings.Contains(toJSON(body), "already exists") {
		t.Errorf("mkdir again: %d %v", status, body)
	}
	if status, raw, _ := keyC.raw("POST", base+"/files/write?path=/home/user/proj/src/a.txt", "application/octet-stream", strings.NewReader("hello")); status != 200 {
		t.Fatalf("write: %d %s", status, raw)
	}

	status, list := keyC.do("GET", base+"/files/list?path=/home/user/proj", "")
	if entries, _ := list["entries"].([]any); status != 200 || len(entries) != 1 || list["truncated"] != false || entries[0].(map[string]any)["name"] != "src" {
		t.Fatalf("list: %d %v", status, list)
	}
	// The user's own token lists as well as the team's key.
	status, list = annC.do("GET", base+"/files/list?path=/home/user/proj&depth=2", "")
	entries, _ := list["entries"].([]any)
	if status != 200 || len(entries) != 2 {
		t.Fatalf("list depth 2: %d %v", status, list)
	}
	f := entries[1].(map[string]any)
	if f["path"] != "/home/user/proj/src/a.txt" || f["type"] != "file" || f["size"] != float64(5) || f["mode"] != float64(0o644) ||
		f["permissions"] != "-rw-r--r--" || f["group"] != "user" || f["modified_at"] == nil || f["symlink_target"] != nil {
		t.Errorf("file entry: %v", f)
	}

	// Bad requests: 400 with a message, before the guest is asked.
	long := "/" + strings.Repeat("a", 4096)
	for _, c := range []struct{ method, path, want string }{
		{"GET", base + "/files/list", "path is required"},
		{"GET", base + "/files/list?path=home/user", "absolute"},
		{"GET", base + "/files/list?path=/home/user%00x", "NUL"},
		{"GET", base + "/files/list?path=" + long, "longer than"},
		{"GET", base + "/files/list?path=/home/user&depth=0", "depth"},
		{"GET", base + "/files/list?path=/home/user&depth=11", "depth"},
		{"GET", base + "/files/list?path=/home/user&depth=x", "depth"},
		{"GET", base + "/files/list?path=/home/user/proj/src/a.txt", "not a directory"},
		{"POST", base + "/files/mkdir", "path is required"},
		{"POST", base + "/files/mkdir?path=relative", "absolute"},
		{"POST", base + "/files/mkdir?path=/home/user/proj/src/a.txt", "not a directory"},
		{"DELETE", base + "/files", "path is required"},
		{"DELETE", base + "/files?path=/", "refusing to remove /"},
		{"DELETE", base + "/files?path=//", "refusing to remove /"},
		{"DELETE", base + "/files?path=/tmp/..", "refusing to remove /"},
		{"DELETE", base + "/files?path=/./", "refusing to remove /"},
	} {
		if status, body := keyC.do(c.method, c.path, ""); status != 400 || errCode(body) != "invalid_request" || !strings.Contains(toJSON(body), c.want) {
			t.Errorf("%s %.80s: %d %v, want 400 saying %q", c.method, c.path, status, body, c.want)
		}
	}
	if status, body := keyC.do("GET", base+"/files/list?path=/home/user/nope", ""); status != 404 || errCode(body) != "not_found" {
		t.Errorf("list missing: %d %v", status, body)
	}

	if status, body := keyC.do("DELETE", base+"/files?path=/home/user/proj", ""); status != 204 {
		t.Fatalf("delete: %d %v", status, body)
	}
	for _, c := range []struct{ method, path string }{
		{"GET", base + "/files/read?path=/home/user/proj/src/a.txt"},
		{"GET", base + "/files/list?path=/home/user/proj"},
		{"DELETE", base + "/files?path=/home/user/proj"},
	} {
		if status, raw, _ := keyC.raw(c.method, c.path, "", nil); status != 404 || !strings.Contains(string(raw), "not_found") {
			t.Errorf("after delete: %s %s: %d %s", c.method, c.path, status, raw)
		}
	}

	// A paused sandbox has no guest to ask: 409, with the advice to resume it.
	if status, body := keyC.do("POST", base+"/pause", ""); status != 200 {
		t.Fatalf("pause: %d %v", status, body)
	}
	for _, c := range []struct{ method, path string }{
		{"GET", base + "/files/list?path=/home/user"},
		{"POST", base + "/files/mkdir?path=/home/user/x"},
		{"DELETE", base + "/files?path=/home/user/x"},
	} {
		if status, body := keyC.do(c.method, c.path, ""); status != 409 || errCode(body) != "conflict" || !strings.Contains(toJSON(body), "resume it first") {
			t.Errorf("paused: %s %s: %d %v", c.method, c.path, status, body)
		}
	}
}
