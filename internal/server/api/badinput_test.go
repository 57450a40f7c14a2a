package api_test

import (
	"strings"
	"testing"

	"github.com/wrennhq/wrenn/internal/server/servertest"
)

// TestBadTextIs400 sends strings PostgreSQL or the guest cannot take (NUL bytes) or
// that are too long to every field that carries them: each must be a 400 naming the
// field, never a 500 from the database or the agent.
func TestBadTextIs400(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	ann := signup(anon, "ann@example.com")
	annC := anon.bearer(ann["token"].(string))
	_, key := annC.do("POST", "/v1/api-keys", `{"name":"k"}`)
	keyC := anon.with("X-API-Key", key["key"].(string))
	status, sb := keyC.do("POST", "/v1/sandboxes", `{"template":"base"}`)
	if status != 201 {
		t.Fatalf("create: %d %v", status, sb)
	}
	exec := "/v1/sandboxes/" + sb["id"].(string) + "/exec"
	longArgs := `["` + strings.Repeat("a", 100<<10) + `","` + strings.Repeat("b", 100<<10) + `"]`

	for _, c := range []struct {
		name        string
		caller      call
		path, body  string
		wantInError string
	}{
		{"signup name", anon, "/v1/auth/signup", `{"email":"bob@example.com","name":"b\u0000b","password":"correct horse battery"}`, "name"},
		{"signup email", anon, "/v1/auth/signup", `{"email":"b\u0000b@example.com","password":"correct horse battery"}`, "email"},
		{"api key name", annC, "/v1/api-keys", `{"name":"k\u0000"}`, "name"},
		{"team name", annC, "/v1/teams", `{"name":"t\u0000"}`, "name"},
		{"team name too long", annC, "/v1/teams", `{"name":"` + strings.Repeat("é", 65) + `"}`, "name"},
		{"member email", annC, "/v1/teams/" + ann["team_id"].(string) + "/members", `{"email":"a\u0000@example.com"}`, "email"},
		{"member role", annC, "/v1/teams/" + ann["team_id"].(string) + "/members", `{"email":"a@example.com","role":"r\u0000"}`, "role"},
		{"metadata value", keyC, "/v1/sandboxes", `{"metadata":{"k":"v\u0000"}}`, "metadata"},
		{"metadata key", keyC, "/v1/sandboxes", `{"metadata":{"k\u0000":"v"}}`, "metadata"},
		{"env value", keyC, "/v1/sandboxes", `{"env_vars":{"K":"v\u0000"}}`, "environment"},
		{"template", keyC, "/v1/sandboxes", `{"template":"base\u0000"}`, "template"},
		{"exec cmd", keyC, exec, `{"cmd":"ech\u0000o"}`, "cmd"},
		{"exec arg", keyC, exec, `{"cmd":"echo","args":["a\u0000b"]}`, "args"},
		{"exec env value", keyC, exec, `{"cmd":"echo","env_vars":{"K":"v\u0000"}}`, "environment"},
		{"exec env name", keyC, exec, `{"cmd":"echo","env_vars":{"K=1":"v"}}`, "environment"},
		{"exec cwd", keyC, exec, `{"cmd":"echo","cwd":"/t\u0000mp"}`, "cwd"},
		{"exec args too long", keyC, exec, `{"cmd":"echo","args":` + longArgs + `}`, "args"},
	} {
		status, body := c.caller.do("POST", c.path, c.body)
		msg := errMessage(body)
		if status != 400 || errCode(body) != "invalid_request" || !strings.Contains(msg, c.wantInError) {
			t.Errorf("%s: %d %.200v, want 400 invalid_request naming %q", c.name, status, body, c.wantInError)
		}
	}
}

