package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/agent"
	"github.com/wrennhq/wrenn/internal/agent/vmtest"
	"github.com/wrennhq/wrenn/internal/envdclient"
	"github.com/wrennhq/wrenn/internal/image"
	"github.com/wrennhq/wrenn/internal/memfile"
	"github.com/wrennhq/wrenn/internal/uffd"
	"github.com/wrennhq/wrenn/internal/uffd/uffdtest"
	"github.com/wrennhq/wrenn/internal/vmm/vmmtest"
)

// BenchmarkUffdFaults: 4 KiB page faults served per second by the uffd handler from
// a memfile (one thread faulting each page of 256 MiB once, in a child process), page
// by page and with a fault-around of 16 pages, against the kernel's own anonymous-page
// faults over the same size in the same child.
func BenchmarkUffdFaults(b *testing.B) {
	if err := uffd.Available(); err != nil {
		b.Skipf("userfaultfd unavailable: %v", err)
	}
	const size = 256 << 20
	dir := b.TempDir()
	mem := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	for off := 0; off < size; off += memfile.BlockSize {
		if rng.IntN(4) != 0 { // a quarter of the pages stay zero (served as zero pages)
			for i := off; i < off+64; i++ {
				mem[i] = byte(rng.Uint32())
			}
		}
	}
	if _, err := memfile.Write(dir, bytes.NewReader(mem), size, memfile.WriteOptions{}); err != nil {
		b.Fatal(err)
	}
	r, err := memfile.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	for range b.N {
		for _, around := range []int{1, 16} {
			h, err := uffd.Listen(filepath.Join(b.TempDir(), "uffd.sock"), r, uffd.Options{FaultAround: around})
			if err != nil {
				b.Fatal(err)
			}
			c, err := uffdtest.Start(context.Background(), uffdtest.Spec{Socket: h.Path(), Size: size, Sequential: true})
			if err != nil {
				b.Fatal(err)
			}
			res, err := c.Wait()
			h.Stop()
			if err != nil {
				b.Fatal(err)
			}
			st := h.Stats()
			pages := float64(size / memfile.BlockSize)
			secs := res.Elapsed.Seconds()
			base := pages / res.Baseline.Seconds()
			if around == 1 {
				b.ReportMetric(float64(st.Faults)/secs, "faults/s")
				b.ReportMetric(base, "kernel-faults/s")
			} else {
				b.ReportMetric(pages/secs, "pages/s-around16")
			}
			fmt.Printf("uffd, fault-around %2d: %.0f faults/s (%.1f µs each), %.0f pages/s; the kernel's own anonymous faults: %.0f/s: %.2fx its time per page (%d faults for %.0f pages, %d zero)\n",
				around, float64(st.Faults)/secs, secs*1e6/float64(st.Faults), pages/secs, base, base/(pages/secs), st.Faults, pages, st.ZeroPages)
		}
	}
}

// BenchmarkMemfileMerge: merging a 10-generation chain of a 1 GiB memory (a full
// generation with 3/4 of the blocks stored, then 9 diffs each rewriting 10% of the
// blocks) into one full generation, against copying a 1 GiB file in the same run.
func BenchmarkMemfileMerge(b *testing.B) {
	const size = 1 << 30
	base := b.TempDir()
	mem := make([]byte, size)
	rng := rand.New(rand.NewPCG(3, 4))
	fill := func(off int) {
		p := mem[off : off+memfile.BlockSize]
		for i := 0; i < len(p); i += 8 {
			p[i] = byte(rng.Uint32()) | 1
		}
	}
	for off := 0; off < size; off += memfile.BlockSize {
		if rng.IntN(4) != 0 {
			fill(off)
		}
	}
	parent := ""
	for gen := range memfile.MaxGenerations {
		dir := filepath.Join(base, fmt.Sprint(gen))
		os.Mkdir(dir, 0o700)
		var dirty []memfile.Range
		if gen > 0 {
			for off := 0; off < size; off += memfile.BlockSize {
				if rng.IntN(10) == 0 {
					fill(off)
					dirty = append(dirty, memfile.Range{Off: int64(off), Len: memfile.BlockSize})
				}
			}
		}
		if _, err := memfile.Write(dir, bytes.NewReader(mem), size, memfile.WriteOptions{Parent: parent, Dirty: dirty}); err != nil {
			b.Fatal(err)
		}
		parent = dir
	}
	h, err := memfile.ReadHeader(parent)
	if err != nil || len(h.Gens) != memfile.MaxGenerations {
		b.Fatalf("chain has %v generations: %v", h, err)
	}
	raw := filepath.Join(base, "raw")
	if err := os.WriteFile(raw, mem, 0o600); err != nil {
		b.Fatal(err)
	}
	for i := range b.N {
		out := filepath.Join(base, fmt.Sprint("merged", i))
		os.Mkdir(out, 0o700)
		start := time.Now()
		res, err := memfile.Merge(parent, out)
		took := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		cstart := time.Now()
		if err := copyAndSync(raw, filepath.Join(base, fmt.Sprint("copy", i))); err != nil {
			b.Fatal(err)
		}
		ctook := time.Since(cstart)
		b.ReportMetric(took.Seconds(), "merge-s")
		fmt.Printf("memfile merge: 10 generations of 1 GiB (%d extents) into one (%d MiB stored) in %v; copying a 1 GiB file took %v: %.2fx\n",
			len(h.Extents), res.Written>>20, took.Round(time.Millisecond), ctook.Round(time.Millisecond), took.Seconds()/ctook.Seconds())
	}
}

