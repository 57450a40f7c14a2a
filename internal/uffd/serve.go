package uffd

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// serve answers events until Stop, the VMM hanging up, or a failure.
func (h *Handler) serve() error {
	connFD := -1
	if raw, err := h.conn.SyscallConn(); err == nil {
		raw.Control(func(fd uintptr) { connFD = int(fd) })
	}
	fds := []unix.PollFd{{Fd: int32(h.fd), Events: unix.POLLIN}, {Fd: int32(h.stopFD), Events: unix.POLLIN}, {Fd: int32(connFD), Events: unix.POLLRDHUP}}
	buf := make([]byte, 64*msgSize)
	var faults []message
	for {
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("poll: %w", err)
		}
		if fds[1].Revents != 0 {
			return nil // Stop
		}
		served, err := h.drain(buf, &faults)
		if errors.Is(err, errPeerGone) {
			return nil
		}
		if err != nil {
			return err
		}
		if !served && fds[2].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0 {
			return nil // the VMM closed its end: it is gone
		}
	}
}

// errPeerGone ends serving without a failure: the VMM went away with faults in flight.
var errPeerGone = errors.New("the vmm is gone")

// spinFor is how long the handler keeps reading after the last fault before it
// sleeps in poll again. Faults come in bursts (a guest touching memory after a
// restore), and a sleeping handler costs every fault two wake-ups instead of one.
const spinFor = 200 * time.Microsecond

// drain serves events until none arrived for spinFor, or Stop.
func (h *Handler) drain(buf []byte, faults *[]message) (served bool, err error) {
	idleSince := time.Now()
	for !h.stopped.Load() {
		if *faults, err = h.readEvents(buf, (*faults)[:0]); err != nil {
			return served, err
		}
		for _, f := range *faults {
			if err := h.fault(f.B, buf); err != nil {
				return served, err
			}
		}
		if len(*faults) > 0 {
			served, idleSince = true, time.Now()
		} else if time.Since(idleSince) > spinFor {
			break
		}
	}
	return served, nil
}

// readEvents drains the userfaultfd: REMOVE events are applied at once (so a fault
// read in the same batch, possibly ahead of its causally earlier REMOVE, already sees
// the range as removed) and page faults are appended to faults for serving.
//
// The read and the REMOVEs it brings happen under mu, as does a prefetch's check and
// copy: a prefetched page lands either before the REMOVE is read (the VMM's zap, which
// waits for that read, then clears it) or after it is applied (and is skipped).
func (h *Handler) readEvents(buf []byte, faults []message) ([]message, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for {
		n, err := unix.Read(h.fd, buf)
		if errors.Is(err, unix.EAGAIN) || n == 0 {
			return faults, nil
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return faults, fmt.Errorf("read userfaultfd: %w", err)
		}
		for off := 0; off+msgSize <= n; off += msgSize {
			m := decodeMessage(buf[off : off+msgSize])
			switch m.Event {
			case eventPagefault:
				faults = append(faults, m)
			case eventRemove:
				h.removeLocked(m.A, m.B)
			}
		}
	}
}

// fault serves the page holding addr, and with Options.FaultAround the pages after
// it that continue the same run of the source.
func (h *Handler) fault(addr uint64, buf []byte) error {
	r, ok := h.region(addr)
	if !ok {
		return fmt.Errorf("fault at %#x outside every region", addr)
	}
	ps := r.pageSize()
	page := addr &^ (ps - 1)
	fileOff := int64(r.Offset + (page - r.BaseHostVirtAddr))
	for {
		n, err := h.serveRun(r, page, fileOff)
		if !errors.Is(err, unix.EAGAIN) {
			if err == nil {
				h.faults.Add(1)
				h.pages.Add(n)
				h.touch(fileOff)
			}
			return err
		}
		// The VMM's memory map is changing: a REMOVE is queued. Apply it, and
		// serve the faults read meanwhile before retrying this one.
		more, err := h.readEvents(buf[:msgSize*16], nil)
		if err != nil {
			return err
		}
		for _, f := range more {
			if err := h.fault(f.B, buf); err != nil {
				return err
			}
		}
	}
}