// TestGuestErrorsKeepTheirMeaning runs commands that cannot start and file operations
// the guest refuses, for real in the test VM's envd: each answer must say what went
// wrong with a 4xx (or 507 for a full disk), not an internal error.
func TestGuestErrorsKeepTheirMeaning(t *testing.T) {
	env := servertest.New(t)
	annC, id := newUserSandbox(t, env)
	base := "/v1/sandboxes/" + id
	if status, out := annC.do("POST", base+"/exec", `{"cmd":"ln","args":["-sf","/tmp/loop","/tmp/loop"]}`); status != 200 || out["exit_code"] != float64(0) {
		t.Fatalf("make a symlink loop: %d %v", status, out)
	}

	for _, c := range []struct {
		name, method, path, body string
		status                   int
		code, wantInError        string
	}{
		{"exec missing binary", "POST", base + "/exec", `{"cmd":"/nonexistent"}`, 400, "invalid_request", "no such file"},
		{"exec unknown command", "POST", base + "/exec", `{"cmd":"no-such-command-xyz"}`, 400, "invalid_request", "not found"},
		{"exec missing cwd", "POST", base + "/exec", `{"cmd":"true","cwd":"/nonexistent"}`, 400, "invalid_request", "does not exist"},
		{"exec not executable", "POST", base + "/exec", `{"cmd":"/etc/passwd"}`, 403, "forbidden", "permission denied"},
		{"write full disk", "POST", base + "/files/write?path=/dev/full", "x", 507, "insufficient_storage", "disk space"},
		{"stream write full disk", "POST", base + "/files/stream/write?path=/dev/full", "x", 507, "insufficient_storage", "disk space"},
		{"write symlink loop", "POST", base + "/files/write?path=/tmp/loop", "x", 400, "invalid_request", "symbolic links"},
		{"read symlink loop", "GET", base + "/files/read?path=/tmp/loop", "", 400, "invalid_request", "symbolic links"},
		{"read missing", "GET", base + "/files/read?path=/proc/x", "", 404, "not_found", "does not exist"},
		{"write proc", "POST", base + "/files/write?path=/proc/x", "x", 400, "invalid_request", "does not take new files"},
		{"write sys", "POST", base + "/files/write?path=/sys/kernel/x", "x", 403, "forbidden", "permission denied"},
		{"read NUL path", "GET", base + "/files/read?path=/tmp/a%00b", "", 400, "invalid_request", "path contains a NUL byte"},
	} {
		status, body := annC.send(c.method, c.path, c.body)
		msg := errMessage(body)
		if status != c.status || errCode(body) != c.code || !strings.Contains(msg, c.wantInError) {
			t.Errorf("%s: %d %.200v, want %d %s mentioning %q", c.name, status, body, c.status, c.code, c.wantInError)
		}
	}
}

// errMessage is the error's message, "" when the body has none.
func errMessage(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	msg, _ := e["message"].(string)
	return msg
}

// TestFieldNamesAreCaseSensitive: Go's JSON decoder would take {"nAme": …} as name;
// the API refuses it, as api/openapi.yaml (additionalProperties: false) says, at the
// top level and in nested objects, and names the field it resembles.
func TestFieldNamesAreCaseSensitive(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	ann := signup(anon, "ann@example.com")
	annC := anon.bearer(ann["token"].(string))
	team := "/v1/teams/" + ann["team_id"].(string)
	for _, c := range []struct{ method, path, body, want string }{
		{"PATCH", team, `{"nAme":"renamed"}`, `"name"`},
		{"POST", "/v1/api-keys", `{"Name":"k"}`, `"name"`},
		{"POST", "/v1/sandboxes", `{"template":"base","Timeout_Sec":5}`, `"timeout_sec"`},
	} {
		status, body := annC.do(c.method, c.path, c.body)
		if status != 400 || errCode(body) != "invalid_json" || !strings.Contains(errMessage(body), c.want) {
			t.Errorf("%s %s %s: %d %v, want 400 invalid_json naming %s", c.method, c.path, c.body, status, body, c.want)
		}
	}
	if _, me := annC.do("GET", team, ""); me["name"] == "renamed" {
		t.Error("a case-folded key renamed the team")
	}
}
