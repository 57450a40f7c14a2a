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
	// The fake config has no virtio-mmio, ACPI, serial console...: not bootable by Firecracker.
	if k1.FirecrackerReady || len(k1.FirecrackerMissing) == 0 {
		t.Errorf("kernel 1: FirecrackerReady=%v missing=%q", k1.FirecrackerReady, k1.FirecrackerMissing)
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

// firecrackerMissing decides Firecracker fitness from the kernel config alone.
func TestFirecrackerMissing(t *testing.T) {
	// Debian bookworm's linux-image-6.1.0-57-cloud-amd64 (6.1.192-3), the options that matter.
	debianCloud := map[string]string{
		"CONFIG_VIRTIO_MMIO": "m", "CONFIG_VIRTIO_BLK": "m", "CONFIG_VIRTIO_NET": "m",
		"CONFIG_SERIAL_8250_CONSOLE": "y", "CONFIG_KVM_GUEST": "y", "CONFIG_BLK_DEV_INITRD": "y",
		"CONFIG_ACPI": "y", "CONFIG_PCI": "y", "CONFIG_PVH": "y",
	}
	config := func(base map[string]string, changes map[string]string) []byte {
		var b strings.Builder
		b.WriteString("#\n# Automatically generated file; DO NOT EDIT.\n#\n")
		for k, v := range base {
			if c, ok := changes[k]; ok {
				v = c
			}
			if v == "" {
				fmt.Fprintf(&b, "# %s is not set\n", k)
			} else {
				fmt.Fprintf(&b, "%s=%s\n", k, v)
			}
		}
		for k, v := range changes {
			if _, ok := base[k]; !ok && v != "" {
				fmt.Fprintf(&b, "%s=%s\n", k, v)
			}
		}
		return []byte(b.String())
	}
	discovery := "virtio-mmio device discovery: CONFIG_ACPI=y and CONFIG_PCI=y, or CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y with CONFIG_VIRTIO_MMIO=y"
	for _, tc := range []struct {
		name    string
		changes map[string]string
		elf     bool
		want    []string
	}{
		{"debian cloud 6.1", nil, true, nil},
		{"everything built in", map[string]string{"CONFIG_VIRTIO_MMIO": "y", "CONFIG_VIRTIO_BLK": "y", "CONFIG_VIRTIO_NET": "y"}, true, nil},
		{"no vmlinux", nil, false, []string{"uncompressed ELF vmlinux"}},
		{"no virtio-mmio", map[string]string{"CONFIG_VIRTIO_MMIO": ""}, true, []string{"CONFIG_VIRTIO_MMIO=y or =m"}},
		{"no block, no net", map[string]string{"CONFIG_VIRTIO_BLK": "", "CONFIG_VIRTIO_NET": ""}, true,
			[]string{"CONFIG_VIRTIO_BLK=y or =m", "CONFIG_VIRTIO_NET=y or =m"}},
		{"serial console as module", map[string]string{"CONFIG_SERIAL_8250_CONSOLE": "m"}, true, []string{"CONFIG_SERIAL_8250_CONSOLE=y"}},
		{"no kvm guest, no initrd", map[string]string{"CONFIG_KVM_GUEST": "", "CONFIG_BLK_DEV_INITRD": ""}, true,
			[]string{"CONFIG_KVM_GUEST=y", "CONFIG_BLK_DEV_INITRD=y"}},
		{"acpi without pci", map[string]string{"CONFIG_PCI": ""}, true, []string{discovery}},
		{"no acpi", map[string]string{"CONFIG_ACPI": ""}, true, []string{discovery}},
		{"no acpi, cmdline devices, built-in virtio_mmio", map[string]string{"CONFIG_ACPI": "", "CONFIG_VIRTIO_MMIO": "y", "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES": "y"}, true, nil},
		{"no acpi, cmdline devices, modular virtio_mmio", map[string]string{"CONFIG_ACPI": "", "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES": "y"}, true,
			[]string{discovery + " (a modular virtio_mmio never sees virtio_mmio.device=: the initramfs loads it with insmod)"}},
		{"acpi and cmdline devices", map[string]string{"CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES": "y"}, true, nil},
		{"empty config", map[string]string{
			"CONFIG_VIRTIO_MMIO": "", "CONFIG_VIRTIO_BLK": "", "CONFIG_VIRTIO_NET": "", "CONFIG_SERIAL_8250_CONSOLE": "",
			"CONFIG_KVM_GUEST": "", "CONFIG_BLK_DEV_INITRD": "", "CONFIG_ACPI": "", "CONFIG_PCI": ""}, true,
			[]string{"CONFIG_VIRTIO_MMIO=y or =m", "CONFIG_VIRTIO_BLK=y or =m", "CONFIG_VIRTIO_NET=y or =m",
				"CONFIG_SERIAL_8250_CONSOLE=y", "CONFIG_KVM_GUEST=y", "CONFIG_BLK_DEV_INITRD=y", discovery}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := firecrackerMissing(config(debianCloud, tc.changes), tc.elf)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("missing = %q, want %q", got, tc.want)
			}
		})
	}
}

