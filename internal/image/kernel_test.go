package image

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeKernelDeb builds a linux-image .deb with a synthetic bzImage whose wanted modules are
// all built in (modules.builtin), the way a kernel with everything compiled in would ship.
func fakeKernelDeb(t *testing.T, version, pkgVersion string, filler int) string {
	t.Helper()
	root := t.TempDir()
	write := func(p string, data []byte) {
		t.Helper()
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pkg := "linux-image-" + version
	write("DEBIAN/control", []byte(fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: amd64\nMaintainer: test <t@example.com>\nDescription: fake kernel\n", pkg, pkgVersion)))
	write("boot/vmlinuz-"+version, testBzImage(lz4Legacy(t, testELF(true, filler))))
	write("boot/config-"+version, []byte("CONFIG_EXT4_FS=y\nCONFIG_VIRTIO_BLK=y\nCONFIG_PVH=y\n"))
	var builtin strings.Builder
	for _, w := range wantedModules() {
		fmt.Fprintf(&builtin, "kernel/drivers/fake/%s.ko\n", w.name)
	}
	write("lib/modules/"+version+"/modules.builtin", []byte(builtin.String()))
	deb := filepath.Join(t.TempDir(), pkg+".deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "-b", root, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -b: %v\n%s", err, out)
	}
	return deb
}

// A kernel upgrade makes a new content-addressed directory and leaves the old one as it was.
func TestKernelStoreIsContentAddressed(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not installed")
	}
	ctx := context.Background()
	dir := t.TempDir()
	o := &Options{Dir: dir, CacheDir: filepath.Join(dir, "cache"), KernelDeb: fakeKernelDeb(t, "6.1.0-1-test", "6.1.1-1", 1000)}
	if err := os.MkdirAll(o.workDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	rep := newReporter(nil, "test")
	k1, err := ensureKernel(ctx, rep, o)
	if err != nil {
		t.Fatal(err)
	}
	if k1.Version != "6.1.0-1-test" || !k1.PVH || !k1.Ext4BuiltIn || !k1.VirtioBuiltIn || len(k1.Modules) != 0 {
		t.Fatalf("kernel 1 = %+v", k1)
	}
	dir1 := filepath.Join(dir, "kernels", k1.ID)
	sum1 := dirDigest(t, dir1)

	again, err := ensureKernel(ctx, rep, o)
	if err != nil || again.ID != k1.ID {
		t.Fatalf("same package again: %v, %v", again, err)
	}
	if rep.steps[len(rep.steps)-1].Cached != true {
		t.Error("same package was not served from the kernel index")
	}

	o.KernelDeb = fakeKernelDeb(t, "6.1.0-2-test", "6.1.2-1", 2000) // the upgrade
	k2, err := ensureKernel(ctx, rep, o)
	if err != nil {
		t.Fatal(err)
	}
	if k2.ID == k1.ID {
		t.Fatal("a different kernel got the same ID")
	}
	if dirDigest(t, dir1) != sum1 {
		t.Fatal("the upgrade changed the old kernel directory")
	}
	// Force re-resolves but never rewrites an existing kernel directory.
	o.Force = true
	if _, err := ensureKernel(ctx, rep, o); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "kernels", k2.ID, vmlinuxFile)); err != nil {
		t.Fatal(err)
	}
	if dirDigest(t, dir1) != sum1 {
		t.Fatal("Force changed an existing kernel directory")
	}
}

// dirDigest hashes names, sizes, modes and contents of every file under dir.
func dirDigest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d %v %d\n", p, fi.Size(), fi.Mode(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}
