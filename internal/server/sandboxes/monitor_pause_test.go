package sandboxes_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/server/sandboxes"
)

// pausedAt is a sandbox's paused_at in the database (nil while it is not paused).
func (e *monitorEnv) pausedAt(id string) *time.Time {
	e.t.Helper()
	var at *time.Time
	if err := e.DB.QueryRow(context.Background(), `SELECT paused_at FROM sandboxes WHERE id = $1`, id).Scan(&at); err != nil {
		e.t.Fatal(err)
	}
	return at
}

// A paused sandbox is alive to the monitor: its host still lists it (with no
// address), so it stays paused, never lost, stopped or failed.
func TestMonitorKeepsPausedSandbox(t *testing.T) {
	e := newMonitorEnv(t)
	ctx := context.Background()
	id := e.createSandbox()
	if status, sb := e.do("POST", "/v1/sandboxes/"+id+"/pause", e.token, ""); status != 200 || sb["status"] != "paused" {
		t.Fatalf("pause: %d %v", status, sb)
	}
	paused := e.pausedAt(id)
	for range 2 {
		e.Service.Sandboxes.MonitorRound(ctx, sandboxes.MonitorConfig{Grace: time.Nanosecond})
	}
	if st, msg := e.sandbox(id); st != "paused" || msg != "" {
		t.Errorf("paused sandbox after monitor rounds: %s %q", st, msg)
	}
	if at := e.pausedAt(id); at == nil || !at.Equal(*paused) {
		t.Errorf("paused_at moved: %v, then %v", paused, at)
	}
	if ids := e.Agent.SandboxIDs(); len(ids) != 1 || ids[0] != id {
		t.Errorf("the monitor changed what the host has: %v", ids)
	}

	// Its host silent and back: missing, then paused again (not running).
	e.silence(e.HostID)
	e.Service.Sandboxes.MonitorRound(ctx, sandboxes.MonitorConfig{Stale: time.Minute})
	if st, _ := e.sandbox(id); st != "missing" {
		t.Fatalf("paused sandbox of a silent host: %s", st)
	}
	e.exec(`UPDATE hosts SET status = 'online', last_heartbeat_at = now() WHERE id = $1`, e.HostID)
	e.Service.Sandboxes.MonitorRound(ctx, sandboxes.MonitorConfig{Stale: time.Minute})
	if st, _ := e.sandbox(id); st != "paused" {
		t.Errorf("paused sandbox whose host is back: %s", st)
	}
	if at := e.pausedAt(id); at == nil || !at.Equal(*paused) {
		t.Errorf("paused_at after the host came back: %v, was %v", at, paused)
	}
	if status, sb := e.do("POST", "/v1/sandboxes/"+id+"/resume", e.token, ""); status != 200 || sb["status"] != "running" {
		t.Errorf("resume after all that: %d %v", status, sb)
	}
}

// A sandbox its agent paused on its own (the idle timeout) becomes paused in the
// database at the next round, and running again when the agent runs it again.
func TestMonitorLearnsAgentPause(t *testing.T) {
	e := newMonitorEnv(t)
	ctx := context.Background()
	id := e.createSandbox()
	if _, _, err := e.Agent.Manager.Pause(ctx, id); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.sandbox(id); st != "running" {
		t.Fatalf("before the round the database cannot know: %s", st)
	}
	e.Service.Sandboxes.MonitorRound(ctx, sandboxes.MonitorConfig{})
	if st, msg := e.sandbox(id); st != "paused" || msg != "" {
		t.Errorf("after the round: %s %q", st, msg)
	}
	if e.pausedAt(id) == nil {
		t.Error("no paused_at")
	}
	if got := e.listed("paused"); len(got) != 1 || got[0] != id {
		t.Errorf("listing right after the round shows paused %v", got)
	}
	if status, body := e.do("POST", "/v1/sandboxes/"+id+"/exec", e.token, `{"cmd":"true"}`); status != 409 || !strings.Contains(toJSON(body), "is paused; resume it first") {
		t.Errorf("exec on the auto-paused sandbox: %d %v", status, body)
	}

	if _, _, _, err := e.Agent.Manager.Resume(ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	e.Service.Sandboxes.MonitorRound(ctx, sandboxes.MonitorConfig{})
	if st, _ := e.sandbox(id); st != "running" {
		t.Errorf("after the agent ran it again: %s", st)
	}
	if e.pausedAt(id) != nil {
		t.Error("paused_at kept on a running sandbox")
	}
	var hostIP *string
	if err := e.DB.QueryRow(ctx, `SELECT host_ip FROM sandboxes WHERE id = $1`, id).Scan(&hostIP); err != nil {
		t.Fatal(err)
	}
	if info, err := e.Agent.Manager.Get(id); err != nil || hostIP == nil || *hostIP != info.HostIP.String() {
		t.Errorf("host_ip recorded %v, the agent has %+v (%v)", hostIP, info, err)
	}
}

// An operation the agent refuses because it paused the sandbox on its own, before
// any monitor round, tells the caller to resume it and records the pause at once.
func TestAgentPauseLearnedOnUse(t *testing.T) {
	e := newMonitorEnv(t)
	ctx := context.Background()
	id := e.createSandbox()
	if _, _, err := e.Agent.Manager.Pause(ctx, id); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/sandboxes/" + id + "/exec", `{"cmd":"true"}`},
		{"POST", "/v1/sandboxes/" + id + "/ping", ""},
	} {
		if status, body := e.do(c.method, c.path, e.token, c.body); status != 409 || !strings.Contains(toJSON(body), "sandbox "+id+" is paused; resume it first") {
			t.Errorf("%s %s: %d %v", c.method, c.path, status, body)
		}
	}
	if st, _ := e.sandbox(id); st != "paused" {
		t.Errorf("after the refused exec: %s", st)
	}
	// A pause asked for after the agent's own gets the state, and records nothing new.
	id2 := e.createSandbox()
	if _, _, err := e.Agent.Manager.Pause(ctx, id2); err != nil {
		t.Fatal(err)
	}
	if status, body := e.do("POST", "/v1/sandboxes/"+id2+"/pause", e.token, ""); status != 409 || !strings.Contains(toJSON(body), "sandbox "+id2+" is paused: cannot pause") {
		t.Errorf("pause of a sandbox the agent paused: %d %v", status, body)
	}
	if st, _ := e.sandbox(id2); st != "paused" {
		t.Errorf("after the refused pause: %s", st)
	}
}

// A pause or resume whose end was never recorded (the control plane stopped in the
// middle) leaves pausing or resuming; the next round takes the host's word.
func TestMonitorFinishesInterruptedTransitions(t *testing.T) {
	e := newMonitorEnv(t)
	ctx := context.Background()
	paused, running := e.createSandbox(), e.createSandbox()
	if _, _, err := e.Agent.Manager.Pause(ctx, paused); err != nil {
		t.Fatal(err)
	}
	e.exec(`UPDATE sandboxes SET status = 'pausing' WHERE id = $1`, paused)
	e.exec(`UPDATE sandboxes SET status = 'resuming' WHERE id = $1`, running)
	e.Service.Sandboxes.MonitorRound(ctx, sandboxes.MonitorConfig{})
	for id, want := range map[string]string{paused: "paused", running: "running"} {
		if st, msg := e.sandbox(id); st != want || msg != "" {
			t.Errorf("%s: %s %q, want %s", id, st, msg, want)
		}
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