// serveRun installs the page at page (file offset fileOff) and, for 4 KiB pages with
// fault-around, up to FaultAround-1 following pages of the region that the source
// stores contiguously (or that are all zeros) and that no REMOVE covers. It returns
// how many pages it installed.
func (h *Handler) serveRun(r Region, page uint64, fileOff int64) (int64, error) {
	ps := r.pageSize()
	if h.isRemoved(page, ps) {
		return h.place(page, ps, nil)
	}
	if ps != BlockSize {
		return h.copyIn(page, fileOff, ps, h.buf)
	}
	limit := min(uint64(max(h.opts.FaultAround, 1)), (r.BaseHostVirtAddr+r.Size-page)/BlockSize)
	limit = min(limit, h.pagesBeforeRemoved(page))
	n, zero := h.src.Extent(uint64(fileOff)/BlockSize, int(limit))
	if zero {
		return h.place(page, uint64(n)*BlockSize, nil)
	}
	return h.copyIn(page, fileOff, uint64(n)*BlockSize, h.buf)
}

// copyIn reads length bytes of the source at fileOff into buf and installs them.
func (h *Handler) copyIn(page uint64, fileOff int64, length uint64, buf []byte) (int64, error) {
	data := buf[:length]
	if _, err := h.src.ReadAt(data, fileOff); err != nil {
		return 0, fmt.Errorf("read snapshot memory at %d: %w", fileOff, err)
	}
	return h.place(page, length, data)
}

// place installs length bytes at dst: data, or zeros when data is nil. It returns the
// pages installed. A run cut short — the kernel copies up to a page already present
// (another thread's fault or the prefetcher was first) and answers EAGAIN with the
// bytes done — is success for what it installed, the first page (the faulting one)
// included; a page already present at dst is success with nothing installed. EAGAIN
// with nothing done (the VMM's memory map is changing) is returned for a retry.
func (h *Handler) place(dst, length uint64, data []byte) (int64, error) {
	var err error
	var done int64
	zero := data == nil && h.zeroPages
	if zero {
		z := uffdioZeropage{Range: uffdioRange{Start: dst, Len: length}}
		err = ioctl(h.fd, ioctlZeropage, unsafe.Pointer(&z))
		done = z.Zeropage
	} else {
		if data == nil {
			data = make([]byte, length) // huge pages have no zero-page ioctl
		}
		c := uffdioCopy{Dst: dst, Src: uint64(uintptr(unsafe.Pointer(&data[0]))), Len: length}
		err = ioctl(h.fd, ioctlCopy, unsafe.Pointer(&c))
		done = c.Copy
	}
	switch {
	case err == nil:
		done = int64(length)
	case errors.Is(err, unix.EAGAIN) && done > 0:
		err = nil
	case errors.Is(err, unix.EEXIST):
		// The page is there, but a failed ioctl woke no one: wake whoever waits on
		// it (the installing thread's wake may have raced with their fault).
		r := uffdioRange{Start: dst, Len: length}
		ioctl(h.fd, ioctlWake, unsafe.Pointer(&r))
		return 0, nil
	case errors.Is(err, unix.EAGAIN):
		return 0, err
	case errors.Is(err, unix.ESRCH), errors.Is(err, unix.ENOENT):
		return 0, errPeerGone // the VMM's memory is gone: it exited or was killed
	default:
		return 0, fmt.Errorf("serve %d bytes at %#x: %w", length, dst, err)
	}
	pages := max(done, 0) / BlockSize
	if zero {
		h.zeroes.Add(pages)
	}
	return pages, nil
}

