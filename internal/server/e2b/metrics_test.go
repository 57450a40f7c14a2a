package e2b_test

import (
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/server/servertest"
)

// GET /sandboxes/{id}/metrics answers E2B's SandboxMetric list (validated against
// E2B's document) from the host's samples of the guest's own view; another team's
// sandbox is E2B's 404.
func TestMetrics(t *testing.T) {
	env := servertest.New(t)
	team := env.NewTeam(t, "e2b-metrics@example.com")
	c := newCaller(t, env.URL, "e2b_"+strings.TrimPrefix(team.Key, "wrn_"))
	id := c.create(`{"templateID":"base"}`)["sandboxID"].(string)
	var list []any
	deadline := time.Now().Add(10 * time.Second)
	for len(list) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no guest metrics in 10 s: %v", list)
		}
		time.Sleep(300 * time.Millisecond)
		status, _, v := c.do("GET", "/sandboxes/"+id+"/metrics", "")
		if status != 200 {
			t.Fatalf("metrics: %d %v", status, v)
		}
		list = v.([]any)
	}
	m := obj(t, list[len(list)-1])
	if m["cpuCount"].(float64) < 1 || m["memTotal"].(float64) <= 0 || m["diskTotal"].(float64) <= 0 ||
		time.Since(time.Unix(int64(m["timestampUnix"].(float64)), 0)) > time.Minute {
		t.Errorf("last metric %v", m)
	}
	// A window that ends before the sandbox was made has nothing in it.
	if status, _, v := c.do("GET", "/sandboxes/"+id+"/metrics?start=1000000000&end=1000000100", ""); status != 200 || len(v.([]any)) != 0 {
		t.Errorf("an old window: %d %v", status, v)
	}
	other := env.NewTeam(t, "e2b-metrics-other@example.com")
	oc := newCaller(t, env.URL, "e2b_"+strings.TrimPrefix(other.Key, "wrn_"))
	if status, _, _ := oc.do("GET", "/sandboxes/"+id+"/metrics", ""); status != 404 {
		t.Errorf("another team's sandbox: %d", status)
	}
}
