package promx

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/internal/lifecycle"
	"github.com/wrennhq/wrenn/internal/server/sandboxes"
	"github.com/wrennhq/wrenn/internal/server/scheduler"
)

// countTimeout bounds the scrape's queries: a slow database leaves its counts out of
// one scrape rather than holding every scrape up.
const countTimeout = 2 * time.Second

// Counts are the aggregates the control plane's scrape reads from PostgreSQL
// (*db.Queries has them).
type Counts interface {
	CountLiveSandboxesByStatus(ctx context.Context) ([]db.CountLiveSandboxesByStatusRow, error)
	CountHostsByStatus(ctx context.Context) ([]db.CountHostsByStatusRow, error)
}

// ControlPlane is the control plane's metrics. It is the observer of its HTTP
// requests (api.RequestObserver), placements (sandboxes.PlacementObserver) and port
// proxy (proxy.Observer), and counts sandboxes and hosts in PostgreSQL at each scrape.
type ControlPlane struct {
	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	decisions     *prometheus.CounterVec
	proxyConns    prometheus.Counter
	proxyInFlight prometheus.Gauge
	proxyIn       prometheus.Counter
	proxyOut      prometheus.Counter
}

// NewControlPlane registers the control plane's metrics with reg, once per process.
func NewControlPlane(reg prometheus.Registerer, counts Counts) (*ControlPlane, error) {
	proxyBytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "proxy", Name: "bytes_total",
		Help: "Bytes the port proxy carried (bodies and WebSocket streams, not headers): direction in is client to sandbox, out is sandbox to client.",
	}, []string{"direction"})
	c := &ControlPlane{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "http", Name: "requests_total",
			Help: "API requests answered, by route pattern (\"\" when none matched), method and status code.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "http", Name: "request_duration_seconds",
			Help: "Time to answer API requests, by route pattern and method (streams and WebSockets: their whole length).",
			// 5 ms to about 2 min: creates wait for a boot, which is slow under TCG.
			Buckets: prometheus.ExponentialBucketsRange(0.005, 120, 16),
		}, []string{"route", "method"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "scheduler", Name: "decisions_total",
			Help: "Placement decisions of sandbox creates, by outcome: placed, no_capacity, lost_race (picked again), quota_exceeded, error.",
		}, []string{"outcome"}),
		proxyConns: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "proxy", Name: "connections_total",
			Help: "Requests (and WebSockets) the port proxy sent on to a sandbox.",
		}),
		proxyInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "proxy", Name: "connections_in_flight",
			Help: "Requests (and WebSockets) the port proxy is carrying now.",
		}),
		proxyIn:  proxyBytes.WithLabelValues("in"),
		proxyOut: proxyBytes.WithLabelValues("out"),
	}
	// Every outcome is there from the start, so a rate of one never seen is 0, not
	// absent.
	for _, o := range sandboxes.PlacementOutcomes() {
		c.decisions.WithLabelValues(o)
	}
	for _, col := range []prometheus.Collector{c.requests, c.latency, c.decisions, c.proxyConns, c.proxyInFlight, proxyBytes, newCountsCollector(counts)} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("register control plane metrics: %w", err)
		}
	}
	return c, nil
}

// ObserveRequest implements api.RequestObserver.
func (c *ControlPlane) ObserveRequest(route, method string, status int, took time.Duration) {
	c.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	c.latency.WithLabelValues(route, method).Observe(took.Seconds())
}

// ObservePlacement implements sandboxes.PlacementObserver.
func (c *ControlPlane) ObservePlacement(outcome string) { c.decisions.WithLabelValues(outcome).Inc() }

// ProxyConnStarted implements proxy.Observer.
func (c *ControlPlane) ProxyConnStarted() { c.proxyConns.Inc(); c.proxyInFlight.Inc() }

// ProxyConnEnded implements proxy.Observer.
func (c *ControlPlane) ProxyConnEnded() { c.proxyInFlight.Dec() }

// ProxyBytesIn implements proxy.Observer.
func (c *ControlPlane) ProxyBytesIn(n int) { c.proxyIn.Add(float64(n)) }

// ProxyBytesOut implements proxy.Observer.
func (c *ControlPlane) ProxyBytesOut(n int) { c.proxyOut.Add(float64(n)) }

// countsCollector reads the sandbox and host counts at each scrape: two small GROUP BY
// queries, instead of gauges every service would have to keep in step.
type countsCollector struct {
	counts           Counts
	sandboxes, hosts *prometheus.Desc
}

func newCountsCollector(counts Counts) countsCollector {
	return countsCollector{
		counts: counts,
		sandboxes: prometheus.NewDesc(namespace+"_sandboxes",
			"Sandboxes the control plane records, by state; stopped and failed ones (history) are left out.", []string{"state"}, nil),
		hosts: prometheus.NewDesc(namespace+"_hosts", "Hosts registered and not deleted, by status.", []string{"status"}, nil),
	}
}

func (c countsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.sandboxes
	ch <- c.hosts
}

// Collect has no context of its own (Prometheus's Collector has none), so the queries
// get a fresh one with countTimeout. A failed query is reported as an invalid metric,
// which the handler logs while serving the rest.
func (c countsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), countTimeout)
	defer cancel()
	sbx, err := c.counts.CountLiveSandboxesByStatus(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.sandboxes, fmt.Errorf("count sandboxes: %w", err))
	} else {
		n := map[string]int64{}
		for _, st := range lifecycle.All {
			if st != lifecycle.Stopped && st != lifecycle.Error {
				n[string(st)] = 0
			}
		}
		for _, r := range sbx {
			n[r.Status] = r.Sandboxes
		}
		emit(ch, c.sandboxes, n)
	}
	hosts, err := c.counts.CountHostsByStatus(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.hosts, fmt.Errorf("count hosts: %w", err))
		return
	}
	// Offline is a deleted host's status, which the count leaves out.
	n := map[string]int64{}
	for _, st := range []scheduler.HostStatus{scheduler.StatusPending, scheduler.StatusOnline, scheduler.StatusUnreachable, scheduler.StatusDraining} {
		n[string(st)] = 0
	}
	for _, r := range hosts {
		n[r.Status] = r.Hosts
	}
	emit(ch, c.hosts, n)
}

// emit sends one gauge per label value.
func emit(ch chan<- prometheus.Metric, d *prometheus.Desc, n map[string]int64) {
	for label, v := range n {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), label)
	}
}
