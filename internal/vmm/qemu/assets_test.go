package qemu

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/testutil"
)

// Guest assets for the real-QEMU tests, shared by all tests (and later test runs)
// through a cache directory under the system temp dir.

func assetCache(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("wrenn-qemu-test-assets-%d", os.Getuid()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

var (
	kernelOnce sync.Once
	kernelPath string
	kernelErr  error
)

// testKernel finds a bootable x86-64 kernel: $WRENN_TEST_KERNEL, one built by the
// image builder under $WRENN_DIR (default /var/lib/wrenn), or Debian's cloud kernel
// fetched with apt-get download from the Debian mirror and unpacked with dpkg-deb.
func testKernel(t testing.TB) string {
	t.Helper()
	kernelOnce.Do(func() { kernelPath, kernelErr = findKernel(assetCache(t)) })
	if kernelErr != nil {
		t.Skipf("no guest kernel for real-QEMU tests: %v", kernelErr)
	}
	return kernelPath
}

func findKernel(cache string) (string, error) {
	if k := os.Getenv("WRENN_TEST_KERNEL"); k != "" {
		return k, nil
	}
	wd := os.Getenv("WRENN_DIR")
	if wd == "" {
		wd = "/var/lib/wrenn"
	}
	if m, _ := filepath.Glob(filepath.Join(wd, "kernels", "*", "vmlinux")); len(m) > 0 {
		return m[0], nil
	}
	if m, _ := filepath.Glob(filepath.Join(cache, "kernel", "boot", "vmlinuz-*")); len(m) > 0 {
		return m[0], nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", "linux-image-cloud-amd64").CombinedOutput()
	pkg := regexp.MustCompile(`Depends: (linux-image-[0-9][^\s]*-cloud-amd64)\b`).FindSubmatch(out)
	if err != nil || pkg == nil {
		// Package lists may be missing on a fresh machine.
		if uerr := exec.CommandContext(ctx, "apt-get", "update", "-qq").Run(); uerr != nil {
			return "", fmt.Errorf("apt-cache depends linux-image-cloud-amd64: %v: %s; apt-get update: %v", err, out, uerr)
		}
		out, err = exec.CommandContext(ctx, "apt-cache", "depends", "linux-image-cloud-amd64").CombinedOutput()
		pkg = regexp.MustCompile(`Depends: (linux-image-[0-9][^\s]*-cloud-amd64)\b`).FindSubmatch(out)
		if err != nil || pkg == nil {
			return "", fmt.Errorf("apt-cache depends linux-image-cloud-amd64: %v: %s", err, out)
		}
	}
	dir, err := debExtract(ctx, cache, "kernel", string(pkg[1]), "boot")
	if err != nil {
		return "", err
	}
	m, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(m) == 0 {
		return "", fmt.Errorf("%s has no /boot/vmlinuz-*", pkg[1])
	}
	return m[0], nil
}

// debExtract downloads one Debian package and unpacks it to cache/name, atomically so
// concurrent test processes never see half a tree. Only the top-level directory keep
// of the package is kept (the kernel's 100 MB of modules are not needed).
func debExtract(ctx context.Context, cache, name, pkg, keep string) (string, error) {
	final := filepath.Join(cache, name)
	work, err := os.MkdirTemp(cache, name+".tmp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	get := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg)
	get.Dir = work
	if out, err := get.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download %s: %v: %s", pkg, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(work, "*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("apt-get download %s: %d .deb files", pkg, len(debs))
	}
	tree := filepath.Join(work, "tree")
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], tree).CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-deb -x %s: %v: %s", debs[0], err, out)
	}
	entries, _ := os.ReadDir(tree)
	for _, e := range entries {
		if e.Name() != keep {
			os.RemoveAll(filepath.Join(tree, e.Name()))
		}
	}
	if err := os.Rename(tree, final); err != nil {
		if _, serr := os.Stat(final); serr == nil {
			return final, nil // another process won the race
		}
		return "", err
	}
	return final, nil
}

