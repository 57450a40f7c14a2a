package bench

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/agent/sampling"
	"github.com/wrennhq/wrenn/internal/envd/envdtest"
	"github.com/wrennhq/wrenn/internal/envdclient"
	"github.com/wrennhq/wrenn/internal/metrics"
)

// samplerSandboxes is how many stand-in sandboxes BenchmarkSampler samples.
const samplerSandboxes = 20

// BenchmarkSampler measures what the agent's metrics sampling costs, with 20 stand-in
// sandboxes: each a real envd process (as the fake driver's VMs are: its pid is the
// "VMM" the sampler reads from /proc, and it answers GET /metrics as a guest does) and
// a disk file of 256 extents (far more than the base template's). The sampler runs at
// its real cadence (every 500 ms, FIEMAP every 5 s, envd every sample) and the agent
// process's whole CPU time (getrusage: the sampler, the guest requests' goroutines,
// the HTTP client, GC) is counted, then again without the guest requests. Targets: at
// most 0.1 % of one core per sandbox (3.6 s of CPU per sandbox-hour) and 200 KiB of
// memory per sandbox. Baseline, in the same run: a bare read of /proc/{pid}/stat.
func BenchmarkSampler(b *testing.B) {
	envds := make([]*envdtest.Envd, samplerSandboxes)
	for i := range envds {
		envds[i] = envdtest.Start(b)
	}
	dir := b.TempDir()
	hc := &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second}}
	targets := func(guest bool) []sampling.Target {
		out := make([]sampling.Target, len(envds))
		for i, e := range envds {
			out[i] = sampling.Target{ID: fmt.Sprint(i), Series: sampling.NewSeries(nil), PID: e.PID, VCPUs: 1, Disk: fragmentedFile(b, dir, i)}
			if guest {
				out[i].Guest = envdclient.New(e.URL, "", hc)
			}
		}
		return out
	}
	log := slog.New(slog.DiscardHandler)
	const period = 20 * time.Second
	run := func(ts []sampling.Target) (perHour time.Duration, st sampling.Stats) {
		s := sampling.New(sampling.Config{Log: log}, func() []sampling.Target { return ts })
		ctx, cancel := context.WithTimeout(context.Background(), period)
		defer cancel()
		cpu0, wall0 := cpuTime(b), time.Now()
		s.Run(ctx)
		cpu, wall := cpuTime(b)-cpu0, time.Since(wall0)
		perHour = time.Duration(float64(cpu) / float64(len(ts)) * float64(time.Hour) / float64(wall))
		return perHour, s.Stats()
	}
	// The process's own floor over the same time: GC, the runtime, nothing sampled.
	cpu0, wall0 := cpuTime(b), time.Now()
	time.Sleep(5 * time.Second)
	idlePerHour := time.Duration(float64(cpuTime(b)-cpu0) * float64(time.Hour) / float64(time.Since(wall0)))

	withGuest, gst := run(targets(true))
	hostOnly, hst := run(targets(false))

	// Baseline: the cheapest possible look at a process, a bare read of its stat file.
	const reads = 20000
	cpu0 = cpuTime(b)
	for i := range reads {
		if _, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", envds[i%len(envds)].PID)); err != nil {
			b.Fatal(err)
		}
	}
	bare := (cpuTime(b) - cpu0) / reads
	perSample := func(perHour time.Duration) time.Duration { return perHour / 7200 } // 2 samples a second
	share := func(perHour time.Duration) float64 { return float64(perHour) / float64(time.Hour) * 100 }

	// Memory one sandbox's tiers hold when full (25 hours of samples: every ring wrapped).
	setBytes := fullSetBytes(samplerSandboxes)

	b.ReportMetric(withGuest.Seconds(), "cpu-s/sandbox-hour")
	b.ReportMetric(share(withGuest), "%core/sandbox")
	b.ReportMetric(float64(setBytes)/1024, "KiB/sandbox")
	b.ReportMetric(float64(perSample(withGuest))/float64(bare), "x-bare-read")
	b.Logf("%d sandboxes, %v each run, idle floor of this process %.3f s/hour", samplerSandboxes, period, idlePerHour.Seconds())
	b.Logf("with guest requests: %.3f s CPU per sandbox-hour (%.4f %% of one core; target 3.6 s, 0.1 %%), %v per sample, %.1fx a bare /proc/pid/stat read (%v); %d ticks, %d samples, %v busy in ticks, %d guest requests (%d failed)",
		withGuest.Seconds(), share(withGuest), perSample(withGuest).Round(time.Microsecond/10), float64(perSample(withGuest))/float64(bare), bare.Round(time.Microsecond/10),
		gst.Ticks, gst.Samples, gst.Busy.Round(time.Millisecond), gst.GuestRequests, gst.GuestFailures)
	b.Logf("host only (/proc and FIEMAP): %.3f s CPU per sandbox-hour (%.4f %% of one core), %v per sample, %.1fx a bare read; %v busy in %d ticks (%v a sample)",
		hostOnly.Seconds(), share(hostOnly), perSample(hostOnly).Round(time.Microsecond/10), float64(perSample(hostOnly))/float64(bare),
		hst.Busy.Round(time.Millisecond), hst.Ticks, (hst.Busy / time.Duration(max(hst.Samples, 1))).Round(time.Microsecond/10))
	b.Logf("memory: %.1f KiB per sandbox with every tier full (target 200 KiB: %.2fx)", float64(setBytes)/1024, float64(setBytes)/(200<<10))
}

// cpuTime is the CPU time, user and system, this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fragmentedFile writes a 16 MiB sparse file of 256 separate 4 KiB extents.
func fragmentedFile(b *testing.B, dir string, i int) string {
	path := filepath.Join(dir, fmt.Sprintf("disk-%d", i))
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	block := make([]byte, 4096)
	block[0] = 1
	for e := range 256 {
		if _, err := f.WriteAt(block, int64(e)<<16); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	return path
}

// fullSetBytes is the heap one sandbox's metric tiers hold, measured over n sets
// filled with 25 hours of samples each.
func fullSetBytes(n int) int64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	sets := make([]*metrics.Set, n)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range sets {
		sets[i] = metrics.New(nil)
		for k := range 25 * 3600 * 2 {
			sets[i].Add(metrics.Sample{Time: start.Add(time.Duration(k) * 500 * time.Millisecond), CPUPct: 50, MemBytes: 1 << 30, DiskBytes: 1 << 30,
				HasGuest: true, Guest: metrics.Guest{CPUPct: 40, CPUCount: 2, MemUsed: 1 << 29, MemTotal: 1 << 30}})
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(sets)
	return int64(after.HeapAlloc-before.HeapAlloc) / int64(n)
}
