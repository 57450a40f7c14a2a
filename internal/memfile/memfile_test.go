package memfile

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// mutate changes the blocks of mem covered by n random ranges (some to zeros, some
// to random bytes, some to a repeated pattern) and returns the ranges.
func mutate(rng *rand.Rand, mem []byte, n int) []Range {
	blocks := len(mem) / BlockSize
	var dirty []Range
	for range n {
		first := rng.IntN(blocks)
		count := 1 + rng.IntN(min(8, blocks-first))
		r := Range{Off: int64(first * BlockSize), Len: int64(count * BlockSize)}
		dirty = append(dirty, r)
		p := mem[r.Off : r.Off+r.Len]
		switch rng.IntN(3) {
		case 0:
			clear(p)
		case 1:
			for i := range p {
				p[i] = byte(rng.Uint32())
			}
		default:
			for i := range p {
				p[i] = byte(i % 251)
			}
		}
	}
	return dirty
}

func assertMemory(t *testing.T, dir string, want []byte) {
	t.Helper()
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Size() != int64(len(want)) {
		t.Fatalf("%s: size %d, want %d", dir, r.Size(), len(want))
	}
	got := make([]byte, len(want))
	if _, err := r.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		for b := 0; b < len(want); b += BlockSize {
			if !bytes.Equal(got[b:b+BlockSize], want[b:b+BlockSize]) {
				t.Fatalf("%s: block %d differs", dir, b/BlockSize)
			}
		}
	}
	// Extent never calls stored data zeros, and its runs read back the same.
	for blk := uint64(0); blk < uint64(len(want)/BlockSize); {
		n, zero := r.Extent(blk, 7)
		w := want[blk*BlockSize : (blk+uint64(n))*BlockSize]
		if n < 1 || n > 7 || (zero && !isZero(w)) {
			t.Fatalf("%s: Extent(%d) = %d, %v", dir, blk, n, zero)
		}
		blk += uint64(n)
	}
}

func newDir(t *testing.T, base string, i int) string {
	d := filepath.Join(base, fmt.Sprint(i))
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestChainsRestoreByteIdentical is the property the format exists for: any chain of
// diffs, merged or not, and with older snapshots deleted, reads back exactly the
// memory each snapshot was taken from.
func TestChainsRestoreByteIdentical(t *testing.T) {
	for seed := range uint64(40) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			blocks := 1 + rng.IntN(96)
			mem := make([]byte, blocks*BlockSize)
			mutate(rng, mem, rng.IntN(6))
			base := t.TempDir()
			dir := newDir(t, base, 0)
			if _, err := Write(dir, bytes.NewReader(mem), int64(len(mem)), WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			assertMemory(t, dir, mem)
			merged := 0
			steps := 1 + rng.IntN(25)
			for i := 1; i <= steps; i++ {
				dirty := mutate(rng, mem, 1+rng.IntN(4))
				next := newDir(t, base, i)
				src := bytes.NewReader(mem)
				if rng.IntN(2) == 0 {
					// Through a sparse file and DataRanges, as a VMM's diff arrives.
					dirty = sparseDiff(t, base, i, mem, dirty, &src)
				}
				res, err := Write(next, src, int64(len(mem)), WriteOptions{Parent: dir, Dirty: dirty})
				if err != nil {
					t.Fatal(err)
				}
				if res.Merged {
					merged++
				}
				if n := len(res.Header.Gens); n > MaxGenerations {
					t.Fatalf("step %d: %d generations", i, n)
				}
				if rng.IntN(3) == 0 {
					os.RemoveAll(dir) // a snapshot stands alone once written
				}
				assertMemory(t, next, mem)
				dir = next
			}
			full := newDir(t, base, 1000)
			res, err := Merge(dir, full)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Header.Gens) > 1 {
				t.Fatalf("merged into %d generations", len(res.Header.Gens))
			}
			assertMemory(t, full, mem)
			t.Logf("%d blocks, %d diffs, %d merges", blocks, steps, merged)
		})
	}
}

