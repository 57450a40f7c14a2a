package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/wrennhq/wrenn/internal/atomicfile"
)

// Kernel is what a content-addressed kernel directory (WRENN_DIR/kernels/{ID}) holds,
// recorded in its kernel.json. The directory is written once and never changed, so a kernel
// upgrade creates a new directory and existing templates and snapshots keep their bytes.
type Kernel struct {
	ID             string    `json:"id"`              // first 16 hex digits of SHA256
	SHA256         string    `json:"sha256"`          // of vmlinuz (the bzImage)
	Version        string    `json:"version"`         // uname -r, e.g. 6.1.0-56-cloud-amd64
	Package        string    `json:"package"`         // linux-image-6.1.0-56-cloud-amd64
	PackageVersion string    `json:"package_version"` // 6.1.192-2
	VmlinuxSHA256  string    `json:"vmlinux_sha256"`
	PVH            bool      `json:"pvh"` // vmlinux has the PVH entry note: boot it directly
	Ext4BuiltIn    bool      `json:"ext4_builtin"`
	VirtioBuiltIn  bool      `json:"virtio_blk_builtin"`
	Modules        []Module  `json:"modules"` // load order for the initramfs
	Created        time.Time `json:"created"`

	// FirecrackerReady: the kernel, with Wrenn's initramfs, can boot under Firecracker;
	// otherwise FirecrackerMissing says what it lacks (see firecrackerMissing). Derived from
	// the kernel's config, so readKernel and Load recompute it for kernels recorded before
	// these fields existed.
	FirecrackerReady   bool     `json:"firecracker_ready"`
	FirecrackerMissing []string `json:"firecracker_missing,omitempty"`
}

// setFirecracker records whether a kernel with this config and an ELF vmlinux (every kernel
// directory has one: unpackKernel fails without it) boots under Firecracker.
func (k *Kernel) setFirecracker(config []byte) {
	k.FirecrackerMissing = firecrackerMissing(config, true)
	k.FirecrackerReady = len(k.FirecrackerMissing) == 0
}

// kernelIDPattern is a kernel directory's name (content-addressed), checked before a
// template's manifest names a path with it.
var kernelIDPattern = regexp.MustCompile(`^[0-9a-f]{16}$`)

// fillFirecracker computes the Firecracker fields from the config in the kernel's
// directory when the record predates them (neither ready nor missing anything), so a
// current record costs no read of the config.
func (k *Kernel) fillFirecracker(kernelDir string) {
	if k.FirecrackerReady || len(k.FirecrackerMissing) > 0 {
		return
	}
	if config, err := os.ReadFile(filepath.Join(kernelDir, configFile)); err == nil {
		k.setFirecracker(config)
	}
}

// firecrackerMissing lists what a kernel lacks to boot a Wrenn template under Firecracker on
// x86_64 (firecracker-api.md §9), nil when nothing. config is the kernel's .config;
// elfVmlinux says whether an uncompressed ELF vmlinux exists (Firecracker loads that, through
// the PVH entry when the ELF has the note and the Linux 64-bit boot protocol otherwise).
//
// Modules (=m) are enough for the virtio drivers because Wrenn's initramfs loads them. Device
// discovery needs one of Firecracker's two mechanisms:
//   - ACPI (Firecracker >= 1.8): the DSDT lists each virtio-mmio device with _HID LNRO0005,
//     ACPI creates platform devices for them at boot, and virtio_mmio binds to them whenever
//     it is loaded. Needs CONFIG_ACPI=y and CONFIG_PCI=y (ACPI init needs PCI even though
//     Firecracker adds pci=off).
//   - virtio_mmio.device=<size>@<addr>:<irq> on the kernel command line (deprecated, still
//     appended): needs CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y and a built-in virtio_mmio. The
//     kernel applies module.param= boot options only to built-in code; for a loadable module
//     only modprobe reads them from /proc/cmdline, and the initramfs loads modules with
//     busybox insmod, which passes none.
func firecrackerMissing(config []byte, elfVmlinux bool) []string {
	var missing []string
	if !elfVmlinux {
		missing = append(missing, "uncompressed ELF vmlinux")
	}
	v := func(sym string) string { return configValue(config, sym) }
	for _, sym := range []string{"CONFIG_VIRTIO_MMIO", "CONFIG_VIRTIO_BLK", "CONFIG_VIRTIO_NET"} {
		if x := v(sym); x != "y" && x != "m" {
			missing = append(missing, sym+"=y or =m")
		}
	}
	for _, sym := range []string{"CONFIG_SERIAL_8250_CONSOLE", "CONFIG_KVM_GUEST", "CONFIG_BLK_DEV_INITRD"} {
		if v(sym) != "y" {
			missing = append(missing, sym+"=y")
		}
	}
	acpi := v("CONFIG_ACPI") == "y" && v("CONFIG_PCI") == "y"
	cmdline := v("CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES") == "y" && v("CONFIG_VIRTIO_MMIO") == "y"
	if !acpi && !cmdline {
		what := "virtio-mmio device discovery: CONFIG_ACPI=y and CONFIG_PCI=y, or CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y with CONFIG_VIRTIO_MMIO=y"
		if v("CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES") == "y" {
			what += " (a modular virtio_mmio never sees virtio_mmio.device=: the initramfs loads it with insmod)"
		}
		missing = append(missing, what)
	}
	return missing
}

