package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/pkg/client"
)

func TestSparkline(t *testing.T) {
	if got := sparkline([]float64{0, 50, 100}, 60, 100); got != "▁▄█" {
		t.Errorf("sparkline 0,50,100: %q", got)
	}
	// More values than width: each character is the largest of its values (a spike
	// shows however narrow the chart).
	vals := make([]float64, 120)
	vals[77] = 100
	got := []rune(sparkline(vals, 60, 100))
	if len(got) != 60 || got[38] != '█' || strings.Count(string(got), "█") != 1 {
		t.Errorf("120 values in 60: %q", string(got))
	}
	if sparkline(nil, 60, 100) != "" || sparkline([]float64{5}, 60, 0) != "▁" {
		t.Error("empty series or zero scale")
	}
}

func TestPrintMetrics(t *testing.T) {
	now := time.Now()
	m := &client.SandboxMetrics{SandboxID: "sbx", Range: "10m", StepMS: 500, Live: true, Points: []client.MetricPoint{
		{Timestamp: now, CPUPct: 10, CPUPctMax: 20, MemBytes: 100 << 20, MemBytesMax: 120 << 20, DiskBytes: 1 << 20},
		{Timestamp: now, CPUPct: 90, CPUPctMax: 95, MemBytes: 200 << 20, MemBytesMax: 210 << 20, DiskBytes: 3 << 20,
			Guest: &client.GuestMetrics{CPUCount: 2, CPUPct: 88, MemUsed: 150 << 20, MemTotal: 1 << 30}},
	}}
	var b bytes.Buffer
	printMetrics(&b, m)
	for _, want := range []string{"live from its host", "every 500ms", "now  90.0%", "peak  95.0%", "now 200.0 MiB", "peak 210.0 MiB", "2 CPUs at 88.0%", "150.0 MiB of 1024.0 MiB"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	printMetrics(&b, &client.SandboxMetrics{SandboxID: "sbx", Range: "1h", StepMS: 30000})
	if !strings.Contains(b.String(), "kept at its last pause or destroy") || !strings.Contains(b.String(), "no points yet") {
		t.Errorf("no points:\n%s", b.String())
	}
}
