// Package uffdtest runs the VMM's side of a lazy restore in a separate process, for
// tests and benchmarks of the uffd handler with real page faults: the child registers
// anonymous memory with a userfaultfd, sends Firecracker's handshake, touches the
// memory from several threads and reports what it read. A separate process, because
// a Go program faulting on memory that its own goroutines serve could deadlock in a
// stop-the-world pause.
//
// A test binary that uses it must call Main from TestMain first.
package uffdtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wrennhq/wrenn/internal/uffd"
)

const envSpec = "WRENN_UFFD_CHILD"

// Spec says what the child does.
type Spec struct {
	Socket string
	Size   int // bytes of registered memory
	// Threads read every page, each starting at a different page, so many faults
	// for one page race (EEXIST on all but the first).
	Threads int
	// RemovePages, when set, is a [first, end) page range the child madvises
	// away (DONTNEED → REMOVE events) after the first read, then reads again.
	RemovePages [2]int
	// Sequential makes one thread touch each page once, in order, timed: the fault
	// rate. The child first times the same over plain anonymous memory (the kernel
	// alone), as the baseline.
	Sequential bool
}

// Result is what the child read: a short hash of every page, and again after the
// remove when one was asked for.
type Result struct {
	Pages, PagesAfter []string
	Elapsed, Baseline time.Duration
}

// PageHash is the short hash the child reports for a page's contents.
func PageHash(p []byte) string {
	s := sha256.Sum256(p)
	return hex.EncodeToString(s[:8])
}

// Main runs the child when this process is one, and exits; otherwise it returns.
func Main() {
	raw, ok := os.LookupEnv(envSpec)
	if !ok {
		return
	}
	var s Spec
	res, err := func() (*Result, error) {
		if err := json.Unmarshal([]byte(raw), &s); err != nil {
			return nil, err
		}
		return child(s)
	}()
	if err != nil {
		fmt.Fprintln(os.Stderr, "uffd child:", err)
		os.Exit(2)
	}
	json.NewEncoder(os.Stdout).Encode(res)
	os.Exit(0)
}

func child(s Spec) (*Result, error) {
	res := &Result{}
	if s.Sequential {
		plain, err := unix.Mmap(-1, 0, s.Size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return nil, err
		}
		res.Baseline = touchAll(plain)
		unix.Munmap(plain)
	}
	mem, err := uffd.NewRegisteredMemory(s.Size)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: s.Socket, Net: "unix"})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if err := uffd.SendHandshake(conn, mem.Regions(), mem.FD); err != nil {
		return nil, err
	}
	if s.Sequential {
		res.Elapsed = touchAll(mem.Mem)
	} else {
		readConcurrently(mem.Mem, max(1, s.Threads))
	}
	res.Pages = hashes(mem.Mem)
	if r := s.RemovePages; r[1] > r[0] {
		if err := unix.Madvise(mem.Mem[r[0]*uffd.BlockSize:r[1]*uffd.BlockSize], unix.MADV_DONTNEED); err != nil {
			return nil, fmt.Errorf("madvise: %w", err)
		}
		readConcurrently(mem.Mem, max(1, s.Threads))
		res.PagesAfter = hashes(mem.Mem)
	}
	return res, nil
}

// sinks keep the reads below from being optimised away.
var sinks [64]byte

// touchAll reads one byte of every page in order and returns how long it took.
func touchAll(mem []byte) time.Duration {
	start := time.Now()
	var sink byte
	for off := 0; off < len(mem); off += uffd.BlockSize {
		sink += mem[off]
	}
	sinks[0] = sink
	return time.Since(start)
}

func readConcurrently(mem []byte, threads int) {
	pages := len(mem) / uffd.BlockSize
	var wg sync.WaitGroup
	for t := range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var sink byte
			for i := range pages {
				p := (i + t*pages/threads) % pages
				sink += mem[p*uffd.BlockSize+(i%uffd.BlockSize)]
			}
			sinks[t%len(sinks)] = sink
		}()
	}
	wg.Wait()
}

func hashes(mem []byte) []string {
	out := make([]string, 0, len(mem)/uffd.BlockSize)
	for off := 0; off < len(mem); off += uffd.BlockSize {
		out = append(out, PageHash(mem[off:off+uffd.BlockSize]))
	}
	return out
}

// Child is a running child process.
type Child struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
}

// Start runs this test binary again as a child with spec. The handler must already
// listen on spec.Socket.
func Start(ctx context.Context, spec Spec) (*Child, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c := &Child{cmd: exec.CommandContext(ctx, exe, "-test.run=^$")}
	c.cmd.Env = append(os.Environ(), envSpec+"="+string(b))
	c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start uffd child: %w", err)
	}
	return c, nil
}

// PID of the child process.
func (c *Child) PID() int { return c.cmd.Process.Pid }

// Wait waits for the child and decodes its result.
func (c *Child) Wait() (*Result, error) {
	if err := c.cmd.Wait(); err != nil {
		return nil, fmt.Errorf("uffd child: %w: %s", err, c.stderr.String())
	}
	var res Result
	if err := json.Unmarshal(c.stdout.Bytes(), &res); err != nil {
		return nil, errors.Join(fmt.Errorf("uffd child output: %w", err), errors.New(c.stderr.String()))
	}
	return &res, nil
}