func (h *Handler) region(addr uint64) (Region, bool) {
	i := sort.Search(len(h.regions), func(i int) bool {
		return h.regions[i].BaseHostVirtAddr+h.regions[i].Size > addr
	})
	if i == len(h.regions) || addr < h.regions[i].BaseHostVirtAddr {
		return Region{}, false
	}
	return h.regions[i], true
}

func (h *Handler) touch(fileOff int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.touchLocked(fileOff)
}

func (h *Handler) touchLocked(fileOff int64) {
	if _, ok := h.seen[fileOff]; !ok {
		h.seen[fileOff] = struct{}{}
		h.touched = append(h.touched, fileOff)
	}
}

// removeLocked records [start, end) as zero from now on, merging it into the set.
func (h *Handler) removeLocked(start, end uint64) {
	out := make([]span, 0, len(h.removed)+1)
	cur := span{start, end}
	for _, s := range h.removed {
		switch {
		case s.end < cur.start:
			out = append(out, s)
		case cur.end < s.start:
			out = append(out, cur)
			cur = s
		default:
			cur = span{min(s.start, cur.start), max(s.end, cur.end)}
		}
	}
	h.removed = append(out, cur)
}

// pagesBeforeRemoved is how many 4 KiB pages from page on precede the next removed
// range (a large number when none follows).
func (h *Handler) pagesBeforeRemoved(page uint64) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	i := sort.Search(len(h.removed), func(i int) bool { return h.removed[i].end > page })
	if i == len(h.removed) {
		return 1 << 40
	}
	return (h.removed[i].start - page) / BlockSize
}

func (h *Handler) isRemoved(page, ps uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.isRemovedLocked(page, ps)
}

func (h *Handler) isRemovedLocked(page, ps uint64) bool {
	i := sort.Search(len(h.removed), func(i int) bool { return h.removed[i].end > page })
	return i < len(h.removed) && h.removed[i].start < page+ps
}

// prefetch copies in the pages of Options.Prefetch that no fault has brought yet.
// Removed ranges are skipped, EEXIST means the guest was first, and EAGAIN (a REMOVE
// in flight) leaves the page to a later fault.
func (h *Handler) prefetch(ctx context.Context) {
	buf := make([]byte, len(h.buf))
	for _, off := range h.opts.Prefetch {
		if ctx.Err() != nil {
			return
		}
		page, ps, ok := h.addrOf(off)
		if !ok {
			continue
		}
		n, err := h.prefetchPage(page, ps, off-off%int64(ps), buf)
		if err == nil {
			h.prefetched.Add(n)
		} else if !errors.Is(err, unix.EAGAIN) && ctx.Err() == nil {
			h.log.Debug("uffd prefetch stopped", "err", err)
			return
		}
	}
}

// prefetchPage installs one page unless a REMOVE covers it. The page is read first;
// the check and the copy then hold mu (see readEvents). A prefetched page counts as
// touched, so the next prefetch list keeps it.
func (h *Handler) prefetchPage(page, ps uint64, fileOff int64, buf []byte) (int64, error) {
	_, zero := h.src.Extent(uint64(fileOff)/BlockSize, 1)
	zero = zero && ps == BlockSize
	var data []byte
	if !zero {
		data = buf[:ps]
		if _, err := h.src.ReadAt(data, fileOff); err != nil {
			return 0, fmt.Errorf("read snapshot memory at %d: %w", fileOff, err)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.isRemovedLocked(page, ps) {
		return 0, nil
	}
	n, err := h.place(page, ps, data)
	if err == nil && n > 0 {
		h.touchLocked(fileOff)
	}
	return n, err
}

// addrOf maps a memory-file offset to its page's address in the VMM.
func (h *Handler) addrOf(off int64) (page, ps uint64, ok bool) {
	for _, r := range h.regions {
		if uint64(off) >= r.Offset && uint64(off) < r.Offset+r.Size {
			ps = r.pageSize()
			return (r.BaseHostVirtAddr + uint64(off) - r.Offset) &^ (ps - 1), ps, true
		}
	}
	return 0, 0, false
}
