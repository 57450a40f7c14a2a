// Package memfile stores guest memory snapshots in Wrenn's generation format, shared by
// every VMM driver and by the userfaultfd page server: memory is cut into 4 KiB
// blocks, all-zero blocks are not stored, and a binary header maps every block to
// (generation, offset) — a generation being one data file, memfile.{id}, holding the
// blocks one snapshot wrote. A diff snapshot writes only the blocks dirtied since its
// parent and inherits the parent's mapping for the rest; once a chain would need
// more than MaxGenerations files it is merged into a single full generation.
//
// A snapshot directory holds memfile.header plus every generation file the header
// names (a diff hard-links its parent's files in), so it stands alone: it can be
// copied, renamed or removed without looking at any other snapshot. Generation files
// are never written after they are complete; templates share them freely.
//
// The single-file form — one raw memory image named memfile, as a VMM writes it —
// is read too (Open, Check), so that snapshots taken before conversion, or by a VMM
// whose output is kept as is, restore the same way.
package memfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"sort"
)

// BlockSize is the unit of mapping and of zero elision: the x86 and arm64 base page.
const BlockSize = 4096

// MaxGenerations is the most generation files one header may name; a diff that would
// make it more is merged into one full generation instead.
const MaxGenerations = 10

// HeaderName is the header file in a snapshot directory; RawName is the single-file
// form's memory image.
const (
	HeaderName = "memfile.header"
	RawName    = "memfile"
)

// GenFileName is the data file of generation id.
func GenFileName(id string) string { return "memfile." + id }

// ZeroGen marks an extent whose blocks read as zeros and are stored nowhere.
const ZeroGen = -1

// Extent maps Count blocks from block Start onward to consecutive blocks of one
// generation's file starting at byte Off, or to zeros when Gen is ZeroGen.
type Extent struct {
	Start, Count uint64
	Gen          int32
	Off          uint64
}

// Header is the decoded memfile.header: the memory's size in bytes, its generations
// (oldest first; Extent.Gen indexes this list) and extents covering every block in
// order, with no gaps.
type Header struct {
	Size    uint64
	Gens    []string
	Extents []Extent
}

var headerMagic = [8]byte{'W', 'R', 'N', 'M', 'E', 'M', 'F', '1'}

const (
	headerVersion = 1
	genIDLen      = 32 // hex characters of a generation id
	extentLen     = 32
)

// Blocks is the number of blocks the header covers.
func (h *Header) Blocks() uint64 { return h.Size / BlockSize }

// extent returns the extent holding block b, which must be below Blocks().
func (h *Header) extent(b uint64) Extent {
	i := sort.Search(len(h.Extents), func(i int) bool { return h.Extents[i].Start+h.Extents[i].Count > b })
	return h.Extents[i]
}

// Lookup returns the generation (or ZeroGen) and byte offset in its file of block b,
// which must be below Blocks().
func (h *Header) Lookup(b uint64) (gen int32, off uint64) {
	e := h.extent(b)
	if e.Gen == ZeroGen {
		return ZeroGen, 0
	}
	return e.Gen, e.Off + (b-e.Start)*BlockSize
}

// Files lists the generation files the header names.
func (h *Header) Files() []string {
	names := make([]string, len(h.Gens))
	for i, g := range h.Gens {
		names[i] = GenFileName(g)
	}
	return names
}

// StoredBytes is how many bytes of data the header maps to files (not zeros).
func (h *Header) StoredBytes() uint64 {
	var n uint64
	for _, e := range h.Extents {
		if e.Gen != ZeroGen {
			n += e.Count * BlockSize
		}
	}
	return n
}

// validate checks the invariants every reader relies on.
func (h *Header) validate() error {
	if h.Size == 0 || h.Size%BlockSize != 0 {
		return fmt.Errorf("size %d is not a positive multiple of %d", h.Size, BlockSize)
	}
	if len(h.Gens) > MaxGenerations {
		return fmt.Errorf("%d generations, at most %d", len(h.Gens), MaxGenerations)
	}
	for _, g := range h.Gens {
		if !validGenID(g) {
			return fmt.Errorf("bad generation id %q", g)
		}
	}
	var next uint64
	for i, e := range h.Extents {
		if e.Start != next || e.Count == 0 {
			return fmt.Errorf("extent %d starts at block %d (count %d), want %d", i, e.Start, e.Count, next)
		}
		if e.Gen != ZeroGen && (e.Gen < 0 || int(e.Gen) >= len(h.Gens) || e.Off%BlockSize != 0) {
			return fmt.Errorf("extent %d: generation %d offset %d out of range", i, e.Gen, e.Off)
		}
		next += e.Count
	}
	if next != h.Blocks() {
		return fmt.Errorf("extents cover %d blocks, memory has %d", next, h.Blocks())
	}
	return nil
}