// staticBusybox returns a statically linked busybox: the host's when it is static,
// else the one from Debian's busybox-static package.
func staticBusybox(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if isStatic(p) {
			return p
		}
	}
	p := filepath.Join(assetCache(t), "busybox", "bin", "busybox")
	if isStatic(p) {
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := debExtract(ctx, assetCache(t), "busybox", "busybox-static", "bin"); err != nil {
		t.Skipf("no static busybox: %v", err)
	}
	if !isStatic(p) {
		t.Skipf("busybox-static package has no static %s", p)
	}
	return p
}

func isStatic(p string) bool {
	f, err := elf.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return false
		}
	}
	return f.Machine == elf.EM_X86_64
}

// readyMarker is printed by the test initramfs's init once it runs.
const readyMarker = "wrenn-test-init-ready"

// counterArgs make the test init count: after readyMarker it stores a random token
// in a file of its RAM-backed root and prints "tick <token> <n>" every second from a
// shell variable, so a guest restored from a snapshot shows that its memory (the
// file and the shell's n) carried on. Unknown k=v kernel arguments become init's
// environment.
var counterArgs = []string{"wrenntest=counter"}

// testInitramfs builds an uncompressed newc cpio whose /init prints readyMarker and
// then sleeps forever (an idle guest), or counts with counterArgs, keeping the VM
// alive without any disk.
func testInitramfs(t testing.TB) string {
	t.Helper()
	bb, err := os.ReadFile(staticBusybox(t))
	if err != nil {
		t.Fatal(err)
	}
	init := "#!/bin/busybox sh\n" +
		"/bin/busybox mount -t proc proc /proc\n" +
		"echo " + readyMarker + "\n" +
		"if [ \"$wrenntest\" = counter ]; then\n" +
		"  /bin/busybox cat /proc/sys/kernel/random/uuid > /token\n" +
		"  n=0\n" +
		"  while true; do n=$((n+1)); echo \"tick $(/bin/busybox cat /token) $n\"; /bin/busybox sleep 1; done\n" +
		"fi\n" +
		"exec /bin/busybox sleep 1000000\n"
	var w cpioWriter
	w.add("dev", 0o040755, 0, nil)
	w.add("dev/console", 0o020600, 5<<8|1, nil)
	w.add("proc", 0o040755, 0, nil)
	w.add("bin", 0o040755, 0, nil)
	w.add("bin/busybox", 0o100755, 0, bb)
	w.add("init", 0o100755, 0, []byte(init))
	w.add("TRAILER!!!", 0, 0, nil)
	p := filepath.Join(t.TempDir(), "initramfs.cpio")
	if err := os.WriteFile(p, w.buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// cpioWriter writes the "newc" format the kernel unpacks into its initial rootfs.
type cpioWriter struct {
	buf bytes.Buffer
	ino int
}

func (w *cpioWriter) add(name string, mode uint32, rdev int, data []byte) {
	w.ino++
	nlink := 1
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	fmt.Fprintf(&w.buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		w.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev>>8, rdev&0xff, len(name)+1, 0)
	w.buf.WriteString(name + "\x00")
	w.pad()
	w.buf.Write(data)
	w.pad()
}

func (w *cpioWriter) pad() {
	for w.buf.Len()%4 != 0 {
		w.buf.WriteByte(0)
	}
}

// requireQEMU skips unless real-QEMU tests can run here.
func requireQEMU(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("real-QEMU test skipped in -short mode")
	}
	testutil.RequireRoot(t, "real-QEMU tests run QEMU as the agent does (network namespaces, TAP devices)")
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skipf("qemu-system-x86_64 not installed: %v", err)
	}
	return bin
}

// waitConsole waits until the console log contains s.
func waitConsole(t testing.TB, path, s string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("console has no %q after %s:\n%s", s, d, tail(b, 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
