package memfile

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"unsafe"

	"github.com/wrennhq/wrenn/internal/atomicfile"
	"github.com/wrennhq/wrenn/internal/rootfs"
)

// Range is a byte range of guest memory.
type Range struct{ Off, Len int64 }

// WriteOptions say what kind of generation Write makes.
type WriteOptions struct {
	// Parent is the snapshot directory a diff layers on; "" writes a full
	// generation from all of src.
	Parent string
	// Dirty lists the ranges of src that changed since Parent (rounded out to whole
	// blocks); every other block keeps Parent's mapping. Ignored without Parent.
	Dirty []Range
}

// Result describes what Write did.
type Result struct {
	Header *Header
	// Written is the bytes of block data written to the new generation file.
	Written int64
	// Merged is true when a diff was written as one full generation because the
	// chain would otherwise exceed MaxGenerations.
	Merged bool
}

// Write stores size bytes of guest memory read from src into dir (which must exist
// and hold no memfile yet): a new generation file with the non-zero blocks taken, the
// parent's generation files hard-linked in for a diff, and the header last. The files
// are durable when it returns. On failure it removes what it wrote.
func Write(dir string, src io.ReaderAt, size int64, opts WriteOptions) (res *Result, err error) {
	if size <= 0 || size%BlockSize != 0 {
		return nil, fmt.Errorf("write memfile: size %d is not a positive multiple of %d", size, BlockSize)
	}
	w := &writer{dir: dir}
	defer func() {
		if err != nil {
			w.undo()
			err = fmt.Errorf("write memfile in %s: %w", dir, err)
		}
	}()
	if opts.Parent == "" {
		return w.write(src, uint64(size), nil, "", nil)
	}
	parent, err := ReadHeader(opts.Parent)
	if err != nil {
		return nil, err
	}
	if parent.Size != uint64(size) {
		return nil, fmt.Errorf("memory is %d bytes, parent %s has %d", size, opts.Parent, parent.Size)
	}
	dirty := dirtyBlocks(opts.Dirty, parent.Blocks())
	if kept := keptGenerations(parent, dirty); kept+1 > MaxGenerations {
		pr, err := Open(opts.Parent)
		if err != nil {
			return nil, err
		}
		defer pr.Close()
		res, err := w.write(&overlay{base: pr, top: src, dirty: dirty}, uint64(size), nil, "", nil)
		if res != nil {
			res.Merged = true
		}
		return res, err
	}
	return w.write(src, uint64(size), parent, opts.Parent, dirty)
}

// writer tracks the files one Write creates, to remove them on failure.
type writer struct {
	dir     string
	created []string
}

func (w *writer) undo() {
	for _, p := range w.created {
		os.Remove(p)
	}
}

// write makes the generation in one pass over the blocks, in order: the blocks taken
// from src (all of them without a parent, the dirty ones with one) go to a new
// generation file, zeros to no file, and the others keep the parent's mapping, whose
// files are then linked in.
func (w *writer) write(src io.ReaderAt, size uint64, parent *Header, parentDir string, dirty []bool) (*Result, error) {
	b := builder{h: Header{Size: size}}
	var gens []string
	if parent != nil {
		gens = slices.Clone(parent.Gens)
	}
	newGen := int32(len(gens))
	gen := &genFile{}
	batch := make([]uint64, 0, 256)
	flush := func() error {
		err := w.putBlocks(&b, src, batch, newGen, gen)
		batch = batch[:0]
		return err
	}
	for blk := range size / BlockSize {
		if parent == nil || dirty[blk] {
			if batch = append(batch, blk); len(batch) == cap(batch) {
				if err := flush(); err != nil {
					return nil, err
				}
			}
			continue
		}
		if err := flush(); err != nil {
			return nil, err
		}
		g, off := parent.Lookup(blk)
		b.add(blk, 1, g, off)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	written, err := w.closeGen(gen)
	if err != nil {
		return nil, err
	}
	b.h.Gens = append(gens, gen.id) // "" when nothing was stored: compact drops it
	b.h.compact()
	for _, name := range b.h.Files() {
		if gen.id != "" && name == GenFileName(gen.id) {
			continue
		}
		if err := w.link(filepath.Join(parentDir, name), filepath.Join(w.dir, name)); err != nil {
			return nil, err
		}
	}
	return w.finish(&b.h, written)
}

// genFile is a generation's data file while it is written; it is created with the
// first non-zero block.
type genFile struct {
	id  string
	f   *os.File
	buf *bufio.Writer
	off uint64
	run [256 * BlockSize]byte
}

// putBlocks reads the listed blocks from src and appends the non-zero ones to gen,
// recording each block's mapping in b. Consecutive blocks are read in one call.
func (w *writer) putBlocks(b *builder, src io.ReaderAt, blocks []uint64, genIdx int32, gen *genFile) error {
	for i := 0; i < len(blocks); {
		j := i + 1
		for j < len(blocks) && blocks[j] == blocks[j-1]+1 && j-i < 256 {
			j++
		}
		data := gen.run[:(j-i)*BlockSize]
		if n, err := src.ReadAt(data, int64(blocks[i])*BlockSize); n < len(data) {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // a memory file shorter than the memory
			}
			return fmt.Errorf("read memory at block %d: %w", blocks[i], err)
		}
		for k := i; k < j; k++ {
			block := data[(k-i)*BlockSize : (k-i+1)*BlockSize]
			if isZero(block) {
				b.add(blocks[k], 1, ZeroGen, 0)
				continue
			}
			if gen.f == nil {
				if err := w.openGen(gen); err != nil {
					return err
				}
			}
			if _, err := gen.buf.Write(block); err != nil {
				return fmt.Errorf("write generation %s: %w", gen.id, err)
			}
			b.add(blocks[k], 1, genIdx, gen.off)
			gen.off += BlockSize
		}
		i = j
	}
	return nil
}

