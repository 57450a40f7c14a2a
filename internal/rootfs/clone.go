// Package rootfs makes copy-on-write copies of template disks for sandboxes: a reflink
// (FICLONE) where the filesystem supports it, else a sparse copy that skips holes, so a
// mostly-empty multi-GiB ext4 image costs only its used blocks either way.
package rootfs

import (
	"errors"
	"fmt"
	"io"
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
func Clone(src, dst string) (_ Method, err error) {
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
	if err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd())); err == nil {
		return Reflink, nil
	}
	if err := sparseCopy(in, out, fi.Size()); err != nil {
		return "", fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return SparseCopy, nil
}

// sparseCopy copies only the data extents of in (SEEK_DATA/SEEK_HOLE), leaving holes.
func sparseCopy(in, out *os.File, size int64) error {
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
		if _, err := io.Copy(io.NewOffsetWriter(out, data), io.NewSectionReader(in, data, hole-data)); err != nil {
			return err
		}
		off = hole
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
