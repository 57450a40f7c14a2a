// Package uffd serves a VMM's guest memory lazily through userfaultfd, the way
// Firecracker's Uffd memory backend expects: the handler listens on a unix socket,
// receives the VMM's region list and userfaultfd in one handshake message, and answers
// every missing-page fault by copying the page from a snapshot's memory (UFFDIO_COPY)
// or mapping a zero page for blocks the snapshot does not store (UFFDIO_ZEROPAGE).
// Ranges the VMM gives back (balloon inflation: REMOVE events) read as zeros from then
// on. It can prefetch the pages a guest touched at its previous resume in the
// background, and it records the pages this guest touches for the next time.
//
// The memory comes from a Source, normally a memfile.Reader; nothing here knows which
// VMM sits on the other side of the socket.
package uffd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BlockSize is the granularity of a Source: the 4 KiB base page.
const BlockSize = 4096

// Source is the snapshot memory a handler serves, addressed like the VMM's memory
// file (region offsets point into it). memfile.Reader implements it.
type Source interface {
	// Extent reports how the memory continues from block blk: how many blocks (at
	// least 1, at most max) are stored contiguously or are all zeros, and which.
	Extent(blk uint64, max int) (n int, zero bool)
	// ReadAt reads stored memory. It should not fault (pread, not a mapping): a
	// fault in the handler doubles the cost of serving one.
	ReadAt(p []byte, off int64) (int, error)
	Size() int64
}

// Options tune a Handler.
type Options struct {
	Logger *slog.Logger
	// Prefetch lists memory-file offsets (as Touched returned them for an earlier
	// run of this snapshot's guest) to copy in, in this order, in the background
	// once the handshake is done.
	Prefetch []int64
	// FaultAround, when above 1, serves up to this many 4 KiB pages per fault: the
	// faulting page and those after it that the source stores contiguously (or
	// that are all zeros). Fewer faults for a guest that reads memory in order, at
	// the price of installing pages it may never touch. 0 or 1: the page alone.
	FaultAround int
	// HandshakeTimeout bounds the wait for a VMM to connect (0 = no bound).
	HandshakeTimeout time.Duration
	// OnFailure is called once if serving fails after the handshake, with the
	// VMM's pid (from the socket's peer credentials) — a VMM whose faults nobody
	// serves hangs forever, so the caller should kill it.
	OnFailure func(peerPID int, err error)
}

// Handler serves one VMM's page faults. Make it with Listen before asking the VMM to
// load; it is ready to serve from the moment the handshake arrives.
type Handler struct {
	path string
	ln   *net.UnixListener
	src  Source
	opts Options
	log  *slog.Logger

	ready chan struct{} // closed after the handshake
	done  chan struct{} // closed when serving has ended
	err   error         // why, once done

	stopFD  int         // eventfd: Stop wakes the serve loop through it
	stopped atomic.Bool // ends the serve loop's spinning
	// stopMu guards stopping, released and conn between Stop and the handler's
	// own goroutine (which closes stopFD when it ends).
	stopMu   sync.Mutex
	stopping bool
	released bool
	failed   bool // serving failed: the VMM was killed and its ranges stay registered
	peerFD   int  // pidfd of the VMM (-1 unknown), to kill it if serving fails

	// Set by the handshake, before ready is closed.
	conn    *net.UnixConn
	fd      int
	regions []Region
	peerPID atomic.Int64

	mu      sync.Mutex
	removed []span // sorted, disjoint host address ranges that read as zero
	touched []int64
	seen    map[int64]struct{}

	faults, pages, zeroes, prefetched atomic.Int64
	// zeroPages: UFFDIO_ZEROPAGE serves zero pages (the region is not hugetlbfs).
	zeroPages bool
	// buf holds what the serve loop copies in: a fault-around run or a huge page.
	buf []byte
}

type span struct{ start, end uint64 }

// Listen binds a unix socket at path (which must not exist) and starts waiting for a
// VMM's handshake in the background.
func Listen(path string, src Source, opts Options) (*Handler, error) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("uffd handler: listen: %w", err)
	}
	return Serve(ln, src, opts)
}

// Serve starts waiting for a VMM's handshake on ln, which the handler owns from now
// on (it closes it and removes its socket file when it stops).
func Serve(ln *net.UnixListener, src Source, opts Options) (*Handler, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	path := ln.Addr().String()
	stopFD, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("uffd handler: eventfd: %w", err)
	}
	h := &Handler{path: path, ln: ln, src: src, opts: opts, log: opts.Logger, fd: -1, peerFD: -1,
		ready: make(chan struct{}), done: make(chan struct{}), stopFD: stopFD, seen: map[int64]struct{}{}}
	go h.run()
	return h, nil
}

