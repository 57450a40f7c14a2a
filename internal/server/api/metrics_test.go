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
