package qemu

import (
	"context"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/vmm"
)

// BenchmarkRestoreVsBoot compares, in one run, a cold boot (Start until the guest's
// init runs) with the agent's resume of a paused sandbox (Restore into its own Dir
// from its pause snapshot, then Resume), and once per run the restore of a clone
// from a detached snapshot elsewhere (its memory copied into the clone's Dir). ns/op
// is the resume; run it as
//
//	go test -run '^$' -bench RestoreVsBoot -benchtime 10x ./internal/vmm/qemu/
func BenchmarkRestoreVsBoot(b *testing.B) {
	requireQEMU(b)
	kernel, initrd := testKernel(b), testInitramfs(b)
	cfg := realConfig(b, "bench", kernel, initrd)
	d := New(Options{})
	ctx := context.Background()

	t0 := time.Now()
	m := startReal(b, d, cfg)
	waitConsole(b, m.ConsoleLog(), readyMarker, bootTimeout)
	boot := time.Since(t0)

	// A clone of a detached snapshot: its memory is copied into the clone's Dir.
	if err := m.Pause(ctx); err != nil {
		b.Fatal(err)
	}
	template := b.TempDir()
	if _, err := m.Snapshot(ctx, vmm.SnapshotOptions{Dir: template, Detached: true}); err != nil {
		b.Fatal(err)
	}
	if err := m.Resume(ctx); err != nil {
		b.Fatal(err)
	}
	clone := realConfig(b, "bench-clone", kernel, initrd)
	t0 = time.Now()
	c, err := d.Restore(ctx, clone, template)
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Resume(ctx); err != nil {
		b.Fatal(err)
	}
	cloneTime := time.Since(t0)
	if err := c.Stop(ctx); err != nil {
		b.Fatal(err)
	}

	var total, load time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir, _ := pauseToSnapshot(b, m)
		b.StartTimer()
		var took time.Duration
		m, took = resumeFromSnapshot(b, d, cfg, dir)
		total += took
		load += m.Timings().Running - m.Timings().QMPReady
	}
	b.StopTimer()
	restore := total / time.Duration(b.N)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(boot), "boot_ms")
	b.ReportMetric(ms(restore), "resume_ms")
	b.ReportMetric(ms(load/time.Duration(b.N)), "load_ms")
	b.ReportMetric(ms(cloneTime), "clone_ms")
	b.ReportMetric(float64(boot)/float64(restore), "boot/resume")
	b.Logf("cold boot %s; resume of a pause snapshot %s on average over %d (device state load %s, the rest is QEMU starting); clone from a copied snapshot %s; boot/resume = %.1fx",
		boot.Round(time.Millisecond), restore.Round(time.Millisecond), b.N, (load / time.Duration(b.N)).Round(time.Millisecond),
		cloneTime.Round(time.Millisecond), float64(boot)/float64(restore))
}
