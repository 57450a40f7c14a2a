package agent

import (
	"time"

	"github.com/wrennhq/wrenn/internal/agent/sampling"
	"github.com/wrennhq/wrenn/internal/lifecycle"
	"github.com/wrennhq/wrenn/internal/metrics"
)

// Sandbox metrics: one sampler (package sampling) measures every running sandbox
// twice a second into the sandbox's own series. The series lives with the sandbox in
// memory: across pauses, when the sandbox is no target and so gets no points, and gone
// with it at destroy. It is not persisted: after an agent restart series start empty
// (the control plane keeps history by flushing before a pause or destroy).

// startSampler runs the sampler in the background until Close.
func (m *Manager) startSampler() {
	cfg := m.cfg.Sampling
	if cfg.Now == nil {
		cfg.Now = m.cfg.Now
	}
	if cfg.Log == nil {
		cfg.Log = m.log
	}
	m.sampler = sampling.New(cfg, m.sampleTargets)
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		m.sampler.Run(m.bgCtx)
	}()
}

// sampleTargets lists the running sandboxes as the sampler needs them, giving each its
// series on its first sample.
func (m *Manager) sampleTargets() []sampling.Target {
	m.mu.RLock()
	boxes := make([]*sandbox, 0, len(m.boxes))
	for _, sb := range m.boxes {
		boxes = append(boxes, sb)
	}
	m.mu.RUnlock()
	out := make([]sampling.Target, 0, len(boxes))
	for _, sb := range boxes {
		sb.mu.Lock()
		if sb.rec.State == lifecycle.Running && sb.machine != nil {
			if sb.series == nil {
				sb.series = sampling.NewSeries(m.cfg.Now)
			}
			t := sampling.Target{ID: sb.id, Series: sb.series, PID: sb.machine.PID(), VCPUs: sb.rec.Spec.VCPUs, Disk: sb.disk}
			if sb.envd != nil {
				t.Guest = sb.envd
			}
			out = append(out, t)
		}
		sb.mu.Unlock()
	}
	return out
}

// series is a sandbox's metrics, nil when it has never been sampled.
func (m *Manager) series(id string) (*sampling.Series, error) {
	sb, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.series, nil
}

// Metrics returns a sandbox's metrics over the last d from the finest tier that covers
// d (metrics.Set.Range). A paused sandbox answers what was sampled before its pause.
func (m *Manager) Metrics(id string, d time.Duration) (metrics.Series, error) {
	if d <= 0 {
		return metrics.Series{}, invalid("metrics range %v: want a positive duration", d)
	}
	se, err := m.series(id)
	if err != nil {
		return metrics.Series{}, err
	}
	if se == nil {
		t := metrics.For(d)
		return metrics.Series{Tier: t, Step: t.Step()}, nil
	}
	return se.Range(d), nil
}

// FlushMetrics returns every tier of a sandbox's metrics that has points, finest
// first, for the control plane to keep. The series stays as it is: flushing twice
// answers the same points again (and newer ones).
func (m *Manager) FlushMetrics(id string) ([]metrics.Series, error) {
	se, err := m.series(id)
	if err != nil || se == nil {
		return nil, err
	}
	var out []metrics.Series
	for _, s := range se.All() {
		if len(s.Points) > 0 {
			out = append(out, s)
		}
	}
	return out, nil
}

// SamplerStats is what sampling has cost this agent so far.
func (m *Manager) SamplerStats() sampling.Stats { return m.sampler.Stats() }

// SamplingTotals is promx.SamplerStats: the samples taken and the time the sampler's
// ticks took (wall time on its goroutine, which is CPU time but for preemption).
func (m *Manager) SamplingTotals() (uint64, time.Duration) {
	st := m.sampler.Stats()
	return st.Samples, st.Busy
}
