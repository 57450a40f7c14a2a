package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// MountXFS loop-mounts a fresh sparse XFS image of size bytes with reflink on and
// returns its mount point, unmounted when the test ends. It is the data dir a host
// uses when its own filesystem cannot share blocks, so disk clones are reflinks. It
// skips without root or mkfs.xfs.
func MountXFS(t testing.TB, size int64) string {
	t.Helper()
	if _, err := exec.LookPath("mkfs.xfs"); err != nil {
		t.Skip("skipped: mkfs.xfs is not installed (scripts/install-deps.sh installs xfsprogs)")
	}
	return MountLoopFS(t, size, "mkfs.xfs", "-q", "-m", "reflink=1")
}

// MountLoopFS makes a filesystem of size bytes in a loop file with the mkfs command
// (its arguments but the image's path), mounts it, and returns the mount point. It is
// unmounted and removed at the end of the test.
func MountLoopFS(t testing.TB, size int64, mkfs ...string) string {
	t.Helper()
	RequireRoot(t, "loop-mounting a filesystem")
	dir := t.TempDir()
	img := filepath.Join(dir, "fs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs[0], append(mkfs[1:], img)...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v %s", mkfs[0], err, out)
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v %s", err, out)
	}
	// Registered after TempDir's cleanup, so it runs first: unmount, then remove.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", mnt, err, out)
		}
	})
	return mnt
}
