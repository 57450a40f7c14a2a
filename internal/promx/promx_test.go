package promx_test

import (
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/wrennhq/wrenn/internal/promx"
	"github.com/wrennhq/wrenn/internal/server/servertest"
)

func TestMain(m *testing.M) { os.Exit(servertest.Run(m)) }

const token = "metrics-token-0123456789"

// scrape GETs url with the bearer token (none when ""), and parses a 200's body
// with Prometheus's own text parser, as a Prometheus server would.
func scrape(t *testing.T, url, bearer string) (int, map[string]*dto.MetricFamily) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return resp.StatusCode, fams
}

// value is the value of the series of family name whose labels include want (a
// histogram's: its sample count), or NaN when there is none.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return math.NaN()
	}
	for _, m := range f.GetMetric() {
		if !hasLabels(m, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	return math.NaN()
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	got := map[string]string{}
	for _, l := range m.GetLabel() {
		got[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// Metrics are never public by default: with no token, Wrap leaves /metrics to the
// handler behind (an unknown route); with one, only that bearer token reads them,
// on the main listener and on the listener of their own.
func TestAccess(t *testing.T) {
	reg := promx.NewRegistry()
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "api", http.StatusNotFound) })
	if (promx.Access{}).Enabled() {
		t.Error("the zero Access serves metrics")
	}
	off := httptest.NewServer(promx.Access{}.Wrap(reg, nil, next))
	defer off.Close()
	if status, _ := scrape(t, off.URL+promx.Path, token); status != http.StatusNotFound {
		t.Errorf("no token, main listener: %d, want 404", status)
	}
	on := httptest.NewServer(promx.Access{Token: token}.Wrap(reg, nil, next))
	defer on.Close()
	for _, c := range []struct {
		path, bearer string
		want         int
	}{
		{promx.Path, "", http.StatusUnauthorized},
		{promx.Path, "wrong-" + token, http.StatusUnauthorized},
		{promx.Path, token[:len(token)-1], http.StatusUnauthorized},
		{promx.Path, token, http.StatusOK},
		{"/other", token, http.StatusNotFound}, // the rest is still the API's
	} {
		if status, _ := scrape(t, on.URL+c.path, c.bearer); status != c.want {
			t.Errorf("token set, %s with bearer %q: %d, want %d", c.path, c.bearer, status, c.want)
		}
	}
	// The Go runtime's and the process's collectors are in every registry.
	_, fams := scrape(t, on.URL+promx.Path, token)
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if fams[name] == nil {
			t.Errorf("no %s", name)
		}
	}
	for _, c := range []struct {
		access       promx.Access
		path, bearer string
		want         int
	}{
		{promx.Access{Listen: "127.0.0.1:0"}, promx.Path, "", http.StatusOK},
		{promx.Access{Listen: "127.0.0.1:0"}, "/v1/sandboxes", "", http.StatusNotFound},
		{promx.Access{Listen: "127.0.0.1:0", Token: token}, promx.Path, "", http.StatusUnauthorized},
		{promx.Access{Listen: "127.0.0.1:0", Token: token}, promx.Path, token, http.StatusOK},
	} {
		own := httptest.NewServer(c.access.ListenHandler(reg, nil))
		if status, _ := scrape(t, own.URL+c.path, c.bearer); status != c.want {
			t.Errorf("own listener (token %q), %s with bearer %q: %d, want %d", c.access.Token, c.path, c.bearer, status, c.want)
		}
		own.Close()
	}
}

type samplerStats struct{}

func (samplerStats) SamplingTotals() (uint64, time.Duration) { return 42, 1500 * time.Millisecond }

// The sampler's collector reports nothing until it has a sampler.
func TestSamplerCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(promx.NewSamplerCollector(nil))
	if fams, err := reg.Gather(); err != nil || len(fams) != 0 {
		t.Errorf("nil sampler: %v %v", fams, err)
	}
	reg = prometheus.NewRegistry()
	reg.MustRegister(promx.NewSamplerCollector(samplerStats{}))
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		got[f.GetName()] = f.GetMetric()[0].GetCounter().GetValue()
	}
	if got["wrenn_agent_sampler_samples_total"] != 42 || got["wrenn_agent_sampler_cpu_seconds_total"] != 1.5 {
		t.Errorf("sampler totals: %v", got)
	}
}
