package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/agent"
	"github.com/wrennhq/wrenn/internal/agent/vmtest"
	"github.com/wrennhq/wrenn/internal/cgroup"
	"github.com/wrennhq/wrenn/internal/envdclient"
	"github.com/wrennhq/wrenn/internal/image"
)

// BenchmarkDensity packs idle sandboxes (1 vCPU, 512 MiB, warm-started, jailed and
// limited as the agent runs them) onto this host until one of them takes more than
// 2 s to answer an exec, the host's available memory falls under 2 GiB, or
// WRENN_BENCH_DENSITY_MAX (default 48) run. It reports how many fit and where each
// one's memory goes: the VMM's own (cgroup rss), its page cache (guest RAM the guest
// touched — a file mapping — plus its disk's cache), and the host's available memory
// per sandbox. The baseline is the exec round trip with one sandbox on the host.
func BenchmarkDensity(b *testing.B) {
	dir := vmBenchDir(b)
	if _, err := image.Load(dir, "base"); err != nil {
		b.Skipf("no base template in %s: %v", dir, err)
	}
	most := 48
	if v, err := strconv.Atoi(os.Getenv("WRENN_BENCH_DENSITY_MAX")); err == nil && v > 0 {
		most = v
	}
	cg, err := cgroup.New("/wrenn")
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	m, _ := vmtest.NewManager(b, vmtest.Options{Dir: dir, FirstSlot: 62000, LastSlot: 62999, ReadySlots: 2, Log: log, WarmStart: true,
		Confinement: agent.Confinement{UIDBase: 1000000000, Cgroups: cg}})
	ctx := context.Background()
	var ids []string
	b.Cleanup(func() {
		for _, id := range ids {
			_ = m.Destroy(ctx, id)
		}
	})
	exec := func(id string) time.Duration {
		start := time.Now()
		if _, err := m.Exec(ctx, id, envdclient.Command{Cmd: "/bin/true"}, 30*time.Second, nil, io.Discard, io.Discard); err != nil {
			b.Fatalf("exec in %s: %v", id, err)
		}
		return time.Since(start)
	}
	create := func() string {
		info, _, _, err := m.Create(ctx, agent.Spec{Template: "base", VCPUs: 1, MemoryMiB: 512})
		if err != nil {
			b.Fatalf("create sandbox %d: %v", len(ids)+1, err)
		}
		ids = append(ids, info.Spec.ID)
		return info.Spec.ID
	}
	availBefore := memAvailable(b)
	first := create()
	waitWarmSnapshot(b, dir)
	var base []time.Duration
	for range 5 {
		base = append(base, exec(first))
	}
	slices.Sort(base)
	baseline := base[2]

	stop, worst := "", time.Duration(0)
	for len(ids) < most && stop == "" {
		create()
		time.Sleep(2 * time.Second) // let it settle to idle
		// Every sandbox answers, the longest wait is what a user would see.
		worst = 0
		for _, id := range ids {
			worst = max(worst, exec(id))
		}
		switch avail := memAvailable(b); {
		case worst > 2*time.Second:
			stop = fmt.Sprintf("an exec took %v", worst.Round(time.Millisecond))
		case avail < 2<<30:
			stop = fmt.Sprintf("the host has %d MiB available", avail>>20)
		}
	}
	if stop == "" {
		stop = fmt.Sprintf("WRENN_BENCH_DENSITY_MAX (%d) reached", most)
	}
	var rss, cache int64
	for _, id := range ids {
		rss += memStat(b, id, "total_rss")
		cache += memStat(b, id, "total_cache")
	}
	n := int64(len(ids))
	used := (availBefore - memAvailable(b)) / n
	b.ReportMetric(float64(n), "sandboxes")
	b.ReportMetric(float64(used>>20), "host-MiB/sandbox")
	b.Logf("%d idle sandboxes (1 vCPU, 512 MiB) held, stopped because %s; slowest exec %v, %.1fx the one-sandbox baseline %v",
		n, stop, worst.Round(time.Millisecond), float64(worst)/float64(baseline), baseline.Round(time.Millisecond))
	b.Logf("per sandbox: VMM's own memory %d MiB, page cache (guest RAM touched + disk cache) %d MiB, host memory taken %d MiB",
		rss/n>>20, cache/n>>20, used>>20)
}

// memAvailable is the host's MemAvailable in bytes.
func memAvailable(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no MemAvailable in /proc/meminfo")
	return 0
}

// memStat reads a key of a sandbox's v1 memory cgroup (0 on a v2 host, where the
// benchmark reports host memory only).
func memStat(b *testing.B, id, key string) int64 {
	data, err := os.ReadFile("/sys/fs/cgroup/memory/wrenn/" + id + "/memory.stat")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}
