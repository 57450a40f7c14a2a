package promx_test

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/wrennhq/wrenn/internal/agent"
	"github.com/wrennhq/wrenn/internal/agent/agenttest"
	"github.com/wrennhq/wrenn/internal/promx"
	"github.com/wrennhq/wrenn/internal/vmm"
)

// readySlots stands in for netslot.Pool, which needs root and network namespaces.
type readySlots struct{ off, on int }

func (s readySlots) Ready(internet bool) int {
	if internet {
		return s.on
	}
	return s.off
}

// The agent's families carry what its manager did, on the real manager over the fake
// VM driver: operation durations by result, sandboxes by state, ready slots and the
// sampler's cost.
func TestAgentMetrics(t *testing.T) {
	reg := promx.NewRegistry()
	metrics, err := promx.NewAgent(reg)
	if err != nil {
		t.Fatal(err)
	}
	a := agenttest.Start(t, agenttest.Options{Config: agent.Config{Ops: metrics}})
	if err := metrics.Watch(promx.AgentSources{Sandboxes: a.Manager, Slots: readySlots{off: 3, on: 1}, Sampler: samplerStats{}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(promx.Access{Listen: "127.0.0.1:0", Token: token}.ListenHandler(reg, nil))
	defer srv.Close()
	url := srv.URL + promx.Path

	ctx := context.Background()
	spec := agent.Spec{Template: agenttest.Template}
	if _, _, _, err := a.Manager.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	paused, _, _, err := a.Manager.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	id := paused.Spec.ID
	if _, _, err := a.Manager.Pause(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := a.Manager.Resume(ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Manager.Pause(ctx, id); err != nil {
		t.Fatal(err)
	}
	// Refused before it began (the sandbox is paused already): not an operation.
	if _, _, err := a.Manager.Pause(ctx, id); err == nil {
		t.Fatal("a paused sandbox paused again")
	}
	// A create that fails in the driver is one, counted as an error.
	a.Driver.SetHooks(func(context.Context, vmm.Config) error { return errors.New("no VM today") }, nil)
	if _, _, _, err := a.Manager.Create(ctx, spec); err == nil {
		t.Fatal("a create whose VM failed to start succeeded")
	}
	a.Driver.SetHooks(nil, nil)

	status, fams := scrape(t, url, token)
	if status != http.StatusOK {
		t.Fatalf("scrape: %d", status)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"wrenn_agent_operation_duration_seconds", map[string]string{"op": "create", "result": "ok"}, 2},
		{"wrenn_agent_operation_duration_seconds", map[string]string{"op": "create", "result": "error"}, 1},
		{"wrenn_agent_operation_duration_seconds", map[string]string{"op": "pause", "result": "ok"}, 2},
		{"wrenn_agent_operation_duration_seconds", map[string]string{"op": "resume", "result": "ok"}, 1},
		{"wrenn_agent_sandboxes", map[string]string{"state": "running"}, 1},
		{"wrenn_agent_sandboxes", map[string]string{"state": "paused"}, 1},
		{"wrenn_agent_sandboxes", map[string]string{"state": "starting"}, 0},
		{"wrenn_agent_slots_ready", map[string]string{"internet": "false"}, 3},
		{"wrenn_agent_slots_ready", map[string]string{"internet": "true"}, 1},
		{"wrenn_agent_sampler_samples_total", nil, 42},
		{"wrenn_agent_sampler_cpu_seconds_total", nil, 1.5},
	} {
		if v := value(fams, c.name, c.labels); v != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, v, c.want)
		}
	}
	if v := value(fams, "wrenn_agent_operation_duration_seconds", map[string]string{"op": "pause", "result": "error"}); !math.IsNaN(v) {
		t.Errorf("a refused pause was observed: %v", v)
	}
	// The histogram's sum is the time the operations took, not nothing.
	for _, m := range fams["wrenn_agent_operation_duration_seconds"].GetMetric() {
		if h := m.GetHistogram(); h.GetSampleSum() <= 0 {
			t.Errorf("%v: sum %v", m.GetLabel(), h.GetSampleSum())
		}
	}
}