// Kernels and templates recorded before the Firecracker fields existed get them from the
// kernel directory's config when read.
func TestFirecrackerFieldsRecomputedOnRead(t *testing.T) {
	dir := t.TempDir()
	kdir := filepath.Join(dir, "kernels", "0123456789abcdef")
	if err := os.MkdirAll(kdir, 0o755); err != nil {
		t.Fatal(err)
	}
	old := `{"id": "0123456789abcdef", "version": "6.1.0-57-cloud-amd64", "pvh": true}` // no firecracker_* fields
	cfg := "CONFIG_VIRTIO_MMIO=m\nCONFIG_VIRTIO_BLK=m\nCONFIG_VIRTIO_NET=m\nCONFIG_SERIAL_8250_CONSOLE=y\n" +
		"CONFIG_KVM_GUEST=y\nCONFIG_BLK_DEV_INITRD=y\nCONFIG_ACPI=y\nCONFIG_PCI=y\n# CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES is not set\n"
	for name, data := range map[string]string{kernelJSON: old, configFile: cfg, vmlinuxFile: "x", vmlinuzFile: "x"} {
		if err := os.WriteFile(filepath.Join(kdir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	k, err := readKernel(kdir)
	if err != nil {
		t.Fatal(err)
	}
	if !k.FirecrackerReady || len(k.FirecrackerMissing) != 0 {
		t.Fatalf("readKernel: ready=%v missing=%q", k.FirecrackerReady, k.FirecrackerMissing)
	}

	tdir := filepath.Join(dir, "images", "base")
	if err := os.MkdirAll(tdir, 0o755); err != nil {
		t.Fatal(err)
	}
	manifest := `{"name": "base", "kernel": ` + old + `, "vmlinux": "kernels/0123456789abcdef/vmlinux",
		"initrd": {"path": "kernels/0123456789abcdef/initrd.img"}, "rootfs": {"path": "images/base/rootfs.ext4"}}`
	for p, data := range map[string]string{
		filepath.Join(tdir, manifestFile): manifest, filepath.Join(tdir, "rootfs.ext4"): "",
		filepath.Join(kdir, "initrd.img"): "",
	} {
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tpl, err := Load(dir, "base")
	if err != nil {
		t.Fatal(err)
	}
	if !tpl.FirecrackerReady || !tpl.Manifest.Kernel.FirecrackerReady {
		t.Fatalf("Load: FirecrackerReady=%v, manifest kernel %+v", tpl.FirecrackerReady, tpl.Manifest.Kernel)
	}

	// Without PCI the same kernel is not ready, and says why.
	if err := os.WriteFile(filepath.Join(kdir, configFile), []byte(strings.Replace(cfg, "CONFIG_PCI=y", "", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if tpl, err = Load(dir, "base"); err != nil {
		t.Fatal(err)
	}
	if tpl.FirecrackerReady || len(tpl.Manifest.Kernel.FirecrackerMissing) != 1 {
		t.Fatalf("Load without PCI: ready=%v missing=%q", tpl.FirecrackerReady, tpl.Manifest.Kernel.FirecrackerMissing)
	}
}
