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