func copyAndSync(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		return err
	}
	return out.Sync()
}

// BenchmarkIdleGuestTouchedAtResume: how much of an idle guest's memory a resume
// touches — what a lazy restore must fetch — against its RAM and against the memory
// it had in use: first the resume itself (restore, vCPUs running, the agent's /init
// and one exec), then 5 more idle seconds. Measured with QEMU, whose guest RAM is a
// file mapping: the mapping's Referenced pages in /proc/PID/smaps (pages the VMM's
// guest accessed, fault-around not counted), reset with clear_refs in between.
func BenchmarkIdleGuestTouchedAtResume(b *testing.B) {
	dir := vmBenchDir(b)
	envdPath(b)
	if _, err := image.Load(dir, "base"); err != nil {
		b.Skipf("no base template in %s: %v", dir, err)
	}
	m, _ := vmtest.NewManager(b, vmtest.Options{Dir: dir, FirstSlot: 62000, LastSlot: 62099})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for range b.N {
		info, _, _, err := m.Create(ctx, agent.Spec{Template: "base", MemoryMiB: 512})
		if err != nil {
			b.Fatal(err)
		}
		id := info.Spec.ID
		sbDir := filepath.Join(dir, "sandboxes", id)
		exec := func() {
			if _, err := m.Exec(ctx, id, envdclient.Command{Cmd: "/bin/true"}, time.Minute, nil, io.Discard, io.Discard); err != nil {
				b.Fatal(err)
			}
		}
		exec()
		time.Sleep(5 * time.Second)
		if _, _, err := m.Pause(ctx, id); err != nil {
			b.Fatal(err)
		}
		used, err := allocatedBytes(filepath.Join(sbDir, "memory"))
		if err != nil {
			b.Fatal(err)
		}
		if _, _, _, err := m.Resume(ctx, id, 0); err != nil {
			b.Fatal(err)
		}
		exec()
		pids := vmmtest.ProcessesIn(sbDir)
		if len(pids) != 1 {
			b.Fatalf("vmm processes of %s: %v", id, pids)
		}
		atResume, err := referencedBytes(pids[0], "/memory")
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pids[0]), []byte("1"), 0); err != nil {
			b.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		idle, err := referencedBytes(pids[0], "/memory")
		if err != nil {
			b.Fatal(err)
		}
		m.Destroy(ctx, id)
		const ram = 512 << 20
		b.ReportMetric(float64(atResume)/ram*100, "%touched-at-resume")
		mib := func(n int64) float64 { return float64(n) / (1 << 20) }
		fmt.Printf("idle guest: the resume touched %.1f MiB of its 512 MiB RAM (%.1f%%) and of the %.1f MiB it had in use (%.1f%%); the next 5 idle seconds %.1f MiB\n",
			mib(atResume), float64(atResume)/ram*100, mib(used), float64(atResume)/float64(used)*100, mib(idle))
	}
}

// allocatedBytes is how much of a sparse file holds data: the guest memory ever used.
func allocatedBytes(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	ranges, err := memfile.DataRanges(f)
	var n int64
	for _, r := range ranges {
		n += r.Len
	}
	return n, err
}

// referencedBytes sums the Referenced field of pid's mappings of files whose path
// ends with suffix.
func referencedBytes(pid int, suffix string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return 0, err
	}
	var n int64
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-"):
			in = len(f) >= 6 && strings.HasSuffix(f[5], suffix)
		case in && len(f) == 3 && f[0] == "Referenced:":
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, err
			}
			n += kb << 10
		}
	}
	return n, nil
}
