package rootfs

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/testutil"
)

func TestReflinkOnXFS(t *testing.T) {
	mnt := testutil.MountXFS(t, 2<<30)
	if m, err := Probe(mnt); err != nil || m != Reflink {
		t.Fatalf("probe of a reflink XFS: %v %v", m, err)
	}
	if m, err := Probe(t.TempDir()); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("the temp dir clones by %s", m)
	}
	src := filepath.Join(mnt, "base.ext4")
	data := bytes.Repeat([]byte("template"), 64<<20/8) // 64 MiB of real data
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	freeBefore := st.Bfree * uint64(st.Bsize)
	start := time.Now()
	m, err := Clone(src, filepath.Join(mnt, "clone.ext4"))
	took := time.Since(start)
	if err != nil || m != Reflink {
		t.Fatalf("clone on XFS: %v %v", m, err)
	}
	if err := syscall.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	// Shared blocks: the clone used (almost) no space.
	if used := int64(freeBefore) - int64(st.Bfree*uint64(st.Bsize)); used > 4<<20 {
		t.Errorf("reflink clone of 64 MiB used %d bytes", used)
	}
	// Writing the clone leaves the template alone.
	f, err := os.OpenFile(filepath.Join(mnt, "clone.ext4"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("CHANGED!"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got, _ := os.ReadFile(src); !bytes.Equal(got[:8], []byte("template")) {
		t.Error("template changed through its reflink clone")
	}
	t.Logf("reflink clone of 64 MiB took %v", took)
}
