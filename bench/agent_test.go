package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/agent"
	"github.com/wrennhq/wrenn/internal/agent/vmtest"
	"github.com/wrennhq/wrenn/internal/image"
	"github.com/wrennhq/wrenn/internal/rootfs"
	"github.com/wrennhq/wrenn/internal/testutil"
)

// BenchmarkDiskClone clones the base template's rootfs by sparse copy (the test dir's
// ext4) and by reflink (a loop-mounted XFS, as a host would configure its data dir),
// against reading the template's allocated data once.
func BenchmarkDiskClone(b *testing.B) {
	dir := vmBenchDir(b)
	t, err := image.Load(dir, "base")
	if err != nil {
		b.Skipf("no base template in %s (make test-vm builds it): %v", dir, err)
	}
	xfs := testutil.MountXFS(b, 8<<30)
	xfsTemplate := filepath.Join(xfs, "rootfs.ext4")
	if _, err := rootfs.Clone(t.RootFS, xfsTemplate); err != nil {
		b.Fatal(err)
	}
	clone := func(src, dstDir string) time.Duration {
		var d []time.Duration
		for i := range 5 {
			dst := filepath.Join(dstDir, "clone-"+string(rune('a'+i)))
			d = append(d, timeIt(func() {
				if _, err := rootfs.Clone(src, dst); err != nil {
					b.Fatal(err)
				}
			}))
			os.Remove(dst)
		}
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	sparse := clone(t.RootFS, b.TempDir())
	reflink := clone(xfsTemplate, xfs)
	base := timeIt(func() {
		if err := exec.Command("cat", t.RootFS).Run(); err != nil {
			b.Fatal(err)
		}
	})
	b.ReportMetric(float64(reflink.Microseconds())/1000, "reflink-ms")
	b.ReportMetric(float64(sparse.Microseconds())/1000, "sparse-ms")
	b.Logf("median of 5: reflink (XFS) %v, sparse copy (ext4) %v; baseline reading the template once %v (reflink/baseline %.3f)",
		reflink, sparse, base.Round(time.Millisecond), float64(reflink)/float64(base))
}

// BenchmarkAgentCreate creates and destroys sandboxes through the agent's manager on a
// reflink data dir and splits a create into its steps; "agent work" is everything but
// QEMU's start and the guest's boot (the /init round trip included, though most of it
// is envd running under emulation).
func BenchmarkAgentCreate(b *testing.B) {
	dir := vmBenchDir(b)
	if _, err := image.Load(dir, "base"); err != nil {
		b.Skipf("no base template in %s: %v", dir, err)
	}
	// A data dir on a loop-mounted XFS, as a production host would have it, so disk
	// clones are reflinks: copy the template (kernels + image) there first.
	xfs := testutil.MountXFS(b, 8<<30)
	for _, sub := range []string{"kernels", "images"} {
		if out, err := exec.Command("cp", "-a", "--sparse=always", filepath.Join(dir, sub), xfs).CombinedOutput(); err != nil {
			b.Fatalf("copy %s: %v %s", sub, err, out)
		}
	}
	if m, _ := rootfs.Probe(xfs); m != rootfs.Reflink {
		b.Fatalf("XFS data dir clones by %s", m)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	for _, poolSize := range []int{0, 2} {
		m, pool := vmtest.NewManager(b, vmtest.Options{Dir: xfs, FirstSlot: 63000, LastSlot: 63999, ReadySlots: poolSize, Log: log})
		if poolSize > 0 {
			for pool.Ready(false) < poolSize { // measure a warm pool, as a running agent has
				time.Sleep(10 * time.Millisecond)
			}
		}
		benchCreates(b, m, fmt.Sprintf("slot pool %d", poolSize))
		// Closed now, not when the benchmark ends: the next pool takes the same range.
		if err := pool.Close(); err != nil {
			b.Error(err)
		}
	}
}

func benchCreates(b *testing.B, m *agent.Manager, label string) {
	const runs = 3
	var slot, disk, vmStart, boot, initT, total, own, ownNoInit []time.Duration
	for range runs {
		info, _, tm, err := m.Create(context.Background(), agent.Spec{Template: "base"})
		if err != nil {
			b.Fatal(err)
		}
		slot, disk, vmStart, boot, initT, total = append(slot, tm.Slot), append(disk, tm.Disk), append(vmStart, tm.VMStart), append(boot, tm.Boot), append(initT, tm.Init), append(total, tm.Total)
		own = append(own, tm.Total-tm.VMStart-tm.Boot)
		ownNoInit = append(ownNoInit, tm.Total-tm.VMStart-tm.Boot-tm.Init)
		if err := m.Destroy(context.Background(), info.Spec.ID); err != nil {
			b.Fatal(err)
		}
	}
	med := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	b.Logf("%s — median of %d creates: slot %v, disk clone %v, qemu start %v, boot→envd %v, /init %v; total %v; agent's own work (total − qemu start − boot) %v, of it outside the guest's /init %v",
		label, runs, med(slot), med(disk), med(vmStart), med(boot), med(initT), med(total), med(own), med(ownNoInit))
}