// Ready is closed once the VMM's handshake has been received and faults are served.
func (h *Handler) Ready() <-chan struct{} { return h.ready }

// Done is closed when the handler has stopped serving: Stop, the VMM closing its end
// of the socket (it exited), or a failure.
func (h *Handler) Done() <-chan struct{} { return h.done }

// Err says why serving ended, after Done: nil for Stop or the VMM going away. After a
// failure the VMM has been killed.
func (h *Handler) Err() error { return h.err }

// Path is the socket the handler listens on: the VMM's backend_path.
func (h *Handler) Path() string { return h.path }

// PeerPID is the VMM's pid, known after Ready.
func (h *Handler) PeerPID() int { return int(h.peerPID.Load()) }

// Stats are counters of what the handler did: faults served, 4 KiB pages those
// faults installed (more than the faults with fault-around), how many of those were
// zero pages, and pages prefetched.
type Stats struct {
	Faults, Pages, ZeroPages, Prefetched int64
}

func (h *Handler) Stats() Stats {
	return Stats{Faults: h.faults.Load(), Pages: h.pages.Load(), ZeroPages: h.zeroes.Load(), Prefetched: h.prefetched.Load()}
}

// Touched lists the memory-file offsets of the pages the guest faulted on, in the
// order it first touched them: the prefetch list for the next restore.
func (h *Handler) Touched() []int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]int64(nil), h.touched...)
}

// WaitReady waits for the handshake, the handler's end, or ctx.
func (h *Handler) WaitReady(ctx context.Context) error {
	select {
	case <-h.ready:
		return nil
	case <-h.done:
		if h.err != nil {
			return h.err
		}
		return errors.New("uffd handler stopped before the handshake")
	case <-ctx.Done():
		return fmt.Errorf("uffd handler: waiting for the handshake: %w", ctx.Err())
	}
}

// Stop ends serving and releases everything: the socket file, the listener, the
// connection and the userfaultfd. Threads of the VMM still waiting on a fault are
// released rather than left hanging: their range is unregistered, so the VMM sees
// zero pages for everything not served yet — its guest's memory is then corrupt.
// Stop a handler only when its VMM is stopping or has stopped; Abort otherwise. Stop is safe
// to call more than once and from any goroutine.
func (h *Handler) Stop() error {
	h.stopMu.Lock()
	if !h.stopping {
		h.stopping = true
		h.stopped.Store(true)
		if !h.released {
			var one [8]byte
			*(*uint64)(unsafe.Pointer(&one[0])) = 1
			unix.Write(h.stopFD, one[:])
		}
		h.ln.Close() // ends an Accept that is still waiting
		select {
		case <-h.ready:
		default:
			if h.conn != nil {
				h.conn.Close() // ends a handshake read that is still waiting
			}
		}
	}
	h.stopMu.Unlock()
	<-h.done
	return nil
}

// Abort ends serving a VMM that is still running: the VMM is killed and its ranges
// stay registered (never handed zero pages in place of its memory). Use it, not
// Stop, when the server must go while its VMM may still run.
func (h *Handler) Abort(reason error) {
	select {
	case <-h.ready:
		if h.peerFD >= 0 {
			h.stopMu.Lock()
			h.failed = true
			h.stopMu.Unlock()
			unix.PidfdSendSignal(h.peerFD, unix.SIGKILL, nil, 0)
			h.log.Warn("uffd handler aborted; its vmm was killed", "reason", reason, "vmm_pid", h.PeerPID())
		}
	default:
	}
	h.Stop()
}

func (h *Handler) isStopping() bool {
	h.stopMu.Lock()
	defer h.stopMu.Unlock()
	return h.stopping
}

func (h *Handler) run() {
	defer close(h.done)
	defer h.release()
	if err := h.handshake(); err != nil {
		if !h.isStopping() {
			h.fail(err)
		}
		return
	}
	close(h.ready)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if len(h.opts.Prefetch) > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); h.prefetch(ctx) }()
	}
	err := h.serve()
	cancel()
	wg.Wait()
	if err != nil {
		h.fail(fmt.Errorf("uffd handler: %w", err))
	}
}

// fail ends a handler that cannot serve its VMM: a VMM whose faults nobody serves
// hangs forever, and unregistering its memory would hand its guest zero pages in
// place of its own, so the VMM is killed (its blocked threads are killable) and its
// ranges stay as they are.
func (h *Handler) fail(err error) {
	h.err = err
	h.stopMu.Lock()
	h.failed = true
	h.stopMu.Unlock()
	h.log.Error("uffd handler failed; killing its vmm", "err", err, "vmm_pid", h.PeerPID())
	if h.peerFD >= 0 {
		if kerr := unix.PidfdSendSignal(h.peerFD, unix.SIGKILL, nil, 0); kerr != nil && !errors.Is(kerr, unix.ESRCH) {
			h.log.Error("kill the vmm of a failed uffd handler", "err", kerr, "vmm_pid", h.PeerPID())
		}
	}
	if h.opts.OnFailure != nil {
		h.opts.OnFailure(h.PeerPID(), err)
	}
}

