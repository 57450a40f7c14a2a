package api_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/server/servertest"
)

// The team stats count what the team holds — now, at its peak, and in the 10 s
// snapshots — and the usage sums the snapshots' reservations per day; another team
// sees none of it.
func TestTeamStatsAndUsage(t *testing.T) {
	env := servertest.New(t)
	ctx := context.Background()
	anon := newCall(t, env)
	ann := anon.bearer(signup(anon, "stats-ann@example.com")["token"].(string))
	bob := anon.bearer(signup(anon, "stats-bob@example.com")["token"].(string))
	var ids []string
	for i := 0; i < 3; i++ {
		status, sb := ann.do("POST", "/v1/sandboxes", `{"vcpus":2,"memory_mb":512}`)
		if status != 201 {
			t.Fatalf("create: %d %v", status, sb)
		}
		ids = append(ids, sb["id"].(string))
	}
	if status, body := ann.do("POST", "/v1/sandboxes/"+ids[0]+"/pause", ""); status != 200 {
		t.Fatalf("pause: %d %v", status, body)
	}
	if err := env.Service.Sandboxes.StatsRound(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	status, st := ann.do("GET", "/v1/sandboxes/stats?range=5m", "")
	if status != 200 {
		t.Fatalf("stats: %d %v", status, st)
	}
	want := map[string]any{"running": 2.0, "paused": 1.0, "vcpus": 4.0, "memory_mb": 1024.0}
	points := st["points"].([]any)
	for _, part := range []map[string]any{st["now"].(map[string]any), st["peak"].(map[string]any), points[len(points)-1].(map[string]any)} {
		for k, v := range want {
			if part[k] != v {
				t.Errorf("stats %s = %v, want %v (%v)", k, part[k], v, st)
			}
		}
	}
	// Destroying one shows at once in now, not in the peak.
	if status, _ := ann.do("DELETE", "/v1/sandboxes/"+ids[1], ""); status != 204 {
		t.Fatal("destroy")
	}
	_, st = ann.do("GET", "/v1/sandboxes/stats", "")
	if now, peak := st["now"].(map[string]any), st["peak"].(map[string]any); now["running"] != 1.0 || peak["running"] != 2.0 || st["range"] != "1h" {
		t.Errorf("after a destroy: now %v, peak %v", now, peak)
	}
	_, other := bob.do("GET", "/v1/sandboxes/stats?range=30d", "")
	if now := other["now"].(map[string]any); now["running"] != 0.0 || len(other["points"].([]any)) != 0 {
		t.Errorf("another team's stats: %v", other)
	}

	today := time.Now().UTC().Format(time.DateOnly)
	status, usage := ann.do("GET", "/v1/usage?from="+today+"&to="+today, "")
	days, _ := usage["days"].([]any)
	if status != 200 || len(days) != 1 {
		t.Fatalf("usage: %d %v", status, usage)
	}
	if d := days[0].(map[string]any); d["day"] != today || d["vcpu_seconds"] != 40.0 || d["gib_seconds"] != 10.0 {
		t.Errorf("usage today: %v, want 4 vCPUs and 1 GiB for 10 s", d)
	}
	if _, usage := ann.do("GET", "/v1/usage", ""); len(usage["days"].([]any)) != 30 {
		t.Errorf("default usage: %d days", len(usage["days"].([]any)))
	}
	_, usage = bob.do("GET", "/v1/usage?from="+today+"&to="+today, "")
	if d := usage["days"].([]any)[0].(map[string]any); d["vcpu_seconds"] != 0.0 {
		t.Errorf("another team's usage: %v", d)
	}

	for _, bad := range []string{"/v1/sandboxes/stats?range=7d", "/v1/sandboxes/stats?range=1w", "/v1/usage?from=yesterday", "/v1/usage?from=2026-01-01&to=2025-01-01",
		"/v1/usage?from=2025-01-01&to=2026-01-01", "/v1/sandboxes/" + ids[2] + "/metrics?range=7d", "/v1/sandboxes/" + ids[2] + "/metrics?range=1d"} {
		if status, body := ann.do("GET", bad, ""); status != 400 || errCode(body) == "" {
			t.Errorf("GET %s: %d %v", bad, status, body)
		}
	}
}

// A sandbox's metrics: another team's sandbox is 404, bad ranges 400, and every range
// answers in the documented shape.
func TestSandboxMetricsAccess(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	ann, id := newUserSandbox(t, env)
	bob := anon.bearer(signup(anon, "metrics-bob@example.com")["token"].(string))
	for _, r := range []string{"5m", "10m", "1h", "2h", "6h", "12h", "24h"} {
		status, m := ann.do("GET", fmt.Sprintf("/v1/sandboxes/%s/metrics?range=%s", id, r), "")
		if status != 200 || m["sandbox_id"] != id || m["range"] != r {
			t.Errorf("range %s: %d %v", r, status, m)
		}
	}
	for _, path := range []string{"/v1/sandboxes/" + id + "/metrics", "/v1/sandboxes/sbnosuchsandbox00000/metrics"} {
		if status, body := bob.do("GET", path, ""); status != 404 {
			t.Errorf("GET %s as another team: %d %v", path, status, body)
		}
	}
}

// A sandbox's metrics are live from its host while it runs, and kept in the database
// at its pause and its destroy: after the destroy they still answer, from what was
// kept (live false), with the points the host had.
func TestSandboxMetricsKeptAtPauseAndDestroy(t *testing.T) {
	env := servertest.New(t)
	ann, id := newUserSandbox(t, env)
	points := func() (int, bool) {
		t.Helper()
		status, m := ann.do("GET", "/v1/sandboxes/"+id+"/metrics?range=5m", "")
		if status != 200 {
			t.Fatalf("metrics: %d %v", status, m)
		}
		return len(m["points"].([]any)), m["live"].(bool)
	}
	deadline := time.Now().Add(10 * time.Second)
	for n, _ := points(); n < 3; n, _ = points() {
		if time.Now().After(deadline) {
			t.Fatalf("the host sampled %d points in 10 s", n)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n, live := points(); !live || n < 3 {
		t.Fatalf("running: %d points, live %t", n, live)
	}
	if status, body := ann.do("POST", "/v1/sandboxes/"+id+"/pause", ""); status != 200 {
		t.Fatalf("pause: %d %v", status, body)
	}
	var kept int
	if err := env.DB.QueryRow(context.Background(), `SELECT count(*) FROM sandbox_metric_points WHERE sandbox_id = $1 AND tier = 1`, id).Scan(&kept); err != nil || kept < 3 {
		t.Errorf("fine points kept at the pause: %d (%v)", kept, err)
	}
	if status, body := ann.do("POST", "/v1/sandboxes/"+id+"/resume", ""); status != 200 {
		t.Fatalf("resume: %d %v", status, body)
	}
	time.Sleep(time.Second)
	if status, _ := ann.do("DELETE", "/v1/sandboxes/"+id, ""); status != 204 {
		t.Fatal("destroy")
	}
	n, live := points()
	if live || n < kept {
		t.Errorf("after the destroy: %d points, live %t; want at least the %d kept at the pause, not live", n, live, kept)
	}
	var coarse int
	if err := env.DB.QueryRow(context.Background(), `SELECT count(*) FROM sandbox_metric_points WHERE sandbox_id = $1 AND tier = 3`, id).Scan(&coarse); err != nil || coarse == 0 {
		t.Errorf("every tier is kept: %d coarse points (%v)", coarse, err)
	}
}
