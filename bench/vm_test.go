package bench

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"sort"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/agent"
	"github.com/wrennhq/wrenn/internal/agent/vmtest"
	"github.com/wrennhq/wrenn/internal/image"
	"github.com/wrennhq/wrenn/internal/testutil"
)

// vmBenchDir is the test template's WRENN_DIR (make test-vm builds it there).
func vmBenchDir(b *testing.B) string {
	testutil.RequireRoot(b, "VM benchmarks make network namespaces and TAP devices")
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		b.Skip("qemu-system-x86_64 is not installed")
	}
	if d := os.Getenv("WRENN_TEST_DIR"); d != "" {
		return d
	}
	return "/var/lib/wrenn-test"
}

func envdPath(b *testing.B) string {
	p := os.Getenv("WRENN_ENVD_BIN")
	if p == "" {
		b.Skip("set WRENN_ENVD_BIN (make bench does)")
	}
	return p
}

// BenchmarkImageBuild times a template build with everything cached (no-op), and one
// after envd changed (re-inject and re-pack only), against hashing the rootfs once —
// the least any up-to-date check that reads the image would cost.
func BenchmarkImageBuild(b *testing.B) {
	dir := vmBenchDir(b)
	envd := envdPath(b)
	ctx := context.Background()
	opts := image.Options{Dir: dir, Name: "base", EnvdPath: envd}
	t, err := image.Build(ctx, opts)
	if err != nil {
		b.Fatal(err)
	}
	base := timeIt(func() {
		if err := exec.Command("sha256sum", t.RootFS).Run(); err != nil {
			b.Fatal(err)
		}
	})
	warm := timeIt(func() {
		if _, err := image.Build(ctx, opts); err != nil {
			b.Fatal(err)
		}
	})
	// A different envd: a copy with one byte appended (ELF ignores trailing bytes).
	changed := b.TempDir() + "/envd"
	data, err := os.ReadFile(envd)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(changed, append(data, 0), 0o755); err != nil {
		b.Fatal(err)
	}
	benchOpts := image.Options{Dir: b.TempDir(), CacheDir: dir + "/cache", Name: "bench", EnvdPath: changed}
	reinject := timeIt(func() {
		if _, err := image.Build(ctx, benchOpts); err != nil {
			b.Fatal(err)
		}
	})
	b.ReportMetric(warm.Seconds()*1000, "warm-ms")
	b.ReportMetric(reinject.Seconds(), "envd-changed-s")
	b.ReportMetric(float64(warm)/float64(base), "warm-x-sha256")
	b.Logf("warm (no-op) %v; envd changed (new template from the cached debootstrap) %v; baseline sha256 of the rootfs %v; warm/baseline %.2f",
		warm.Round(time.Millisecond), reinject.Round(time.Millisecond), base.Round(time.Millisecond), float64(warm)/float64(base))
}

// BenchmarkVMBoot boots the base template several times through the agent's manager
// and reports the median of each step, against the same kernel booting only to its own
// panic (rdinit missing): the ratio is what initramfs, wrenn-init and envd add on top
// of the kernel's boot.
func BenchmarkVMBoot(b *testing.B) {
	dir := vmBenchDir(b)
	if _, err := image.Load(dir, "base"); err != nil {
		b.Skipf("no base template in %s (make test-vm builds it): %v", dir, err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	full, pool := vmtest.NewManager(b, vmtest.Options{Dir: dir, FirstSlot: 61000, LastSlot: 61999, Log: log})
	kernelOnlyMgr, _ := vmtest.NewManager(b, vmtest.Options{Dir: dir, Pool: pool, Log: log, KernelArgs: []string{"rdinit=/no/such/init"}})
	const runs = 3
	var vmStart, boot, initT, total, kernelOnly []time.Duration
	for range runs {
		info, _, tm, err := full.Create(context.Background(), agent.Spec{Template: "base"})
		if err != nil {
			b.Fatal(err)
		}
		vmStart, boot, initT, total = append(vmStart, tm.VMStart), append(boot, tm.Boot), append(initT, tm.Init), append(total, tm.Total)
		if err := full.Destroy(context.Background(), info.Spec.ID); err != nil {
			b.Error(err)
		}
		start := time.Now()
		if _, _, _, err := kernelOnlyMgr.Create(context.Background(), agent.Spec{Template: "base"}); err == nil {
			b.Fatal("kernel-only boot unexpectedly succeeded")
		}
		kernelOnly = append(kernelOnly, time.Since(start))
	}
	med := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	b.ReportMetric(float64(med(vmStart).Milliseconds()), "qemu-start-ms")
	b.ReportMetric(float64(med(boot).Milliseconds()), "boot-to-envd-ms")
	b.ReportMetric(float64(med(initT).Milliseconds()), "init-ms")
	b.ReportMetric(float64(med(total))/float64(med(kernelOnly)), "x-kernel-only")
	b.Logf("median of %d: qemu spawn→QMP ready→running %v, boot→envd /health %v, /init %v; create total %v; kernel-only boot to panic+exit %v (ratio %.2f)",
		runs, med(vmStart), med(boot), med(initT), med(total), med(kernelOnly), float64(med(total))/float64(med(kernelOnly)))
}
