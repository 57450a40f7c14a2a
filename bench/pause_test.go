package bench

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/agent"
	"github.com/wrennhq/wrenn/internal/agent/vmtest"
	"github.com/wrennhq/wrenn/internal/envdclient"
	"github.com/wrennhq/wrenn/internal/image"
	"github.com/wrennhq/wrenn/internal/testutil"
	"github.com/wrennhq/wrenn/internal/vmm"
)

// BenchmarkSnapshotLifecycle measures, on a reflink (XFS) data dir, against a cold
// create in the same run: a create restored from the template's warm snapshot, a
// resume, a pause, and the bytes the 1st and the 20th pause of one sandbox write.
func BenchmarkSnapshotLifecycle(b *testing.B) {
	dir := vmBenchDir(b)
	if _, err := image.Load(dir, "base"); err != nil {
		b.Skipf("no base template in %s: %v", dir, err)
	}
	xfs := testutil.MountXFS(b, 8<<30)
	for _, sub := range []string{"kernels", "images"} {
		if out, err := exec.Command("cp", "-a", "--sparse=always", filepath.Join(dir, sub), xfs).CombinedOutput(); err != nil {
			b.Fatalf("copy %s: %v %s", sub, err, out)
		}
	}
	_ = os.RemoveAll(filepath.Join(xfs, "images", "base", "warm"))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	m, _ := vmtest.NewManager(b, vmtest.Options{Dir: xfs, FirstSlot: 63000, LastSlot: 63999, Log: log, WarmStart: true})
	ctx := context.Background()
	med := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}

	// To first exec: the create, then a command's round trip through envd.
	firstExec := func(id string, created time.Time) time.Duration {
		if _, err := m.Exec(ctx, id, envdclient.Command{Cmd: "/bin/true"}, time.Minute, nil, io.Discard, io.Discard); err != nil {
			b.Fatal(err)
		}
		return time.Since(created)
	}
	t0 := time.Now()
	first, _, coldTm, err := m.Create(ctx, agent.Spec{Template: "base"})
	if err != nil {
		b.Fatal(err)
	}
	coldExec := firstExec(first.Spec.ID, t0)
	warm := filepath.Join(xfs, "images", "base", "warm", "qemu-1c-512m", "snapshot")
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if _, err := vmm.ReadSnapshotMeta(warm); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("no warm snapshot after 3 minutes")
		}
	}
	var restored, restoredExec []time.Duration
	var restoredPause int64 // the first pause of a restored sandbox, as creates are now
	for i := range 3 {
		t0 := time.Now()
		info, _, tm, err := m.Create(ctx, agent.Spec{Template: "base"})
		if err != nil || !tm.Restored {
			b.Fatalf("create: restored %v, %v", tm.Restored, err)
		}
		restored, restoredExec = append(restored, tm.Total), append(restoredExec, firstExec(info.Spec.ID, t0))
		if i == 0 {
			time.Sleep(5 * time.Second) // idle a while, as a sandbox paused for idleness has
			_, st, err := m.Pause(ctx, info.Spec.ID)
			if err != nil {
				b.Fatal(err)
			}
			restoredPause = st.Written
		}
		if err := m.Destroy(ctx, info.Spec.ID); err != nil {
			b.Fatal(err)
		}
	}

	id := first.Spec.ID
	var pauses, resumes []time.Duration
	var written []int64
	for range 20 {
		_, st, err := m.Pause(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		pauses, written = append(pauses, st.Duration), append(written, st.Written)
		_, _, took, err := m.Resume(ctx, id, 0)
		if err != nil {
			b.Fatal(err)
		}
		resumes = append(resumes, took)
	}
	if err := m.Destroy(ctx, id); err != nil {
		b.Fatal(err)
	}
	cold := coldTm.Total
	b.ReportMetric(float64(cold)/float64(med(restored)), "create-speedup")
	b.ReportMetric(float64(cold)/float64(med(resumes)), "resume-speedup")
	b.Logf("cold create %v; restored create %v (%.1fx); to first exec: cold %v, restored %v (%.1fx); resume %v (%.1fx); pause %v",
		cold, med(restored), float64(cold)/float64(med(restored)), coldExec, med(restoredExec), float64(coldExec)/float64(med(restoredExec)),
		med(resumes), float64(cold)/float64(med(resumes)), med(pauses))
	pct := func(n int64) float64 { return 100 * float64(n) / float64(512<<20) }
	b.Logf("pause wrote: a restored sandbox's 1st pause %d bytes (%.1f%% of 512 MiB); a cold-booted one's 1st %d (%.1f%%: all boot dirtied), 2nd %d, 20th %d (%.2f%%)",
		restoredPause, pct(restoredPause), written[0], pct(written[0]), written[1], written[19], pct(written[19]))
}
