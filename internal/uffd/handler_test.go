package uffd_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/memfile"
	"github.com/wrennhq/wrenn/internal/uffd"
	"github.com/wrennhq/wrenn/internal/uffd/uffdtest"
)

func TestMain(m *testing.M) {
	uffdtest.Main()
	os.Exit(m.Run())
}

// requireUserfaultfd skips, saying why, where the kernel refuses userfaultfd to this
// process (not root and vm.unprivileged_userfaultfd=0).
func requireUserfaultfd(t testing.TB) {
	if err := uffd.Available(); err != nil {
		t.Skipf("userfaultfd unavailable here: %v", err)
	}
}

// chain writes a memory image as a full generation and two diffs (so blocks come
// from three files, and many are elided zeros) and returns the last snapshot's
// directory and the memory it holds.
func chain(t testing.TB, pages int) (string, []byte) {
	rng := rand.New(rand.NewPCG(uint64(pages), 1))
	mem := make([]byte, pages*memfile.BlockSize)
	dir := t.TempDir()
	var parent string
	for gen := range 3 {
		var dirty []memfile.Range
		for p := range pages {
			if rng.IntN(4) != 0 || (gen > 0 && rng.IntN(3) != 0) {
				continue // zero in the full, unchanged in a diff
			}
			page := mem[p*memfile.BlockSize : (p+1)*memfile.BlockSize]
			for i := range page {
				page[i] = byte(rng.Uint32())
			}
			dirty = append(dirty, memfile.Range{Off: int64(p * memfile.BlockSize), Len: memfile.BlockSize})
		}
		d := filepath.Join(dir, fmt.Sprint(gen))
		os.Mkdir(d, 0o700)
		if _, err := memfile.Write(d, bytes.NewReader(mem), int64(len(mem)), memfile.WriteOptions{Parent: parent, Dirty: dirty}); err != nil {
			t.Fatal(err)
		}
		parent = d
	}
	h, err := memfile.ReadHeader(parent)
	if err != nil || len(h.Gens) != 3 {
		t.Fatalf("want 3 generations: %v %v", h, err)
	}
	return parent, mem
}

func serve(t testing.TB, src uffd.Source, opts uffd.Options) *uffd.Handler {
	sock := filepath.Join(t.TempDir(), "uffd.sock")
	h, err := uffd.Listen(sock, src, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Stop() })
	return h
}

func openMem(t testing.TB, dir string) *memfile.Reader {
	r, err := memfile.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func wantHashes(mem []byte) []string {
	var out []string
	for off := 0; off < len(mem); off += memfile.BlockSize {
		out = append(out, uffdtest.PageHash(mem[off:off+memfile.BlockSize]))
	}
	return out
}

func comparePages(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d pages, want %d", what, len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%s: page %d differs (got %s, want %s)", what, i, got[i], want[i])
		}
	}
}

// TestServesMultiGenerationMemory: a child process faults on every page of a
// registered region from 8 threads at once; the handler serves it from a
// three-generation memory file, and every page reads back byte-identical (hash per
// page), zero pages included.
func TestServesMultiGenerationMemory(t *testing.T) {
	requireUserfaultfd(t)
	for _, around := range []int{0, 16} {
		t.Run(fmt.Sprint("fault-around-", around), func(t *testing.T) { testServes(t, around) })
	}
}

