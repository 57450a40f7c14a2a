package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/wrennhq/wrenn/pkg/client"
)

// sparkBars draw a series from its lowest to its highest value.
var sparkBars = []rune("▁▂▃▄▅▆▇█")

// sparkline draws vals in at most width characters (each the largest of the values
// it stands for, so that a spike shows), scaled from 0 to top.
func sparkline(vals []float64, width int, top float64) string {
	if len(vals) == 0 {
		return ""
	}
	per := int(math.Ceil(float64(len(vals)) / float64(width)))
	var b strings.Builder
	for i := 0; i < len(vals); i += per {
		v := 0.0
		for _, x := range vals[i:min(i+per, len(vals))] {
			v = max(v, x)
		}
		idx := 0
		if top > 0 {
			idx = int(v / top * float64(len(sparkBars)-1))
		}
		b.WriteRune(sparkBars[min(max(idx, 0), len(sparkBars)-1)])
	}
	return b.String()
}

// printMetrics prints a sandbox's metrics: a line per measure with a sparkline, the
// last value and the range's peak.
func printMetrics(w io.Writer, m *client.SandboxMetrics) {
	src := "live from its host"
	if !m.Live {
		src = "kept at its last pause or destroy"
	}
	fmt.Fprintf(w, "sandbox %s, last %s, a point every %s (%s), %d points\n", m.SandboxID, m.Range, time.Duration(m.StepMS)*time.Millisecond, src, len(m.Points))
	if len(m.Points) == 0 {
		fmt.Fprintln(w, "no points yet")
		return
	}
	var cpu, mem, disk []float64
	var peakCPU, peakMem, peakDisk float64
	for _, p := range m.Points {
		cpu, mem, disk = append(cpu, p.CPUPct), append(mem, float64(p.MemBytes)), append(disk, float64(p.DiskBytes))
		peakCPU, peakMem, peakDisk = max(peakCPU, p.CPUPctMax), max(peakMem, float64(p.MemBytesMax)), max(peakDisk, float64(p.DiskBytes))
	}
	last := m.Points[len(m.Points)-1]
	fmt.Fprintf(w, "CPU     %-60s now %5.1f%%   peak %5.1f%%\n", sparkline(cpu, 60, 100), last.CPUPct, peakCPU)
	fmt.Fprintf(w, "memory  %-60s now %s   peak %s\n", sparkline(mem, 60, peakMem), mib1(last.MemBytes), mib1(int64(peakMem)))
	fmt.Fprintf(w, "disk    %-60s now %s   peak %s\n", sparkline(disk, 60, peakDisk), mib1(last.DiskBytes), mib1(int64(peakDisk)))
	if g := last.Guest; g != nil {
		fmt.Fprintf(w, "guest   %d CPUs at %.1f%%, memory %s of %s used, disk %s of %s used\n", g.CPUCount, g.CPUPct,
			mib1(g.MemUsed), mib1(g.MemTotal), mib1(g.DiskUsed), mib1(g.DiskTotal))
	}
}

// mib1 is a byte count in MiB with one decimal (a chart's values move by less than a MiB).
func mib1(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