// Files of a kernel directory.
const (
	kernelJSON   = "kernel.json"
	vmlinuzFile  = "vmlinuz"
	vmlinuxFile  = "vmlinux"
	configFile   = "config"
	byPackageDir = "by-package"
)

// validDebField restricts package names and versions read from apt before they become parts
// of file names and apt arguments.
func validDebField(s string) bool {
	return regexp.MustCompile(`^[A-Za-z0-9.+~:_-]{1,128}$`).MatchString(s)
}

// ensureKernel returns the kernel for this build, downloading and unpacking the Debian
// package only when no kernel directory exists for the resolved package version yet.
func ensureKernel(ctx context.Context, rep *reporter, o *Options) (*Kernel, error) {
	start := time.Now()
	kernelsDir := filepath.Join(o.Dir, "kernels")
	pkg, ver, deb, err := kernelPackage(ctx, o)
	if err != nil {
		return nil, err
	}
	index := filepath.Join(kernelsDir, byPackageDir, strings.ReplaceAll(pkg+"_"+ver, ":", "%3a"))
	if !o.Force {
		if id, err := os.ReadFile(index); err == nil {
			if k, err := readKernel(filepath.Join(kernelsDir, strings.TrimSpace(string(id)))); err == nil {
				rep.done("kernel", start, true, pkg+" "+ver+" → kernels/"+k.ID)
				return k, nil
			}
		}
	}
	if deb == "" {
		if deb, err = downloadDeb(ctx, rep, o, pkg, ver); err != nil {
			return nil, err
		}
	}
	k, cached, err := unpackKernel(ctx, o, deb, pkg, ver)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(index, []byte(k.ID+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("record kernel %s for %s %s: %w", k.ID, pkg, ver, err)
	}
	rep.done("kernel", start, cached, pkg+" "+ver+" → kernels/"+k.ID)
	return k, nil
}

// kernelPackage resolves which versioned kernel package to use. With KernelDeb the file
// says; otherwise the host's apt resolves the meta package (linux-image-cloud-amd64) to the
// versioned package it depends on.
func kernelPackage(ctx context.Context, o *Options) (pkg, ver, deb string, err error) {
	if o.KernelDeb != "" {
		out, err := runCmd(ctx, nil, runOpts{}, "dpkg-deb", "-f", o.KernelDeb, "Package", "Version")
		if err != nil {
			return "", "", "", fmt.Errorf("read kernel package %s: %w", o.KernelDeb, err)
		}
		f := debFields(out)
		pkg, ver = f["Package"], f["Version"]
		if !validDebField(pkg) || !validDebField(ver) {
			return "", "", "", fmt.Errorf("kernel package %s has no usable Package/Version fields", o.KernelDeb)
		}
		return pkg, ver, o.KernelDeb, nil
	}
	// apt-cache needs about a second to load its package cache; remember the answer until
	// apt's lists or sources change (apt-get update, a new sources entry).
	memo := filepath.Join(o.Dir, "kernels", byPackageDir, "resolve-"+o.KernelPackage+".json")
	stamp := aptStamp()
	var resolved struct{ Stamp, Package, Version string }
	if data, err := os.ReadFile(memo); err == nil && !o.Force && stamp != "" {
		if json.Unmarshal(data, &resolved) == nil && resolved.Stamp == stamp &&
			validDebField(resolved.Package) && validDebField(resolved.Version) {
			return resolved.Package, resolved.Version, "", nil
		}
	}
	out, err := runCmd(ctx, nil, runOpts{}, "apt-cache", "show", "--no-all-versions", o.KernelPackage)
	if err != nil {
		return "", "", "", fmt.Errorf("resolve kernel package %s with apt (run apt-get update?): %w", o.KernelPackage, err)
	}
	f := debFields(out)
	if regexp.MustCompile(`^linux-image-[0-9]`).MatchString(o.KernelPackage) {
		pkg, ver = o.KernelPackage, f["Version"]
	} else {
		m := regexp.MustCompile(`(linux-image-[0-9][^ ,()]*) \(= ([^ )]+)\)`).FindStringSubmatch(f["Depends"])
		if m == nil {
			return "", "", "", fmt.Errorf("apt: %s does not depend on a versioned linux-image package (Depends: %q)", o.KernelPackage, f["Depends"])
		}
		pkg, ver = m[1], m[2]
	}
	if !validDebField(pkg) || !validDebField(ver) {
		return "", "", "", fmt.Errorf("apt resolved %s to an unusable package %q %q", o.KernelPackage, pkg, ver)
	}
	if stamp != "" {
		resolved.Stamp, resolved.Package, resolved.Version = stamp, pkg, ver
		if data, err := json.Marshal(resolved); err == nil {
			_ = writeFileAtomic(memo, data, 0o644) // only a speed-up
		}
	}
	return pkg, ver, "", nil
}

// aptStamp fingerprints what decides apt's candidate versions: the package lists and the
// source and pinning configuration (names, sizes, mtimes). "" when there are no lists.
func aptStamp() string {
	var b strings.Builder
	for _, glob := range []string{
		"/var/lib/apt/lists/*", "/etc/apt/sources.list", "/etc/apt/sources.list.d/*",
		"/etc/apt/preferences", "/etc/apt/preferences.d/*",
	} {
		matches, _ := filepath.Glob(glob)
		for _, m := range matches {
			if fi, err := os.Stat(m); err == nil {
				fmt.Fprintf(&b, "%s %d %d\n", m, fi.Size(), fi.ModTime().UnixNano())
			}
		}
	}
	if !strings.Contains(b.String(), "/var/lib/apt/lists/") {
		return ""
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:])
}

