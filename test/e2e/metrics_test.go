package e2e

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/agent"
	"github.com/wrennhq/wrenn/internal/agent/vmtest"
	"github.com/wrennhq/wrenn/internal/envdclient"
	"github.com/wrennhq/wrenn/internal/metrics"
	"github.com/wrennhq/wrenn/internal/rootfs"
	"github.com/wrennhq/wrenn/internal/testutil"
)

// TestMetricsOfARealVM samples a real VM on a reflink (XFS) data dir, as a production
// host has it: the QEMU process's CPU while the guest burns one vCPU and after, its
// resident memory while the guest holds 200 MiB, and the disk's own bytes (none of
// the template's shared blocks) as the guest writes 100 MiB; each against the guest's
// own view from envd.
func TestMetricsOfARealVM(t *testing.T) {
	needVM(t)
	dir := testutil.MountXFS(t, 8<<30)
	// The kernels and the base template, not its warm snapshots: this test boots.
	if out, err := exec.Command("cp", "-a", "--sparse=always", filepath.Join(env.dir, "kernels"), dir).CombinedOutput(); err != nil {
		t.Fatalf("copy kernels: %v %s", err, out)
	}
	base := filepath.Join(dir, "images", "base")
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"template.json", "rootfs.ext4"} {
		if out, err := exec.Command("cp", "--sparse=always", filepath.Join(env.dir, "images", "base", f), base).CombinedOutput(); err != nil {
			t.Fatalf("copy %s: %v %s", f, err, out)
		}
	}
	m, _ := vmtest.NewManager(t, vmtest.Options{Dir: dir, FirstSlot: testSlots, LastSlot: testSlots + 999})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	info, _, _, err := m.Create(ctx, agent.Spec{Template: "base"})
	if err != nil {
		t.Fatal(err)
	}
	id := info.Spec.ID
	t.Cleanup(func() { _ = m.Destroy(context.Background(), id) })
	if method, _ := rootfs.Probe(dir); method != rootfs.Reflink {
		t.Fatalf("the XFS data dir clones by %s", method)
	}

	latest := func() metrics.Point {
		s, err := m.Metrics(id, 10*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Points) == 0 {
			return metrics.Point{}
		}
		return s.Points[len(s.Points)-1]
	}
	// waitPoint waits for a point after from that ok accepts and returns it.
	waitPoint := func(what string, from time.Time, within time.Duration, ok func(metrics.Point) bool) metrics.Point {
		t.Helper()
		var p metrics.Point
		testutil.WaitFor(t, within, what, func() bool {
			p = latest()
			return p.Time.After(from) && ok(p)
		})
		return p
	}
	// run starts a shell script in the guest and returns when it started; done is
	// closed when it has ended.
	run := func(script string) (started time.Time, done <-chan struct{}) {
		t.Helper()
		begun, ended := make(chan time.Time, 1), make(chan struct{})
		go func() {
			defer close(ended)
			if _, err := m.Exec(ctx, id, envdclient.Command{Cmd: "/bin/sh", Args: []string{"-c", script}}, 3*time.Minute,
				func(uint32) { begun <- time.Now() }, io.Discard, io.Discard); err != nil {
				t.Errorf("%s: %v", script, err)
			}
		}()
		select {
		case started = <-begun:
			return started, ended
		case <-ended:
			t.Fatalf("%s did not start", script)
		}
		return
	}

	p := waitPoint("a point with the guest's view", time.Time{}, 10*time.Second, func(p metrics.Point) bool { return p.HasGuest })
	disk := filepath.Join(dir, "sandboxes", id, rootfs.DiskName)
	var st syscall.Stat_t
	if err := syscall.Stat(disk, &st); err != nil {
		t.Fatal(err)
	}
	t.Logf("idle: cpu %.1f %%, mem %d MiB, disk own %d MiB (st_blocks %d MiB); guest cpu %.1f %%, mem used %d MiB of %d, disk used %d MiB",
		p.CPUPct, p.MemBytes>>20, p.DiskBytes>>20, st.Blocks*512>>20, p.Guest.CPUPct, p.Guest.MemUsed>>20, p.Guest.MemTotal>>20, p.Guest.DiskUsed>>20)
	if p.DiskBytes > st.Blocks*512/2 {
		t.Errorf("a fresh reflink clone owns %d of its %d allocated bytes: the template's shared blocks count", p.DiskBytes, st.Blocks*512)
	}
	if p.Guest.CPUCount != 1 || p.Guest.MemTotal < 400<<20 || p.Guest.MemTotal > 512<<20 {
		t.Errorf("guest view of a 1-vCPU 512 MiB VM: %+v", p.Guest)
	}

	// One vCPU burning: the VM's process near 100 % of its one vCPU within 2 s.
	burnFrom, done := run("timeout 8 sh -c 'while :; do :; done'")
	p = waitPoint("CPU near 100 % of one vCPU", burnFrom, 2*time.Second, func(p metrics.Point) bool { return p.CPUPct >= 80 })
	t.Logf("burning: cpu %.1f %% at +%v", p.CPUPct, p.Time.Sub(burnFrom).Round(time.Millisecond))
	waitPoint("the guest to see its CPU busy", burnFrom, 4*time.Second, func(p metrics.Point) bool { return p.HasGuest && p.Guest.CPUPct >= 80 })
	<-done
	burnEnd := time.Now()
	p = waitPoint("CPU near 0 after the burner", burnEnd, 5*time.Second, func(p metrics.Point) bool { return p.CPUPct <= 20 })
	t.Logf("after: cpu %.1f %% at +%v", p.CPUPct, p.Time.Sub(burnEnd).Round(time.Millisecond))

	// 200 MiB held in the guest: resident in the VM's process.
	before := latest()
	from, done := run(`python3 -c "import time; b = b'\x01' * (200 << 20); time.sleep(12)"`)
	p = waitPoint("the guest to hold 200 MiB more", from, 30*time.Second, func(p metrics.Point) bool {
		return p.HasGuest && p.Guest.MemUsed >= before.Guest.MemUsed+190<<20
	})
	t.Logf("holding 200 MiB: mem %d MiB (was %d), guest mem used %d MiB (was %d)", p.MemBytes>>20, before.MemBytes>>20, p.Guest.MemUsed>>20, before.Guest.MemUsed>>20)
	if p.MemBytes < 200<<20 || p.MemBytes < before.MemBytes+100<<20 {
		t.Errorf("the VM's resident memory is %d MiB (was %d) while the guest holds 200 MiB more", p.MemBytes>>20, before.MemBytes>>20)
	}
	<-done

	// 100 MiB written to the guest's disk: the disk's own bytes grow by as much (the
	// count is read every 5 s; the guest's sync has QEMU flush it to the host).
	before = latest()
	from, done = run("head -c 100M /dev/urandom > /home/user/big && sync")
	<-done
	p = waitPoint("the disk to own 100 MiB more", from, 30*time.Second, func(p metrics.Point) bool {
		return p.DiskBytes >= before.DiskBytes+95<<20
	})
	t.Logf("after writing 100 MiB: disk own %d MiB (was %d), guest disk used %d MiB (was %d)", p.DiskBytes>>20, before.DiskBytes>>20, p.Guest.DiskUsed>>20, before.Guest.DiskUsed>>20)
	if p.DiskBytes > before.DiskBytes+130<<20 {
		t.Errorf("the disk's own bytes grew by %d MiB for 100 MiB written", (p.DiskBytes-before.DiskBytes)>>20)
	}
	if p.HasGuest && p.Guest.DiskUsed < before.Guest.DiskUsed+95<<20 {
		t.Errorf("the guest's disk used grew by %d MiB for 100 MiB written", (p.Guest.DiskUsed-before.Guest.DiskUsed)>>20)
	}
	t.Logf("sampler: %+v", m.SamplerStats())
}
