package rootfs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// mountXFS makes a loop-mounted XFS with reflink, the data dir layout a host uses when
// its own filesystem cannot share blocks.
func mountXFS(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loop-mounting a filesystem needs root (CI runs as root)")
	}
	if _, err := exec.LookPath("mkfs.xfs"); err != nil {
		t.Skip("mkfs.xfs is not installed (scripts/install-deps.sh installs xfsprogs)")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "xfs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 2<<30); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.xfs", "-q", "-m", "reflink=1", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.xfs: %v %s", err, out)
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount: %v %s", err, out)
		}
	})
	return mnt
}

func TestReflinkOnXFS(t *testing.T) {
	mnt := mountXFS(t)
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