// debFields parses "Key: value" control fields (the first stanza only).
func debFields(out []byte) map[string]string {
	f := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" && len(f) > 0 {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, " ") {
			f[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return f
}

// downloadDeb fetches PKG=VER with apt-get into the download cache, where later builds
// (even into another WRENN_DIR) find it.
func downloadDeb(ctx context.Context, rep *reporter, o *Options, pkg, ver string) (string, error) {
	debs := filepath.Join(o.CacheDir, "debs")
	final := filepath.Join(debs, strings.ReplaceAll(pkg+"_"+ver, ":", "%3a")+".deb")
	if _, err := os.Stat(final); err == nil {
		return final, nil
	}
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return "", fmt.Errorf("create download cache: %w", err)
	}
	tmp, err := os.MkdirTemp(debs, ".download-")
	if err != nil {
		return "", fmt.Errorf("create download dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	rep.printf("kernel: downloading %s %s with apt-get", pkg, ver)
	// apt's _apt sandbox user cannot write into a root-only temp dir; download as root.
	_, err = runCmd(ctx, rep, runOpts{dir: tmp, heartbeat: 10 * time.Second, step: "kernel download"},
		"apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", pkg+"="+ver)
	if err != nil {
		return "", fmt.Errorf("download %s=%s (run apt-get update?): %w", pkg, ver, err)
	}
	got, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(got) != 1 {
		return "", fmt.Errorf("apt-get download %s=%s produced %d .deb files", pkg, ver, len(got))
	}
	if err := os.Rename(got[0], final); err != nil {
		return "", fmt.Errorf("store %s: %w", final, err)
	}
	return final, nil
}

// unpackKernel extracts a kernel package and stores it under kernels/{id}, unless that
// directory already exists (same bytes, possibly from another package name).
func unpackKernel(ctx context.Context, o *Options, deb, pkg, ver string) (*Kernel, bool, error) {
	tmp, err := os.MkdirTemp(o.workDir(), "kernel-")
	if err != nil {
		return nil, false, fmt.Errorf("create kernel staging dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	x := filepath.Join(tmp, "x")
	if _, err := runCmd(ctx, nil, runOpts{}, "dpkg-deb", "-x", deb, x); err != nil {
		return nil, false, fmt.Errorf("unpack %s: %w", deb, err)
	}
	vmlinuzs, _ := filepath.Glob(filepath.Join(x, "boot", "vmlinuz-*"))
	if len(vmlinuzs) != 1 {
		return nil, false, fmt.Errorf("%s holds %d boot/vmlinuz-* files, want 1", filepath.Base(deb), len(vmlinuzs))
	}
	version := strings.TrimPrefix(filepath.Base(vmlinuzs[0]), "vmlinuz-")
	bz, err := os.ReadFile(vmlinuzs[0])
	if err != nil {
		return nil, false, fmt.Errorf("read vmlinuz: %w", err)
	}
	sum := sha256.Sum256(bz)
	k := &Kernel{SHA256: hex.EncodeToString(sum[:]), Version: version, Package: pkg, PackageVersion: ver}
	k.ID = k.SHA256[:16]
	final := filepath.Join(o.Dir, "kernels", k.ID)
	if existing, err := readKernel(final); err == nil {
		return existing, true, nil // content-addressed: never rewrite an existing kernel dir
	}

	config, err := os.ReadFile(filepath.Join(x, "boot", "config-"+version))
	if err != nil {
		return nil, false, fmt.Errorf("read kernel config: %w", err)
	}
	vmlinux, pvh, err := extractVmlinux(ctx, bz)
	if err != nil {
		return nil, false, fmt.Errorf("extract vmlinux from %s: %w", filepath.Base(vmlinuzs[0]), err)
	}
	vsum := sha256.Sum256(vmlinux)
	k.VmlinuxSHA256, k.PVH = hex.EncodeToString(vsum[:]), pvh
	k.Ext4BuiltIn = configValue(config, "CONFIG_EXT4_FS") == "y"
	k.VirtioBuiltIn = configValue(config, "CONFIG_VIRTIO_BLK") == "y"
	k.setFirecracker(config)

	modDir := filepath.Join(x, "lib", "modules", version)
	if _, err := os.Stat(modDir); errors.Is(err, os.ErrNotExist) {
		modDir = filepath.Join(x, "usr", "lib", "modules", version) // merged-/usr packages
	}
	tree, err := readModuleTree(modDir)
	if err != nil {
		return nil, false, err
	}
	mods, modData, err := tree.resolve(ctx, wantedModules())
	if err != nil {
		return nil, false, fmt.Errorf("kernel %s: %w", version, err)
	}
	k.Modules, k.Created = mods, time.Now().UTC()

	stage := filepath.Join(tmp, "out")
	if err := os.MkdirAll(filepath.Join(stage, "modules"), 0o755); err != nil {
		return nil, false, fmt.Errorf("create kernel dir: %w", err)
	}
	files := map[string][]byte{vmlinuzFile: bz, vmlinuxFile: vmlinux, configFile: config}
	for _, m := range mods {
		files[m.File] = modData[m.Name]
	}
	meta, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		return nil, false, err
	}
	files[kernelJSON] = append(meta, '\n')
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(stage, name), data, 0o644); err != nil {
			return nil, false, fmt.Errorf("write kernel file %s: %w", name, err)
		}
	}
	if err := syncDir(stage); err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return nil, false, fmt.Errorf("create kernels dir: %w", err)
	}
	if err := os.Rename(stage, final); err != nil {
		return nil, false, fmt.Errorf("publish kernel %s: %w", k.ID, err)
	}
	return k, false, nil
}

