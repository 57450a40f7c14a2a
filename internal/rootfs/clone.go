// Package rootfs makes copy-on-write copies of template disks for sandboxes: a reflink
// (FICLONE) where the filesystem supports it, else a sparse copy that skips holes and
// zero blocks, so a mostly-empty multi-GiB ext4 image costs only its used blocks either
// way. The QEMU driver copies snapshot memory files (guest RAM) with the same Clone.
package rootfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Method says how a clone was made.
type Method string

const (
	Reflink    Method = "reflink"
	SparseCopy Method = "copy"
)

// Clone copies src to dst (which must not exist), sharing blocks when it can. On
// failure dst is removed.
func Clone(src, dst string) (Method, error) { return CloneWith(src, dst, CloneOptions{}) }

// CloneOptions tune CloneWith.
type CloneOptions struct {
	// PageWrites makes a sparse copy write each page with its own write, so the
	// page cache holds the copy in page-sized folios rather than large ones. For a
	// file a VMM maps as guest RAM: the kernel writes back whole folios, so a guest
	// touching one page of a large folio would have all of it written at the next
	// pause. It costs a syscall per page; disks do not need it.
	PageWrites bool
	// Sync fsyncs the copy before returning, for a copy that must survive a crash
	// (a snapshot's files).
	Sync bool
}

// CloneWith is Clone with options.
func CloneWith(src, dst string, o CloneOptions) (_ Method, err error) {
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("clone %s: %w", src, err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return "", fmt.Errorf("clone %s: %w", src, err)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return "", fmt.Errorf("clone to %s: %w", dst, err)
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close %s: %w", dst, cerr)
		}
		if err != nil {
			_ = os.Remove(dst)
		}
	}()
	method := Reflink
	if err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd())); err != nil {
		method = SparseCopy
		maxWrite := 1 << 20
		if o.PageWrites {
			maxWrite = copyBlock
		}
		if err := sparseCopy(in, out, fi.Size(), maxWrite); err != nil {
			return "", fmt.Errorf("copy %s to %s: %w", src, dst, err)
		}
	}
	if o.Sync {
		if err := out.Sync(); err != nil {
			return "", fmt.Errorf("sync %s: %w", dst, err)
		}
	}
	return method, nil
}

// copyBlock is the granularity of zero detection: the page size, because guest RAM
// (a memory file) is zero or not page by page, and a filesystem block is no larger.
const copyBlock = 4096

// sparseCopy copies only the data extents of in (SEEK_DATA/SEEK_HOLE) and, within
// them, only blocks that are not all zeros: out starts as one hole, and a zero block
// left unwritten reads back as zeros. Guest RAM that the guest touched and later
// zeroed, or a filesystem's zeroed free space, so costs no blocks in the copy.
// Runs are written at most maxWrite bytes at a time.
func sparseCopy(in, out *os.File, size int64, maxWrite int) error {
	if err := out.Truncate(size); err != nil {
		return err
	}
	var off int64
	for off < size {
		data, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole remains
		}
		if err != nil {
			return fmt.Errorf("seek data: %w", err)
		}
		hole, err := unix.Seek(int(in.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("seek hole: %w", err)
		}
		if err := copyNonZero(in, out, data, hole, maxWrite); err != nil {
			return err
		}
		off = hole
	}
	return nil
}

// copyNonZero copies the range [from, to) of in to the same offsets of out, writing
// each run of non-zero blocks in writes of at most maxWrite bytes.
func copyNonZero(in, out *os.File, from, to int64, maxWrite int) error {
	buf := make([]byte, 1<<20)
	zero := make([]byte, copyBlock)
	for off := from; off < to; {
		chunk := buf[:min(int64(len(buf)), to-off)]
		if _, err := in.ReadAt(chunk, off); err != nil {
			return fmt.Errorf("read at %d: %w", off, err)
		}
		run := -1 // start of the current run of non-zero blocks, or -1
		flush := func(end int) error {
			if run < 0 {
				return nil
			}
			for p := run; p < end; p += maxWrite {
				at := off + int64(p)
				if _, err := out.WriteAt(chunk[p:min(p+maxWrite, end)], at); err != nil {
					return fmt.Errorf("write at %d: %w", at, err)
				}
			}
			run = -1
			return nil
		}
		for b := 0; b < len(chunk); b += copyBlock {
			blk := chunk[b:min(b+copyBlock, len(chunk))]
			if bytes.Equal(blk, zero[:len(blk)]) {
				if err := flush(b); err != nil {
					return err
				}
			} else if run < 0 {
				run = b
			}
		}
		if err := flush(len(chunk)); err != nil {
			return err
		}
		off += int64(len(chunk))
	}
	return nil
}

// Probe reports how clones in dir will be made: Reflink when the filesystem shares
// blocks (XFS with reflink, btrfs), SparseCopy otherwise.
func Probe(dir string) (Method, error) {
	src, err := os.CreateTemp(dir, ".wrenn-probe-*")
	if err != nil {
		return "", fmt.Errorf("probe %s: %w", dir, err)
	}
	defer os.Remove(src.Name())
	defer src.Close()
	if _, err := src.Write([]byte("probe")); err != nil {
		return "", fmt.Errorf("probe %s: %w", dir, err)
	}
	dst, err := os.CreateTemp(dir, ".wrenn-probe-*")
	if err != nil {
		return "", fmt.Errorf("probe %s: %w", dir, err)
	}
	defer os.Remove(dst.Name())
	defer dst.Close()
	if err := unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())); err != nil {
		return SparseCopy, nil
	}
	return Reflink, nil
}