func validGenID(id string) bool {
	if len(id) != genIDLen {
		return false
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// MarshalBinary encodes the header: magic, version, block size, size, counts, the
// generation ids, the extents, and a CRC-32C of all of it, little-endian.
func (h *Header) MarshalBinary() ([]byte, error) {
	if err := h.validate(); err != nil {
		return nil, fmt.Errorf("encode memfile header: %w", err)
	}
	var b bytes.Buffer
	b.Write(headerMagic[:])
	le := binary.LittleEndian
	var fixed [28]byte
	le.PutUint32(fixed[0:], headerVersion)
	le.PutUint32(fixed[4:], BlockSize)
	le.PutUint64(fixed[8:], h.Size)
	le.PutUint32(fixed[16:], uint32(len(h.Gens)))
	le.PutUint64(fixed[20:], uint64(len(h.Extents)))
	b.Write(fixed[:])
	for _, g := range h.Gens {
		b.WriteString(g)
	}
	var ext [extentLen]byte
	for _, e := range h.Extents {
		le.PutUint64(ext[0:], e.Start)
		le.PutUint64(ext[8:], e.Count)
		le.PutUint32(ext[16:], uint32(e.Gen))
		le.PutUint32(ext[20:], 0)
		le.PutUint64(ext[24:], e.Off)
		b.Write(ext[:])
	}
	return le.AppendUint32(b.Bytes(), crc32.Checksum(b.Bytes(), crcTable)), nil
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is matched by errors for a header that is truncated, altered or invalid.
var ErrCorrupt = errors.New("corrupt memfile header")

// UnmarshalBinary decodes and validates a header.
func (h *Header) UnmarshalBinary(b []byte) error {
	le := binary.LittleEndian
	if len(b) < 8+28+4 || !bytes.Equal(b[:8], headerMagic[:]) {
		return fmt.Errorf("%w: no memfile header magic", ErrCorrupt)
	}
	body, sum := b[:len(b)-4], le.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	if v, bs := le.Uint32(b[8:]), le.Uint32(b[12:]); v != headerVersion || bs != BlockSize {
		return fmt.Errorf("%w: version %d block size %d, this build reads version %d with %d-byte blocks", ErrCorrupt, v, bs, headerVersion, BlockSize)
	}
	size, ngens, next := le.Uint64(b[16:]), uint64(le.Uint32(b[24:])), le.Uint64(b[28:])
	p := body[36:]
	if ngens > MaxGenerations || next > uint64(len(p))/extentLen || uint64(len(p)) != ngens*genIDLen+next*extentLen {
		return fmt.Errorf("%w: %d generations and %d extents do not fit %d bytes", ErrCorrupt, ngens, next, len(p))
	}
	*h = Header{Size: size, Gens: make([]string, ngens), Extents: make([]Extent, next)}
	for i := range h.Gens {
		h.Gens[i], p = string(p[:genIDLen]), p[genIDLen:]
	}
	for i := range h.Extents {
		h.Extents[i] = Extent{Start: le.Uint64(p[0:]), Count: le.Uint64(p[8:]), Gen: int32(le.Uint32(p[16:])), Off: le.Uint64(p[24:])}
		p = p[extentLen:]
	}
	if err := h.validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return nil
}

// ReadHeader reads dir's memfile.header.
func ReadHeader(dir string) (*Header, error) {
	b, err := os.ReadFile(filepath.Join(dir, HeaderName))
	if err != nil {
		return nil, fmt.Errorf("read memfile header: %w", err)
	}
	h := &Header{}
	if err := h.UnmarshalBinary(b); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, HeaderName), err)
	}
	return h, nil
}

// builder accumulates a header block by block, joining runs into extents.
type builder struct{ h Header }

func (b *builder) add(block, count uint64, gen int32, off uint64) {
	if n := len(b.h.Extents); n > 0 {
		last := &b.h.Extents[n-1]
		if last.Gen == gen && last.Start+last.Count == block && (gen == ZeroGen || last.Off+last.Count*BlockSize == off) {
			last.Count += count
			return
		}
	}
	b.h.Extents = append(b.h.Extents, Extent{Start: block, Count: count, Gen: gen, Off: off})
}

// compact drops generations no extent references and renumbers the rest, keeping
// their order.
func (h *Header) compact() {
	used := make([]bool, len(h.Gens))
	for _, e := range h.Extents {
		if e.Gen != ZeroGen {
			used[e.Gen] = true
		}
	}
	remap := make([]int32, len(h.Gens))
	var gens []string
	for i, g := range h.Gens {
		if used[i] {
			remap[i] = int32(len(gens))
			gens = append(gens, g)
		}
	}
	for i := range h.Extents {
		if h.Extents[i].Gen != ZeroGen {
			h.Extents[i].Gen = remap[h.Extents[i].Gen]
		}
	}
	h.Gens = slices.Clip(gens)
}