// release closes every descriptor and, unless serving failed, unregisters the
// regions first, so that no VMM thread can wait forever on a fault nobody serves.
func (h *Handler) release() {
	h.stopMu.Lock()
	defer h.stopMu.Unlock()
	if h.fd >= 0 {
		if !h.failed {
			for _, r := range h.regions {
				rg := uffdioRange{Start: r.BaseHostVirtAddr, Len: r.Size}
				ioctl(h.fd, ioctlUnregister, unsafe.Pointer(&rg))
			}
		}
		unix.Close(h.fd)
	}
	if h.conn != nil {
		h.conn.Close()
	}
	if h.peerFD >= 0 {
		unix.Close(h.peerFD)
	}
	h.ln.Close()
	os.Remove(h.path)
	unix.Close(h.stopFD)
	h.released = true
}

// handshake accepts the VMM's connection and reads its one message: the regions as
// JSON and the userfaultfd as SCM_RIGHTS. A read may bring the payload without the
// descriptor; reading goes on until both are in.
func (h *Handler) handshake() error {
	if h.opts.HandshakeTimeout > 0 {
		h.ln.SetDeadline(time.Now().Add(h.opts.HandshakeTimeout))
	}
	conn, err := h.ln.AcceptUnix()
	if err != nil {
		return fmt.Errorf("uffd handler: waiting for the vmm to connect: %w", err)
	}
	h.stopMu.Lock()
	h.conn = conn
	stopping := h.stopping
	h.stopMu.Unlock()
	if stopping {
		return errors.New("uffd handler: stopped")
	}
	// The pidfd pins the VMM's identity, so a kill after a failure cannot hit a
	// process that reused its pid.
	if cred, err := peerCred(conn); err == nil {
		h.peerPID.Store(int64(cred.Pid))
		if fd, err := unix.PidfdOpen(int(cred.Pid), 0); err == nil {
			h.peerFD = fd
		}
	}
	var payload []byte
	buf, oob := make([]byte, 64<<10), make([]byte, unix.CmsgSpace(4*4))
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for h.fd < 0 || json.Unmarshal(payload, &h.regions) != nil {
		n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return fmt.Errorf("uffd handler: handshake: %w (got %d bytes)", err, len(payload))
		}
		payload = append(payload, buf[:n]...)
		if err := h.takeFD(oob[:oobn]); err != nil {
			return err
		}
		if n == 0 && oobn == 0 {
			return errors.New("uffd handler: handshake: connection closed")
		}
	}
	conn.SetReadDeadline(time.Time{})
	return h.checkRegions()
}

func (h *Handler) takeFD(oob []byte) error {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return fmt.Errorf("uffd handler: handshake control message: %w", err)
	}
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if h.fd < 0 {
				h.fd = fd
			} else {
				unix.Close(fd)
			}
		}
	}
	return nil
}

// checkRegions refuses a region list that reaches outside the source's memory.
func (h *Handler) checkRegions() error {
	if len(h.regions) == 0 {
		return errors.New("uffd handler: handshake has no regions")
	}
	for i, r := range h.regions {
		ps := r.pageSize()
		if ps == 0 || ps%BlockSize != 0 || r.Size%ps != 0 || r.BaseHostVirtAddr%ps != 0 || r.Offset%ps != 0 {
			return fmt.Errorf("uffd handler: region %d (%+v) is not aligned to its page size", i, r)
		}
		if r.Offset+r.Size > uint64(h.src.Size()) {
			return fmt.Errorf("uffd handler: region %d ends at file offset %d, the snapshot memory has %d bytes", i, r.Offset+r.Size, h.src.Size())
		}
	}
	sort.Slice(h.regions, func(i, j int) bool { return h.regions[i].BaseHostVirtAddr < h.regions[j].BaseHostVirtAddr })
	h.zeroPages = true // hugetlbfs regions have no UFFDIO_ZEROPAGE: zeros are copied
	most := uint64(max(h.opts.FaultAround, 1)) * BlockSize
	for _, r := range h.regions {
		h.zeroPages = h.zeroPages && r.pageSize() == BlockSize
		most = max(most, r.pageSize())
	}
	h.buf = make([]byte, most)
	return nil
}

func peerCred(conn *net.UnixConn) (*unix.Ucred, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var credErr error
	err = raw.Control(func(fd uintptr) { cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if err == nil {
		err = credErr
	}
	return cred, err
}