// sparseDiff writes the dirty blocks of mem into a sparse file the size of mem and
// returns its DataRanges; *src becomes that file's contents.
func sparseDiff(t *testing.T, base string, i int, mem []byte, dirty []Range, src **bytes.Reader) []Range {
	t.Helper()
	f, err := os.Create(filepath.Join(base, fmt.Sprintf("diff-%d", i)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(int64(len(mem))); err != nil {
		t.Fatal(err)
	}
	for _, r := range dirty {
		if _, err := f.WriteAt(mem[r.Off:r.Off+r.Len], r.Off); err != nil {
			t.Fatal(err)
		}
	}
	got, err := DataRanges(f)
	if err != nil {
		t.Fatal(err)
	}
	want := dirtyBlocks(dirty, uint64(len(mem)/BlockSize))
	have := dirtyBlocks(got, uint64(len(mem)/BlockSize))
	for b := range want {
		if want[b] && !have[b] {
			t.Fatalf("DataRanges missed block %d", b)
		}
	}
	content, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	*src = bytes.NewReader(content)
	return got
}

func TestZeroBlocksAreNotStored(t *testing.T) {
	mem := make([]byte, 64*BlockSize)
	copy(mem[5*BlockSize:], "five")
	copy(mem[6*BlockSize:], "six")
	mem[len(mem)-1] = 1
	dir := t.TempDir()
	res, err := Write(dir, bytes.NewReader(mem), int64(len(mem)), WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != 3*BlockSize || res.Header.StoredBytes() != 3*BlockSize {
		t.Fatalf("wrote %d bytes (header maps %d), want 3 blocks", res.Written, res.Header.StoredBytes())
	}
	// Blocks 0-4 zero, 5-6 stored, 7-62 zero, 63 stored: four extents.
	if len(res.Header.Extents) != 4 {
		t.Fatalf("extents %+v", res.Header.Extents)
	}
	files, err := Files(dir)
	if err != nil || len(files) != 2 {
		t.Fatalf("Files = %v, %v", files, err)
	}
	// A diff that only zeroes blocks needs no new generation file.
	next := filepath.Join(dir, "next")
	os.Mkdir(next, 0o700)
	clear(mem[5*BlockSize : 7*BlockSize])
	res, err = Write(next, bytes.NewReader(mem), int64(len(mem)), WriteOptions{Parent: dir, Dirty: []Range{{5 * BlockSize, 2 * BlockSize}}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != 0 || len(res.Header.Gens) != 1 {
		t.Fatalf("zeroing diff wrote %d bytes, %d generations", res.Written, len(res.Header.Gens))
	}
	assertMemory(t, next, mem)
}

func TestCorruptAndMissingFilesAreRefused(t *testing.T) {
	mem := bytes.Repeat([]byte{7}, 8*BlockSize)
	dir := t.TempDir()
	res, err := Write(dir, bytes.NewReader(mem), int64(len(mem)), WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hdr := filepath.Join(dir, HeaderName)
	orig, _ := os.ReadFile(hdr)
	bad := bytes.Clone(orig)
	bad[20]++
	os.WriteFile(hdr, bad, 0o600)
	if _, err := Check(dir); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("altered header: %v", err)
	}
	os.WriteFile(hdr, orig[:len(orig)-9], 0o600)
	if _, err := Check(dir); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated header: %v", err)
	}
	os.WriteFile(hdr, orig, 0o600)
	gen := filepath.Join(dir, res.Header.Files()[0])
	os.Truncate(gen, 4*BlockSize)
	if _, err := Check(dir); err == nil || !bytes.Contains([]byte(err.Error()), []byte("truncated")) {
		t.Fatalf("truncated generation: %v", err)
	}
	os.Remove(gen)
	if _, err := Check(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing generation: %v", err)
	}
	empty := t.TempDir()
	if _, err := Check(empty); err == nil {
		t.Fatal("empty dir passes Check")
	}
}

func TestSingleFileForm(t *testing.T) {
	mem := make([]byte, 16*BlockSize)
	copy(mem[3*BlockSize:], "raw")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, RawName), mem, 0o600)
	assertMemory(t, dir, mem)
	files, err := Files(dir)
	if err != nil || len(files) != 1 || files[0] != RawName {
		t.Fatalf("Files = %v, %v", files, err)
	}
	// A diff may layer on a merged copy of the raw image.
	merged := filepath.Join(dir, "m")
	os.Mkdir(merged, 0o700)
	if _, err := Merge(dir, merged); err != nil {
		t.Fatal(err)
	}
	assertMemory(t, merged, mem)
}

func TestWriteFailureLeavesNothing(t *testing.T) {
	mem := bytes.Repeat([]byte{1}, 8*BlockSize)
	dir := t.TempDir()
	if _, err := Write(dir, failingReader{}, int64(len(mem)), WriteOptions{}); err == nil {
		t.Fatal("write from a failing reader succeeded")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left %v", ents)
	}
	if _, err := Write(dir, bytes.NewReader(mem), 100, WriteOptions{}); err == nil {
		t.Fatal("unaligned size accepted")
	}
}

type failingReader struct{}

func (failingReader) ReadAt([]byte, int64) (int, error) { return 0, errors.New("disk on fire") }

// FuzzHeader: no input makes header decoding panic; whatever decodes re-encodes
// to itself.
func FuzzHeader(f *testing.F) {
	h := Header{Size: 8 * BlockSize, Gens: []string{"0123456789abcdef0123456789abcdef"},
		Extents: []Extent{{Start: 0, Count: 3, Gen: ZeroGen}, {Start: 3, Count: 5, Gen: 0, Off: 0}}}
	b, err := h.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Header
		if h.UnmarshalBinary(b) != nil {
			return
		}
		again, err := h.MarshalBinary()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("decoded header does not re-encode: %v", err)
		}
	})
}

func TestWriteRefusesAnExistingSnapshot(t *testing.T) {
	mem := bytes.Repeat([]byte{3}, 4*BlockSize)
	dir := t.TempDir()
	if _, err := Write(dir, bytes.NewReader(mem), int64(len(mem)), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Write(dir, bytes.NewReader(mem), int64(len(mem)), WriteOptions{}); err == nil {
		t.Fatal("a second write into one dir succeeded")
	}
	assertMemory(t, dir, mem) // and the first is intact
	if _, err := Write(t.TempDir(), bytes.NewReader(mem[:BlockSize]), int64(len(mem)), WriteOptions{}); err == nil {
		t.Fatal("a source shorter than the memory was written")
	}
}
