package memfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Reader reads guest memory from a snapshot directory in either form. It reads with
// pread rather than through mappings: a page server copying a block out of a mapping
// would take a page fault of its own for every block it serves.
type Reader struct {
	size  uint64
	h     *Header    // nil for the single-file form
	files []*os.File // per generation; the raw image alone for the single-file form
}

// Open opens the memory stored in dir: memfile.header and its generation files, or
// else the single raw image memfile. A file that is missing or shorter than the
// header says is an error naming it.
func Open(dir string) (*Reader, error) {
	h, err := ReadHeader(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return openRaw(filepath.Join(dir, RawName))
	}
	if err != nil {
		return nil, err
	}
	r := &Reader{size: h.Size, h: h}
	need := needed(h)
	for i, name := range h.Files() {
		f, err := openFile(filepath.Join(dir, name), need[i])
		if err != nil {
			r.Close()
			return nil, err
		}
		r.files = append(r.files, f)
	}
	return r, nil
}

func openRaw(path string) (*Reader, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("open memory: no %s and no %s: %w", HeaderName, RawName, err)
	}
	if fi.Size() == 0 || fi.Size()%BlockSize != 0 {
		return nil, fmt.Errorf("open memory %s: size %d is not a positive multiple of %d", path, fi.Size(), BlockSize)
	}
	f, err := openFile(path, uint64(fi.Size()))
	if err != nil {
		return nil, err
	}
	return &Reader{size: uint64(fi.Size()), files: []*os.File{f}}, nil
}

// needed returns, per generation, the file size the header's extents require.
func needed(h *Header) []uint64 {
	need := make([]uint64, len(h.Gens))
	for _, e := range h.Extents {
		if e.Gen != ZeroGen {
			need[e.Gen] = max(need[e.Gen], e.Off+e.Count*BlockSize)
		}
	}
	return need
}

func openFile(path string, need uint64) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open memory file: %w", err)
	}
	fi, err := f.Stat()
	if err == nil && (uint64(fi.Size()) < need || need == 0) {
		err = fmt.Errorf("memory file %s is %d bytes, the header maps %d: truncated", path, fi.Size(), need)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Size is the memory's size in bytes.
func (r *Reader) Size() int64 { return int64(r.size) }

// Extent reports how the memory continues from block blk: the number of blocks (at
// least 1, at most max and the memory's end) that are either stored contiguously in
// one file or all zeros, and which. blk must be below the memory's end.
func (r *Reader) Extent(blk uint64, max int) (n int, zero bool) {
	left := min(uint64(max), r.size/BlockSize-blk)
	if r.h == nil {
		return int(left), false
	}
	e := r.h.extent(blk)
	return int(min(left, e.Start+e.Count-blk)), e.Gen == ZeroGen
}

// ReadAt reads memory at off; reading past the end returns io.EOF. Each stretch
// within one extent is one pread.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read memory: negative offset %d", off)
	}
	n := 0
	for n < len(p) {
		pos := uint64(off) + uint64(n)
		if pos >= r.size {
			return n, io.EOF
		}
		blk, in := pos/BlockSize, pos%BlockSize
		var e Extent
		if r.h == nil {
			e = Extent{Start: 0, Count: r.size / BlockSize}
		} else {
			e = r.h.extent(blk)
		}
		c := min(uint64(len(p)-n), (e.Start+e.Count)*BlockSize-pos)
		chunk := p[n : n+int(c)]
		switch {
		case e.Gen == ZeroGen && r.h != nil:
			clear(chunk)
		default:
			f := r.files[0]
			fileOff := pos
			if r.h != nil {
				f, fileOff = r.files[e.Gen], e.Off+(blk-e.Start)*BlockSize+in
			}
			if _, err := f.ReadAt(chunk, int64(fileOff)); err != nil {
				return n, fmt.Errorf("read memory at %d from %s: %w", pos, filepath.Base(f.Name()), err)
			}
		}
		n += int(c)
	}
	return n, nil
}

// Close closes the files.
func (r *Reader) Close() error {
	var err error
	for _, f := range r.files {
		err = errors.Join(err, f.Close())
	}
	r.files = nil
	return err
}

// Files lists the files, relative to dir, that hold dir's memory: the header and its
// generations, or the raw image. Copying these copies the memory.
func Files(dir string) ([]string, error) {
	h, err := ReadHeader(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(filepath.Join(dir, RawName)); err != nil {
			return nil, fmt.Errorf("memory in %s: no %s and no %s", dir, HeaderName, RawName)
		}
		return []string{RawName}, nil
	}
	if err != nil {
		return nil, err
	}
	return append([]string{HeaderName}, h.Files()...), nil
}

// Check says whether dir holds complete memory in either form, without reading the
// data — a valid header whose generation files all exist and are long enough, or a raw
// image — and returns its size in bytes. It is the existence check before a resume.
func Check(dir string) (int64, error) {
	r, err := Open(dir)
	if err != nil {
		return 0, err
	}
	return r.Size(), r.Close()
}

// DataRanges lists the allocated ranges of a sparse file (SEEK_DATA / SEEK_HOLE),
// widened to whole blocks: the blocks a VMM wrote into a diff memory file.
func DataRanges(f *os.File) ([]Range, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var out []Range
	fd := int(f.Fd())
	for off := int64(0); off < fi.Size(); {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("seek data in %s: %w", f.Name(), err)
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("seek hole in %s: %w", f.Name(), err)
		}
		start -= start % BlockSize
		end = min(fi.Size(), (end+BlockSize-1)/BlockSize*BlockSize)
		out = append(out, Range{Off: start, Len: end - start})
		off = end
	}
	return out, nil
}

// Merge writes the memory of src (either form, any number of generations) as one
// full generation into dst, which must exist and hold no memfile yet.
func Merge(src, dst string) (*Result, error) {
	r, err := Open(src)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return Write(dst, r, r.Size(), WriteOptions{})
}
