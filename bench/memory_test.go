package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/wrennhq/wrenn/internal/agent"
	"github.com/wrennhq/wrenn/internal/agent/vmtest"
	"github.com/wrennhq/wrenn/internal/envdclient"
	"github.com/wrennhq/wrenn/internal/image"
	"github.com/wrennhq/wrenn/internal/memfile"
	"github.com/wrennhq/wrenn/internal/uffd"
	"github.com/wrennhq/wrenn/internal/uffd/uffdtest"
	"github.com/wrennhq/wrenn/internal/vmm"
)

// BenchmarkUffdFaults: 4 KiB page faults served per second by the uffd handler from
// a memfile (one thread faulting each page of 256 MiB once, in a child process), page
// by page and with a fault-around of 16 pages, against the kernel's own anonymous-page
// faults over the same size in the same child.
func BenchmarkUffdFaults(b *testing.B) {
	if m, err := uffd.NewRegisteredMemory(4096); err != nil {
		b.Skipf("userfaultfd unavailable: %v", err)
	} else {
		m.Close()
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

// BenchmarkIdleGuestTouchedAtResume: how much of an idle guest's memory a resume and
// the following 5 idle seconds touch (what a lazy restore must fetch), against its
// RAM and against the memory it had in use. Measured with QEMU, whose guest RAM is
// the snapshot's file mapped in place: the file's page cache is dropped before the
// resume, and mincore afterwards counts what the guest brought back in. Kernel
// readahead on those faults makes this an upper bound.
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
		if _, err := m.Exec(ctx, id, envdclient.Command{Cmd: "/bin/true"}, time.Minute, nil, io.Discard, io.Discard); err != nil {
			b.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		if _, _, err := m.Pause(ctx, id); err != nil {
			b.Fatal(err)
		}
		snap := filepath.Join(dir, "sandboxes", id, "snapshot")
		meta, err := vmm.ReadSnapshotMeta(snap)
		if err != nil {
			b.Fatal(err)
		}
		var memPath string
		for _, f := range meta.Files {
			if f.Role == vmm.FileMemory {
				memPath = filepath.Join(snap, f.Name)
			}
		}
		used, err := dropCache(memPath)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, _, err := m.Resume(ctx, id, 0); err != nil {
			b.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		// The resumed VM maps the same inode; the snapshot's link is gone, the VM's
		// own name for it is memory in the sandbox's dir.
		touched, err := residentBytes(filepath.Join(dir, "sandboxes", id, "memory"))
		if err != nil {
			b.Fatal(err)
		}
		m.Destroy(ctx, id)
		total := int64(512) << 20
		b.ReportMetric(float64(touched)/float64(total)*100, "%touched")
		fmt.Printf("idle guest resume: touched %.1f MiB of 512 MiB RAM (%.1f%%), of %.1f MiB it had in use (%.1f%%)\n",
			float64(touched)/(1<<20), float64(touched)/float64(total)*100, float64(used)/(1<<20), float64(touched)/float64(used)*100)
	}
}

// dropCache writes back and evicts a file's page cache, and returns its allocated
// bytes (the guest memory ever used).
func dropCache(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return 0, err
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return 0, err
	}
	ranges, err := memfile.DataRanges(f)
	var n int64
	for _, r := range ranges {
		n += r.Len
	}
	return n, err
}

// residentBytes counts a file's pages in the page cache (mincore over a mapping that
// is never touched).
func residentBytes(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return 0, err
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+4095)/4096)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		return 0, fmt.Errorf("mincore %s: %w", path, errno)
	}
	var n int64
	for _, v := range vec {
		if v&1 != 0 {
			n += 4096
		}
	}
	return n, nil
}
