package promx

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/wrennhq/wrenn/internal/lifecycle"
)

// AgentSandboxes counts a host's sandboxes by state (agent.Manager).
type AgentSandboxes interface {
	CountByState() map[lifecycle.State]int
}

// ReadySlots is the agent's network slot pool (netslot.Pool): slots made ready ahead
// of creates, per internet setting.
type ReadySlots interface {
	Ready(internet bool) int
}

// SamplerStats is what the agent's per-sandbox metrics sampler has cost so far: the
// samples it took and the CPU time it spent, both since the agent started.
type SamplerStats interface {
	SamplingTotals() (samples uint64, cpu time.Duration)
}

// AgentSources are what the agent's metrics read at each scrape.
type AgentSources struct {
	Sandboxes AgentSandboxes // required
	Slots     ReadySlots     // nil: no slot pool (the fakes of tests)
	Sampler   SamplerStats   // nil: no sampler (yet)
}

// Agent is the host agent's metrics. It is the observer of the manager's operations
// (agent.OpObserver), and, once Watch has its sources, reads sandboxes, ready slots
// and the sampler's cost at each scrape. The two steps follow the agent's start: the
// manager is made with its observer, and is itself a source.
type Agent struct {
	reg prometheus.Registerer
	ops *prometheus.HistogramVec
}

// NewAgent registers the operation histograms with reg, once per process.
func NewAgent(reg prometheus.Registerer) (*Agent, error) {
	a := &Agent{reg: reg, ops: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "agent", Name: "operation_duration_seconds",
		Help: "Time the sandbox operations took on this host, by operation (create, pause, resume) and result (ok, error).",
		// 10 ms to about 2 min: a warm restore or a pause takes tens of milliseconds,
		// a cold boot under TCG most of a minute.
		Buckets: prometheus.ExponentialBucketsRange(0.01, 120, 16),
	}, []string{"op", "result"})}
	if err := reg.Register(a.ops); err != nil {
		return nil, fmt.Errorf("register agent metrics: %w", err)
	}
	return a, nil
}

// Watch registers what is read at each scrape from src; call it once.
func (a *Agent) Watch(src AgentSources) error {
	if src.Sandboxes == nil {
		return errors.New("promx: AgentSources.Sandboxes is required")
	}
	cols := []prometheus.Collector{newAgentCollector(src)}
	if src.Sampler != nil {
		cols = append(cols, NewSamplerCollector(src.Sampler))
	}
	for _, c := range cols {
		if err := a.reg.Register(c); err != nil {
			return fmt.Errorf("register agent metrics: %w", err)
		}
	}
	return nil
}

// ObserveOp implements agent.OpObserver.
func (a *Agent) ObserveOp(op string, took time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	a.ops.WithLabelValues(op, result).Observe(took.Seconds())
}

// agentCollector reads the manager's sandboxes and the slot pool at each scrape; both
// answer from memory without waiting for a transition.
type agentCollector struct {
	src              AgentSources
	sandboxes, slots *prometheus.Desc
}

func newAgentCollector(src AgentSources) agentCollector {
	return agentCollector{
		src: src,
		sandboxes: prometheus.NewDesc(namespace+"_agent_sandboxes",
			"Sandboxes on this host, by state.", []string{"state"}, nil),
		slots: prometheus.NewDesc(namespace+"_agent_slots_ready",
			"Network slots made ready ahead of creates, by internet setting.", []string{"internet"}, nil),
	}
}

func (c agentCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.sandboxes
	ch <- c.slots
}

func (c agentCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.src.Sandboxes.CountByState()
	// Every state a host knows is there, at 0 when empty; the control plane's own
	// (pending, missing) never occur here.
	for _, st := range lifecycle.All {
		if st == lifecycle.Pending || st == lifecycle.Missing {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.sandboxes, prometheus.GaugeValue, float64(n[st]), string(st))
	}
	if c.src.Slots == nil {
		return
	}
	for _, internet := range []bool{false, true} {
		ch <- prometheus.MustNewConstMetric(c.slots, prometheus.GaugeValue, float64(c.src.Slots.Ready(internet)), strconv.FormatBool(internet))
	}
}

// samplerCollector reports a SamplerStats's totals as counters.
type samplerCollector struct {
	stats        SamplerStats
	samples, cpu *prometheus.Desc
}

// NewSamplerCollector reports what the per-sandbox metrics sampler has cost:
// wrenn_agent_sampler_samples_total and wrenn_agent_sampler_cpu_seconds_total. With a
// nil stats it reports nothing, so it can be registered before a sampler exists.
func NewSamplerCollector(stats SamplerStats) prometheus.Collector {
	return samplerCollector{
		stats: stats,
		samples: prometheus.NewDesc(namespace+"_agent_sampler_samples_total",
			"Samples the per-sandbox metrics sampler has taken since the agent started.", nil, nil),
		cpu: prometheus.NewDesc(namespace+"_agent_sampler_cpu_seconds_total",
			"CPU time the per-sandbox metrics sampler has spent since the agent started.", nil, nil),
	}
}

func (c samplerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.samples
	ch <- c.cpu
}

func (c samplerCollector) Collect(ch chan<- prometheus.Metric) {
	if c.stats == nil {
		return
	}
	samples, cpu := c.stats.SamplingTotals()
	ch <- prometheus.MustNewConstMetric(c.samples, prometheus.CounterValue, float64(samples))
	ch <- prometheus.MustNewConstMetric(c.cpu, prometheus.CounterValue, cpu.Seconds())
}
