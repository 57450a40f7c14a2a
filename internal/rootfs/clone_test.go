package rootfs

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestCloneKeepsHolesAndContent(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.img")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	const size = 64 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	chunks := map[int64][]byte{0: []byte("head"), 10 << 20: bytes.Repeat([]byte{7}, 1<<20), size - 3: []byte("end")}
	for off, b := range chunks {
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()

	dst := filepath.Join(dir, "dst.img")
	method, err := Clone(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(src)
	if !bytes.Equal(got, want) {
		t.Fatal("clone differs from source")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dst, &st); err != nil {
		t.Fatal(err)
	}
	if method == SparseCopy && st.Blocks*512 > 8<<20 {
		t.Errorf("sparse copy allocated %d bytes for ~1 MiB of data", st.Blocks*512)
	}
	// Writing the clone leaves the source alone.
	if err := os.WriteFile(dst, []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(src); !bytes.Equal(again, want) {
		t.Fatal("source changed through its clone")
	}
	if _, err := Clone(src, dst); err == nil {
		t.Error("clone over an existing file succeeded")
	}
	if _, err := Clone(filepath.Join(dir, "missing"), filepath.Join(dir, "x")); err == nil {
		t.Error("clone of a missing file succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); !os.IsNotExist(err) {
		t.Error("failed clone left its destination behind")
	}
	t.Logf("method %s", method)
}

// Zero blocks inside data extents (guest RAM the guest zeroed, an image's zeroed free
// space) are not written by a sparse copy; the content still matches.
func TestSparseCopySkipsZeroBlocks(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	const size = 8 << 20
	data := make([]byte, size) // all allocated, mostly zeros
	copy(data[4096*3:], "page three")
	copy(data[size-10:], "last bytes")
	for i := 5 << 20; i < 6<<20; i++ {
		data[i] = 0xaa
	}
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(filepath.Join(dir, "dst"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := sparseCopy(in, out, size, 1<<20); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out.Name())
	if !bytes.Equal(got, data) {
		t.Fatal("copy differs")
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(out.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 > 2<<20 {
		t.Errorf("copy allocated %d bytes for ~1 MiB of non-zero data in an 8 MiB file", st.Blocks*512)
	}
	t.Logf("allocated %d KiB", st.Blocks/2)
}

func TestClonePageWrites(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	data := bytes.Repeat([]byte("0123456789abcdef"), 3<<16) // 3 MiB, no zero block
	data[5000] = 0
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := CloneWith(src, filepath.Join(dir, "dst"), CloneOptions{PageWrites: true}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "dst")); !bytes.Equal(got, data) {
		t.Fatal("page-wise copy differs")
	}
}
