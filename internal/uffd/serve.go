package uffd

import (
	"context"
	"errors"
	"fmt"
	"sort"
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
		var err error
		if faults, err = h.readEvents(buf, faults[:0]); err != nil {
			return err
		}
		for _, f := range faults {
			if err := h.fault(f.B, buf); err != nil {
				return err
			}
		}
		if len(faults) == 0 && fds[2].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0 {
			return nil // the VMM closed its end: it is gone
		}
	}
}

// readEvents drains the userfaultfd: REMOVE events are applied at once (so a fault
// read in the same batch, possibly ahead of its causally earlier REMOVE, already sees
// the range as removed) and page faults are appended to faults for serving.
func (h *Handler) readEvents(buf []byte, faults []message) ([]message, error) {
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
				h.remove(m.A, m.B)
			}
		}
	}
}

// fault serves the page holding addr.
func (h *Handler) fault(addr uint64, buf []byte) error {
	r, ok := h.region(addr)
	if !ok {
		return fmt.Errorf("fault at %#x outside every region", addr)
	}
	ps := r.pageSize()
	page := addr &^ (ps - 1)
	fileOff := int64(r.Offset + (page - r.BaseHostVirtAddr))
	for {
		err := h.place(page, ps, fileOff, h.isRemoved(page, ps))
		if !errors.Is(err, unix.EAGAIN) {
			if err == nil {
				h.faults.Add(1)
				h.touch(fileOff)
			}
			return err
		}
		// The VMM's memory map is changing: a REMOVE is queued. Apply it, and
		// keep the faults read meanwhile for after this one.
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

// place installs one page: zeros, or the source's bytes at fileOff. A page that is
// already there (EEXIST: another thread's fault or the prefetcher won) is success;
// EAGAIN is returned for the caller to retry.
func (h *Handler) place(page, ps uint64, fileOff int64, zero bool) error {
	var data []byte
	if !zero {
		if ps == BlockSize {
			data = h.src.Block(uint64(fileOff) / BlockSize)
		} else {
			data = make([]byte, ps)
			if _, err := h.src.ReadAt(data, fileOff); err != nil {
				return fmt.Errorf("read snapshot memory at %d: %w", fileOff, err)
			}
		}
	}
	var err error
	switch {
	case data == nil && ps == BlockSize:
		z := uffdioZeropage{Range: uffdioRange{Start: page, Len: ps}}
		err = ioctl(h.fd, ioctlZeropage, unsafe.Pointer(&z))
		if err == nil {
			h.zeroes.Add(1)
		}
	default:
		if data == nil {
			data = make([]byte, ps) // huge pages have no zero-page ioctl
		}
		c := uffdioCopy{Dst: page, Src: uint64(uintptr(unsafe.Pointer(&data[0]))), Len: ps}
		err = ioctl(h.fd, ioctlCopy, unsafe.Pointer(&c))
	}
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	if err != nil && !errors.Is(err, unix.EAGAIN) {
		return fmt.Errorf("serve page %#x: %w", page, err)
	}
	return err
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
	if _, ok := h.seen[fileOff]; !ok {
		h.seen[fileOff] = struct{}{}
		h.touched = append(h.touched, fileOff)
	}
}

// remove records [start, end) as zero from now on, merging it into the set.
func (h *Handler) remove(start, end uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
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

func (h *Handler) isRemoved(page, ps uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	i := sort.Search(len(h.removed), func(i int) bool { return h.removed[i].end > page })
	return i < len(h.removed) && h.removed[i].start < page+ps
}

// prefetch copies in the pages of Options.Prefetch that no fault has brought yet.
// Removed ranges are skipped, EEXIST means the guest was first, and EAGAIN (a REMOVE
// in flight) leaves the page to a later fault.
func (h *Handler) prefetch(ctx context.Context) {
	for _, off := range h.opts.Prefetch {
		if ctx.Err() != nil {
			return
		}
		page, ps, ok := h.addrOf(off)
		if !ok || h.isRemoved(page, ps) {
			continue
		}
		if err := h.place(page, ps, off-off%int64(ps), false); err == nil {
			h.prefetched.Add(1)
		} else if !errors.Is(err, unix.EAGAIN) && ctx.Err() == nil {
			h.log.Debug("uffd prefetch stopped", "err", err)
			return
		}
	}
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