func (w *writer) openGen(gen *genFile) error {
	var id [genIDLen / 2]byte
	rand.Read(id[:])
	gen.id = hex.EncodeToString(id[:])
	path := filepath.Join(w.dir, GenFileName(gen.id))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create generation file: %w", err)
	}
	w.created = append(w.created, path)
	gen.f, gen.buf = f, bufio.NewWriterSize(f, 1<<20)
	return nil
}

// closeGen flushes and syncs the generation file, if one was started.
func (w *writer) closeGen(gen *genFile) (int64, error) {
	if gen.f == nil {
		return 0, nil
	}
	err := gen.buf.Flush()
	if err == nil {
		err = gen.f.Sync()
	}
	if cerr := gen.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("write generation %s: %w", gen.id, err)
	}
	return int64(gen.off), nil
}

// link hard-links a parent's generation file into the new snapshot, cloning it (a
// reflink, else a sparse copy) when the two are on different filesystems.
func (w *writer) link(from, to string) error {
	err := os.Link(from, to)
	if err != nil {
		_, err = rootfs.CloneWith(from, to, rootfs.CloneOptions{Sync: true})
	}
	if err != nil {
		return fmt.Errorf("take parent generation %s: %w", filepath.Base(from), err)
	}
	w.created = append(w.created, to)
	return nil
}

func (w *writer) finish(h *Header, written int64) (*Result, error) {
	b, err := h.MarshalBinary()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(w.dir, HeaderName)
	if err := atomicfile.Create(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("memfile header: %w", err) // an existing header is not ours to remove
	}
	return &Result{Header: h, Written: written}, nil
}

// dirtyBlocks turns byte ranges into a per-block flag, rounding outward.
func dirtyBlocks(ranges []Range, blocks uint64) []bool {
	dirty := make([]bool, blocks)
	for _, r := range ranges {
		if r.Len <= 0 || r.Off < 0 {
			continue
		}
		first, end := uint64(r.Off)/BlockSize, (uint64(r.Off+r.Len)+BlockSize-1)/BlockSize
		for blk := first; blk < min(end, blocks); blk++ {
			dirty[blk] = true
		}
	}
	return dirty
}

// keptGenerations counts the parent generations still mapped by blocks not dirty.
func keptGenerations(parent *Header, dirty []bool) int {
	used := make([]bool, len(parent.Gens))
	for _, e := range parent.Extents {
		if e.Gen == ZeroGen || used[e.Gen] {
			continue
		}
		for blk := e.Start; blk < e.Start+e.Count; blk++ {
			if !dirty[blk] {
				used[e.Gen] = true
				break
			}
		}
	}
	n := 0
	for _, u := range used {
		if u {
			n++
		}
	}
	return n
}

// overlay reads dirty blocks from top and all others from base.
type overlay struct {
	base, top io.ReaderAt
	dirty     []bool
}

func (o *overlay) ReadAt(p []byte, off int64) (int, error) {
	for done := 0; done < len(p); {
		blk := uint64(off+int64(done)) / BlockSize
		in := int(uint64(off+int64(done)) % BlockSize)
		n := min(BlockSize-in, len(p)-done)
		src := o.base
		if o.dirty[blk] {
			src = o.top
		}
		if got, err := src.ReadAt(p[done:done+n], off+int64(done)); got < n {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return done, err
		}
		done += n
	}
	return len(p), nil
}

func isZero(b []byte) bool {
	words := unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/8)
	for _, w := range words {
		if w != 0 {
			return false
		}
	}
	for _, c := range b[len(words)*8:] {
		if c != 0 {
			return false
		}
	}
	return true
}
