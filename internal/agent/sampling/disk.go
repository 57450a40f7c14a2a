package sampling

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A sandbox's disk is a file in its directory, cloned from its template's disk by
// internal/rootfs: a reflink (FICLONE) on XFS or btrfs, else a sparse copy. Of a
// reflink clone, st_blocks counts every block the file maps, the template's shared
// ones too, so a fresh clone of a 2 GiB template would "use" 2 GiB that the host
// spends once for all its clones. What the sandbox itself costs the host is the
// extents that are its own: OwnBytes asks the filesystem for the file's extent map
// (FIEMAP) and sums the extents not flagged FIEMAP_EXTENT_SHARED, i.e. the blocks the
// guest has written since the clone (copy-on-write gave it new ones) and any it added
// by growing the disk. A shared extent stops being shared, and so starts counting,
// once nothing else maps it (the template and its other clones deleted). A sparse
// copy shares nothing, so there it is simply the file's allocated bytes.
//
// Delayed-allocation and unwritten (preallocated) extents count too: they are space
// the filesystem has set aside for this file alone. What lies past the end of the file
// does not: XFS preallocates there speculatively while a file grows and takes it back
// by itself, and a VM's disk has a fixed size anyway.
//
// FIEMAP_FLAG_SYNC is not used: it would flush the running guest's writes every time
// the agent looks. So on XFS a guest's overwrite of a shared block counts once the
// host has written it back (its new block sits in a copy-on-write fork that FIEMAP
// does not show until then): the kernel's flusher does that within about 30 s
// (vm.dirty_expire_centisecs), and QEMU's flushes when the guest syncs.

// Constants of linux/fiemap.h and linux/fs.h, which x/sys does not export.
const (
	fsIOCFiemap        = 0xC020660B // _IOWR('f', 11, struct fiemap)
	fiemapExtentLast   = 0x00000001
	fiemapExtentShared = 0x00002000
)

// fiemapExtents is how many extents one FIEMAP call asks for; a disk with more takes
// several calls.
const fiemapExtents = 256

type fiemapHeader struct {
	start         uint64
	length        uint64
	flags         uint32
	mappedExtents uint32
	extentCount   uint32
	_             uint32
}

type fiemapExtent struct {
	logical  uint64
	physical uint64
	length   uint64
	_        [2]uint64
	flags    uint32
	_        [3]uint32
}

// fiemapBuf is struct fiemap with room for fiemapExtents extents after it, reused
// from call to call (14 KiB).
type fiemapBuf struct {
	hdr     fiemapHeader
	extents [fiemapExtents]fiemapExtent
}

// OwnBytes returns the bytes the file at path allocates that no other file shares
// (see above). On a filesystem without FIEMAP (tmpfs) it falls back to the file's
// allocated blocks, which there are its own anyway.
func OwnBytes(path string) (int64, error) { return new(fiemapBuf).ownBytes(path) }

func (b *fiemapBuf) ownBytes(path string) (int64, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("disk bytes of %s: %w", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("disk bytes of %s: %w", path, err)
	}
	n, err := b.unshared(fd, uint64(st.Size))
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTTY) {
		return st.Blocks * 512, nil
	}
	if err != nil {
		return 0, fmt.Errorf("disk bytes of %s: %w", path, err)
	}
	return n, nil
}

// unshared walks fd's extent map up to size, fiemapExtents at a time, summing the
// lengths of the extents not flagged shared.
func (b *fiemapBuf) unshared(fd int, size uint64) (int64, error) {
	var own int64
	var start uint64
	for start < size {
		b.hdr = fiemapHeader{start: start, length: size - start, extentCount: fiemapExtents}
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fsIOCFiemap, uintptr(unsafe.Pointer(b))); errno != 0 {
			return 0, fmt.Errorf("fiemap: %w", errno)
		}
		n := int(b.hdr.mappedExtents)
		if n == 0 {
			return own, nil // no (more) extents: a hole to the end
		}
		for _, e := range b.extents[:n] {
			if e.logical >= size {
				return own, nil
			}
			if e.flags&fiemapExtentShared == 0 {
				own += int64(min(e.logical+e.length, size) - e.logical)
			}
			if e.flags&fiemapExtentLast != 0 {
				return own, nil
			}
		}
		last := b.extents[n-1]
		start = last.logical + last.length
	}
	return own, nil
}
