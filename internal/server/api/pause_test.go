package api_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wrennhq/wrenn/internal/server/servertest"
)

// Pause and resume through the API: the states the API shows, what a paused sandbox
// refuses (and how), that its files come back with it, destroy in the paused state,
// and the audit log.
func TestPauseResume(t *testing.T) {
	env := servertest.New(t)
	ctx := context.Background()
	anon := newCall(t, env)
	ann := signup(anon, "ann@example.com")
	annC := anon.bearer(ann["token"].(string))
	_, key := annC.do("POST", "/v1/api-keys", `{"name":"k"}`)
	keyC := anon.with("X-API-Key", key["key"].(string))

	status, sb := keyC.do("POST", "/v1/sandboxes", `{"timeout_sec":300}`)
	if status != 201 {
		t.Fatalf("create: %d %v", status, sb)
	}
	id := sb["id"].(string)
	if status, raw, _ := keyC.raw("POST", "/v1/sandboxes/"+id+"/files/write?path=/home/user/kept", "application/octet-stream", strings.NewReader("written before the pause")); status != 200 {
		t.Fatalf("write: %d %s", status, raw)
	}

	status, sb = keyC.do("POST", "/v1/sandboxes/"+id+"/pause", "")
	if status != 200 || sb["status"] != "paused" || sb["id"] != id || sb["paused_at"] == nil {
		t.Fatalf("pause: %d %v", status, sb)
	}
	if status, got := keyC.do("GET", "/v1/sandboxes/"+id, ""); status != 200 || got["status"] != "paused" || got["paused_at"] == nil {
		t.Errorf("get after pause: %d %v", status, got)
	}
	if info, err := env.Agent.Manager.Get(id); err != nil || info.State != "paused" {
		t.Errorf("the agent's sandbox after the pause: %+v %v", info, err)
	}
	// Listed as live, and by its state.
	for _, path := range []string{"/v1/sandboxes", "/v1/sandboxes?state=paused"} {
		if _, list := keyC.do("GET", path, ""); len(list["sandboxes"].([]any)) != 1 || list["sandboxes"].([]any)[0].(map[string]any)["status"] != "paused" {
			t.Errorf("%s: %v", path, list)
		}
	}

	// Everything that needs the guest refuses with the advice to resume; pause again
	// names the state.
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/sandboxes/" + id + "/exec", `{"cmd":"true"}`},
		{"POST", "/v1/sandboxes/" + id + "/ping", ""},
		{"GET", "/v1/sandboxes/" + id + "/files/read?path=/home/user/kept", ""},
		{"GET", "/v1/sandboxes/" + id + "/files/stream/read?path=/home/user/kept", ""},
		{"POST", "/v1/sandboxes/" + id + "/files/write?path=/home/user/x", "x"},
		{"POST", "/v1/sandboxes/" + id + "/files/stream/write?path=/home/user/x", "x"},
		{"GET", "/v1/sandboxes/" + id + "/exec/stream", ""},
	} {
		status, body := keyC.send(c.method, c.path, c.body)
		if want := "sandbox " + id + " is paused; resume it first"; status != 409 || errCode(body) != "conflict" || !strings.HasSuffix(errMessage(body), want) {
			t.Errorf("%s %s on a paused sandbox: %d %v, want 409 %q", c.method, c.path, status, body, want)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, resp, err := websocket.Dial(wctx, "ws"+strings.TrimPrefix(env.URL, "http")+"/v1/sandboxes/"+id+"/exec/stream", &websocket.DialOptions{HTTPHeader: keyC.header})
	cancel()
	if err == nil || resp == nil || resp.StatusCode != 409 {
		t.Errorf("opening a stream on a paused sandbox: %v", err)
	}
	if status, body := keyC.do("POST", "/v1/sandboxes/"+id+"/pause", ""); status != 409 || errMessage(body) != "conflict: sandbox "+id+" is paused: cannot pause" {
		t.Errorf("pause twice: %d %v", status, body)
	}
	if n := env.Agent.Calls("PauseSandbox"); n != 1 {
		t.Errorf("the agent saw %d pauses; the refused ones should not reach it", n)
	}
	if status, body := keyC.do("POST", "/v1/sandboxes/"+id+"/resume", `{"timeout_sec":-1}`); status != 400 {
		t.Errorf("resume with a negative timeout: %d %v", status, body)
	}

	// Resume: running again with a new idle timeout, and the file written before the
	// pause is there.
	status, sb = keyC.do("POST", "/v1/sandboxes/"+id+"/resume", `{"timeout_sec":600}`)
	if status != 200 || sb["status"] != "running" || sb["timeout_sec"] != float64(600) || sb["paused_at"] != nil {
		t.Fatalf("resume: %d %v", status, sb)
	}
	if status, raw, _ := keyC.raw("GET", "/v1/sandboxes/"+id+"/files/read?path=/home/user/kept", "", nil); status != 200 || string(raw) != "written before the pause" {
		t.Errorf("file after the resume: %d %q", status, raw)
	}
	if status, out := keyC.do("POST", "/v1/sandboxes/"+id+"/exec", `{"cmd":"cat","args":["/home/user/kept"]}`); status != 200 || out["stdout"] != "written before the pause" {
		t.Errorf("exec after the resume: %d %v", status, out)
	}
	if info, err := env.Agent.Manager.Get(id); err != nil || info.Spec.TimeoutSec != 600 {
		t.Errorf("the agent's idle timeout after the resume: %+v %v", info, err)
	}
	if status, body := keyC.do("POST", "/v1/sandboxes/"+id+"/resume", ""); status != 409 || errMessage(body) != "conflict: sandbox "+id+" is running: cannot resume" {
		t.Errorf("resume a running sandbox: %d %v", status, body)
	}
	if status, _ := keyC.do("POST", "/v1/sandboxes/"+id+"/ping", ""); status != 204 {
		t.Errorf("ping after the resume: %d", status)
	}

	// A resume that fails on the host leaves the sandbox paused, to retry; the body
	// is optional, and without one the idle timeout stays.
	if status, _ := annC.do("POST", "/v1/sandboxes/"+id+"/pause", ""); status != 200 {
		t.Fatalf("pause with the user's token: %d", status)
	}
	env.Agent.Driver.FailNextStart(errors.New("no room for the restore"))
	if status, body := keyC.do("POST", "/v1/sandboxes/"+id+"/resume", ""); status != 500 {
		t.Errorf("failed resume: %d %v", status, body)
	}
	if _, got := keyC.do("GET", "/v1/sandboxes/"+id, ""); got["status"] != "paused" {
		t.Errorf("after a failed resume: %v", got)
	}
	if status, sb := keyC.do("POST", "/v1/sandboxes/"+id+"/resume", ""); status != 200 || sb["status"] != "running" || sb["timeout_sec"] != float64(600) {
		t.Errorf("resume again: %d %v", status, sb)
	}

	// Destroying a paused sandbox stops it and removes it from its host.
	if status, _ := keyC.do("POST", "/v1/sandboxes/"+id+"/pause", ""); status != 200 {
		t.Fatalf("pause before destroy: %d", status)
	}
	if status, body := keyC.do("DELETE", "/v1/sandboxes/"+id, ""); status != 204 {
		t.Fatalf("destroy a paused sandbox: %d %v", status, body)
	}
	if status, got := keyC.do("GET", "/v1/sandboxes/"+id, ""); status != 200 || got["status"] != "stopped" || got["paused_at"] != nil {
		t.Errorf("after destroy: %d %v", status, got)
	}
	if ids := env.Agent.SandboxIDs(); len(ids) != 0 {
		t.Errorf("the agent still has %v", ids)
	}
	if status, body := keyC.do("POST", "/v1/sandboxes/"+id+"/resume", ""); status != 409 || !strings.Contains(errMessage(body), "is stopped") {
		t.Errorf("resume a destroyed sandbox: %d %v", status, body)
	}

	// Audited: who paused and resumed, each time it happened.
	var pauses, resumes, byKey int
	if err := env.DB.QueryRow(ctx, `SELECT count(*) FILTER (WHERE action = 'sandbox.pause'), count(*) FILTER (WHERE action = 'sandbox.resume'),
		count(*) FILTER (WHERE actor_api_key_id IS NOT NULL) FROM audit_logs WHERE resource_type = 'sandbox' AND resource_id = $1 AND action IN ('sandbox.pause', 'sandbox.resume')`, id).Scan(&pauses, &resumes, &byKey); err != nil {
		t.Fatal(err)
	}
	if pauses != 3 || resumes != 2 || byKey != 4 {
		t.Errorf("audit: %d pauses, %d resumes (%d by the key); want 3, 2 (4)", pauses, resumes, byKey)
	}
}

// Another team's key or token gets 404 on pause and resume, and the sandbox is left
// as it was.
func TestPauseResumeCrossTeam(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	annC := anon.bearer(signup(anon, "ann@example.com")["token"].(string))
	_, sb := annC.do("POST", "/v1/sandboxes", `{}`)
	running := sb["id"].(string)
	_, sb = annC.do("POST", "/v1/sandboxes", `{}`)
	paused := sb["id"].(string)
	if status, _ := annC.do("POST", "/v1/sandboxes/"+paused+"/pause", ""); status != 200 {
		t.Fatal("pause ann's sandbox")
	}

	bobC := anon.bearer(signup(anon, "bob@example.com")["token"].(string))
	_, bobKey := bobC.do("POST", "/v1/api-keys", `{"name":"b"}`)
	for name, other := range map[string]call{"bob's token": bobC, "bob's key": anon.with("X-API-Key", bobKey["key"].(string))} {
		for _, c := range []struct{ id, op string }{{running, "pause"}, {paused, "resume"}, {running, "resume"}, {paused, "pause"}} {
			if status, body := other.do("POST", "/v1/sandboxes/"+c.id+"/"+c.op, ""); status != 404 || errCode(body) != "not_found" {
				t.Errorf("%s: %s %s: %d %v", name, c.op, c.id, status, body)
			}
		}
	}
	for id, want := range map[string]string{running: "running", paused: "paused"} {
		if _, got := annC.do("GET", "/v1/sandboxes/"+id, ""); got["status"] != want {
			t.Errorf("ann's %s sandbox after bob: %v", want, got)
		}
	}
	if n := env.Agent.Calls("PauseSandbox") + env.Agent.Calls("ResumeSandbox"); n != 1 {
		t.Errorf("the agent saw %d pauses and resumes; bob's should not reach it", n)
	}
}
