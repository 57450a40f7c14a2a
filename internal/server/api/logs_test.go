package api_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/server/servertest"
	"github.com/wrennhq/wrenn/internal/vmm"
)

func num(v any) int64 { f, _ := v.(float64); return int64(f) }

// The console log reads by offset while the sandbox runs and while it is paused; the
// text is valid UTF-8 whatever the guest wrote, and a character cut by a read's end is
// left whole for the next read; once the log is gone the answer says so.
func TestSandboxLogs(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	ann := anon.bearer(signup(anon, "ann@example.com")["token"].(string))
	_, sb := ann.do("POST", "/v1/sandboxes", `{}`)
	id := sb["id"].(string)
	logs := "/v1/sandboxes/" + id + "/logs"

	// The test agent's "VM" console is its envd's output.
	status, whole := ann.do("GET", logs, "")
	if status != 200 || whole["log"] == "" || whole["status"] != "running" || num(whole["offset"]) != 0 || num(whole["next_offset"]) != num(whole["size"]) {
		t.Fatalf("log of a running sandbox: %d %v", status, whole)
	}
	status, part := ann.do("GET", logs+"?offset=2&limit=3", "")
	if status != 200 || part["log"] != whole["log"].(string)[2:5] || num(part["offset"]) != 2 || num(part["next_offset"]) != 5 {
		t.Errorf("bytes 2..5: %d %v", status, part)
	}
	for _, bad := range []string{"?offset=x", "?limit=0", "?limit=1048577", "?limit=-1", "?offset=1.5"} {
		if status, body := ann.do("GET", logs+bad, ""); status != 400 || errCode(body) != "invalid_request" {
			t.Errorf("%s: %d %v", bad, status, body)
		}
	}

	// Paused: its host still has the log. What a guest may write: invalid bytes and a
	// character whose last byte is not written yet.
	if status, body := ann.do("POST", "/v1/sandboxes/"+id+"/pause", ""); status != 200 {
		t.Fatalf("pause: %d %v", status, body)
	}
	raw := []byte("boot \xff\xfe ok é\n\xe2\x82") // € cut after 2 of its 3 bytes
	if err := os.WriteFile(filepath.Join(env.Agent.Dir, "sandboxes", id, vmm.ConsoleLogName), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	status, got := ann.do("GET", logs, "")
	if status != 200 || got["log"] != "boot \uFFFD ok é\n" || num(got["next_offset"]) != int64(len(raw)-2) || num(got["size"]) != int64(len(raw)) || got["status"] != "paused" {
		t.Errorf("log with invalid bytes: %d %q", status, got)
	}
	// The cut character alone: replaced rather than waited for, so a reader moves on.
	status, got = ann.do("GET", logs+"?offset="+strconv.Itoa(len(raw)-2), "")
	if status != 200 || got["log"] != "\uFFFD" || num(got["next_offset"]) != int64(len(raw)) {
		t.Errorf("the cut character's bytes alone: %d %q", status, got)
	}
	status, got = ann.do("GET", logs+"?offset=-3", "")
	if status != 200 || num(got["offset"]) != int64(len(raw)-3) || got["log"] != "\n" {
		t.Errorf("the last 3 bytes: %d %q", status, got)
	}

	if status, _ := ann.do("DELETE", "/v1/sandboxes/"+id, ""); status != 204 {
		t.Fatalf("destroy: %d", status)
	}
	if status, body := ann.do("GET", logs, ""); status != 409 || errCode(body) != "conflict" || !strings.Contains(toJSON(body), "stopped") {
		t.Errorf("log of a stopped sandbox: %d %v", status, body)
	}
	// A failed create's host rolled its log back with it; its error has the reason.
	env.Agent.Driver.FailNextStart(errors.New("disk full"))
	if status, _ := ann.do("POST", "/v1/sandboxes", `{}`); status != 500 {
		t.Fatalf("failed create: %d", status)
	}
	_, list := ann.do("GET", "/v1/sandboxes?state=error", "")
	failed := list["sandboxes"].([]any)[0].(map[string]any)["id"].(string)
	if status, body := ann.do("GET", "/v1/sandboxes/"+failed+"/logs", ""); status != 409 || errCode(body) != "conflict" || !strings.Contains(toJSON(body), "its error says why") {
		t.Errorf("log of a failed create: %d %v", status, body)
	}
	for _, bad := range []string{"sbnotanid", "sb0123456789abcdefgh", "..%2F..%2Fetc"} {
		if status, body := ann.do("GET", "/v1/sandboxes/"+bad+"/logs", ""); status != 404 || errCode(body) != "not_found" {
			t.Errorf("log of %s: %d %v", bad, status, body)
		}
	}
}

// wait false answers 202 with the sandbox starting as soon as it is placed, its
// private traffic token included; the boot goes on after the request has ended, its
// console readable meanwhile, and records running — or error with the host's reason.
func TestCreateWithoutWaiting(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	ann := anon.bearer(signup(anon, "ann@example.com")["token"].(string))
	booting, release := make(chan struct{}), make(chan struct{})
	var once bool
	env.Agent.Driver.SetHooks(func(_ context.Context, cfg vmm.Config) error {
		if err := os.WriteFile(filepath.Join(cfg.Dir, vmm.ConsoleLogName), []byte("Linux version 6.1\n"), 0o600); err != nil {
			return err
		}
		if !once {
			once = true
			close(booting)
		}
		<-release
		return nil
	}, nil)
	released := false
	releaseBoot := func() {
		if !released {
			released = true
			close(release)
		}
	}
	t.Cleanup(releaseBoot) // before the agent's cleanup, which waits for the create

	status, sb := ann.do("POST", "/v1/sandboxes", `{"wait":false,"allow_public_traffic":false}`)
	if status != 202 || sb["status"] != "starting" || !strings.HasPrefix(toString(sb["traffic_access_token"]), "wrt_") {
		t.Fatalf("create without waiting: %d %v", status, sb)
	}
	id := sb["id"].(string)
	<-booting
	if status, got := ann.do("GET", "/v1/sandboxes/"+id, ""); status != 200 || got["status"] != "starting" || got["traffic_access_token"] != nil {
		t.Errorf("while it boots: %d %v", status, got)
	}
	if status, got := ann.do("GET", "/v1/sandboxes/"+id+"/logs", ""); status != 200 || got["log"] != "Linux version 6.1\n" || got["status"] != "starting" {
		t.Errorf("console while it boots: %d %v", status, got)
	}
	releaseBoot()
	env.Agent.Driver.SetHooks(nil, nil)
	got := waitStatus(t, ann, id)
	if got["status"] != "running" {
		t.Fatalf("after its boot: %v", got)
	}
	if status, out := ann.do("POST", "/v1/sandboxes/"+id+"/exec", `{"cmd":"echo","args":["hi"]}`); status != 200 || out["stdout"] != "hi\n" {
		t.Errorf("exec once running: %d %v", status, out)
	}

	// The host fails the boot: the sandbox ends in error, with the host's reason.
	env.Agent.Driver.FailNextStart(errors.New("disk full"))
	status, sb = ann.do("POST", "/v1/sandboxes", `{"wait":false}`)
	if status != 202 || sb["status"] != "starting" {
		t.Fatalf("create without waiting, to fail: %d %v", status, sb)
	}
	got = waitStatus(t, ann, sb["id"].(string))
	if got["status"] != "error" || !strings.HasSuffix(toString(got["error"]), "disk full") {
		t.Errorf("a failed boot: %v", got)
	}
	// What placement refuses is still this call's answer, and nothing is recorded.
	if status, body := ann.do("POST", "/v1/sandboxes", `{"wait":false,"vcpus":999}`); status != 400 || errCode(body) != "invalid_request" {
		t.Errorf("bad spec without waiting: %d %v", status, body)
	}
	if status, body := ann.do("POST", "/v1/sandboxes", `{"wait":"no"}`); status != 400 {
		t.Errorf("wait not a boolean: %d %v", status, body)
	}
	if _, list := ann.do("GET", "/v1/sandboxes?state=all", ""); len(list["sandboxes"].([]any)) != 2 {
		t.Errorf("sandboxes recorded: %v", list)
	}
}

func toString(v any) string { s, _ := v.(string); return s }

// waitStatus polls the sandbox until it is no longer starting.
func waitStatus(t *testing.T, c call, id string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, got := c.do("GET", "/v1/sandboxes/"+id, "")
		if status != 200 {
			t.Fatalf("get %s: %d %v", id, status, got)
		}
		if got["status"] != "starting" || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}