func testServes(t *testing.T, around int) {
	dir, mem := chain(t, 2048) // 8 MiB
	h := serve(t, openMem(t, dir), uffd.Options{FaultAround: around})
	c, err := uffdtest.Start(t.Context(), uffdtest.Spec{Socket: sockOf(h, t), Size: len(mem), Threads: 8})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Wait()
	if err != nil {
		t.Fatal(err)
	}
	comparePages(t, "served memory", res.Pages, wantHashes(mem))
	st := h.Stats()
	zeros := 0
	for off := 0; off < len(mem); off += memfile.BlockSize {
		if bytes.Count(mem[off:off+memfile.BlockSize], []byte{0}) == memfile.BlockSize {
			zeros++
		}
	}
	// Every page was installed exactly once, each zero page as a zero page. Without
	// fault-around every page faulted (threads racing for one page each fault; all
	// but the first find it present); with it, far fewer faults were needed.
	pages := int64(len(mem) / memfile.BlockSize)
	if st.Pages != pages || st.ZeroPages != int64(zeros) {
		t.Fatalf("stats %+v, want %d pages and %d zero pages", st, pages, zeros)
	}
	if (around == 0 && st.Faults < pages) || (around > 1 && st.Faults >= pages) {
		t.Fatalf("stats %+v with fault-around %d", st, around)
	}
	t.Logf("%d faults for %d pages", st.Faults, pages)
	if n := len(h.Touched()); around == 0 && n != int(pages) {
		t.Fatalf("touched %d pages", n)
	}
	// The child exited: its end of the socket closed, so the handler ends by itself.
	select {
	case <-h.Done():
		if h.Err() != nil {
			t.Fatal(h.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler still serving after the VMM went away")
	}
}

// TestRemovedRangeFaultsAsZero: after the child madvises a range away (balloon
// inflation in a VM), the REMOVE event makes the range read as zeros, while every
// other page keeps its snapshot contents.
func TestRemovedRangeFaultsAsZero(t *testing.T) {
	requireUserfaultfd(t)
	for _, around := range []int{0, 16} {
		t.Run(fmt.Sprint("fault-around-", around), func(t *testing.T) { testRemoved(t, around) })
	}
}

func testRemoved(t *testing.T, around int) {
	dir, mem := chain(t, 512)
	h := serve(t, openMem(t, dir), uffd.Options{FaultAround: around})
	rm := [2]int{100, 300}
	c, err := uffdtest.Start(t.Context(), uffdtest.Spec{Socket: sockOf(h, t), Size: len(mem), Threads: 4, RemovePages: rm})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Wait()
	if err != nil {
		t.Fatal(err)
	}
	want := wantHashes(mem)
	comparePages(t, "before remove", res.Pages, want)
	zero := uffdtest.PageHash(make([]byte, memfile.BlockSize))
	for p := rm[0]; p < rm[1]; p++ {
		want[p] = zero
	}
	comparePages(t, "after remove", res.PagesAfter, want)
}

// TestPrefetch: pages listed for prefetch are copied in without faults.
func TestPrefetch(t *testing.T) {
	requireUserfaultfd(t)
	dir, mem := chain(t, 1024)
	var list []int64
	for off := 0; off < len(mem)/2; off += memfile.BlockSize {
		list = append(list, int64(off))
	}
	h := serve(t, openMem(t, dir), uffd.Options{Prefetch: list})
	c, err := uffdtest.Start(t.Context(), uffdtest.Spec{Socket: sockOf(h, t), Size: len(mem), Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Wait()
	if err != nil {
		t.Fatal(err)
	}
	comparePages(t, "prefetched memory", res.Pages, wantHashes(mem))
	st := h.Stats()
	if st.Prefetched == 0 || st.Faults+st.Prefetched < int64(len(mem)/memfile.BlockSize) {
		t.Fatalf("stats %+v", st)
	}
	t.Logf("%d prefetched, %d faulted", st.Prefetched, st.Faults)
}

// slowSource serves every block after a delay, so that faults queue up.
type slowSource struct {
	uffd.Source
	delay  time.Duration
	served chan struct{}
}

func (s slowSource) ReadAt(p []byte, off int64) (int, error) {
	select {
	case s.served <- struct{}{}:
	default:
	}
	time.Sleep(s.delay)
	return s.Source.ReadAt(p, off)
}

// TestStopWithPendingFaults: stopping the handler while the child's threads wait on
// faults returns promptly and releases them; nothing hangs.
func TestStopWithPendingFaults(t *testing.T) {
	requireUserfaultfd(t)
	dir, mem := chain(t, 256)
	src := slowSource{Source: openMem(t, dir), delay: 100 * time.Millisecond, served: make(chan struct{}, 1)}
	h := serve(t, src, uffd.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c, err := uffdtest.Start(ctx, uffdtest.Spec{Socket: sockOf(h, t), Size: len(mem), Threads: 8})
	if err != nil {
		t.Fatal(err)
	}
	<-src.served // faults are being served, slowly; most are pending
	start := time.Now()
	h.Stop()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Stop took %v", d)
	}
	if _, err := c.Wait(); err != nil {
		t.Fatalf("child did not finish after Stop: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("child hung after Stop")
	}
	if _, err := os.Stat(sockOf(h, t)); !os.IsNotExist(err) {
		t.Fatalf("socket left after Stop: %v", err)
	}
}

// TestHandshakeRefusesRegionsBeyondTheSnapshot: a VMM asking for more memory than the
// snapshot holds is refused at the handshake, not served garbage, and is killed:
// its faults could never be served.
func TestHandshakeRefusesRegionsBeyondTheSnapshot(t *testing.T) {
	requireUserfaultfd(t)
	dir, mem := chain(t, 64)
	failed := make(chan int, 1)
	h := serve(t, openMem(t, dir), uffd.Options{OnFailure: func(pid int, _ error) { failed <- pid }})
	c, err := uffdtest.Start(t.Context(), uffdtest.Spec{Socket: sockOf(h, t), Size: 2 * len(mem), Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	<-h.Done()
	if h.Err() == nil {
		t.Fatal("oversized regions accepted")
	}
	t.Log(h.Err())
	if pid := <-failed; pid != c.PID() {
		t.Fatalf("OnFailure named pid %d, the child is %d", pid, c.PID())
	}
	if _, err := c.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("the refused vmm was not killed: %v", err)
	}
}

func TestStopBeforeHandshake(t *testing.T) {
	dir, _ := chain(t, 64)
	h := serve(t, openMem(t, dir), uffd.Options{})
	done := make(chan struct{})
	go func() { h.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop before any handshake hangs")
	}
	if err := h.WaitReady(t.Context()); err == nil {
		t.Fatal("WaitReady after Stop succeeded")
	}
	if h.Err() != nil {
		t.Fatalf("Err after a Stop: %v", h.Err())
	}
}

func sockOf(h *uffd.Handler, _ testing.TB) string { return h.Path() }