// readKernel loads and sanity-checks a kernel directory.
func readKernel(dir string) (*Kernel, error) {
	data, err := os.ReadFile(filepath.Join(dir, kernelJSON))
	if err != nil {
		return nil, err
	}
	var k Kernel
	if err := json.Unmarshal(data, &k); err != nil {
		return nil, fmt.Errorf("parse %s: %w", filepath.Join(dir, kernelJSON), err)
	}
	if k.ID == "" || filepath.Base(dir) != k.ID {
		return nil, fmt.Errorf("%s does not describe kernel %s", kernelJSON, filepath.Base(dir))
	}
	for _, f := range []string{vmlinuzFile, vmlinuxFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return nil, fmt.Errorf("kernel %s is incomplete: %w", k.ID, err)
		}
	}
	k.fillFirecracker(dir)
	return &k, nil
}

// syncDir fsyncs every regular file directly in dir (and the dir), so a rename that
// publishes it never exposes empty files after a crash.
func syncDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if e.IsDir() {
			if err := syncDir(p); err != nil {
				return err
			}
			continue
		}
		if err := syncPath(p); err != nil {
			return err
		}
	}
	return syncPath(dir)
}

func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", p, err)
	}
	return nil
}

// writeFileAtomic creates path's directory and replaces path atomically.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(path, data, perm)
}
