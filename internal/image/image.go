// Package image builds Wrenn's guest images: a Debian cloud kernel (with the uncompressed
// vmlinux for PVH boot), an initramfs Wrenn generates itself, and an ext4 root filesystem
// made by debootstrap or from a container export tar, with envd and wrenn-init injected.
// Everything lands under WRENN_DIR, cached and keyed by its inputs, and published atomically
// so a half-built template is never visible.
package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/wrennhq/wrenn/internal/atomicfile"
	"github.com/wrennhq/wrenn/internal/ident"
)

// builderVersion is part of every cache key: bump it when the builder changes what it
// produces from the same inputs (package list, injected files, post-processing).
const builderVersion = "1"

// DefaultPackages are installed by debootstrap on top of the minbase variant: what the E2B
// SDKs and typical agent code expect (python, git, curl, ps), plus what wrenn-init needs
// (tini, chrony) and sudo for the unprivileged user. netbase brings /etc/protocols and
// /etc/services, without which getprotobyname("tcp") fails in some tools.
func DefaultPackages() []string {
	return []string{
		"bash", "coreutils", "python3", "python-is-python3", "git", "curl", "ca-certificates",
		"sudo", "iproute2", "tini", "chrony", "socat", "procps", "netbase",
	}
}

// Options control Build. Zero values get the documented defaults.
type Options struct {
	Dir      string // WRENN_DIR (default /var/lib/wrenn)
	CacheDir string // debootstrap and download cache (default Dir/cache)
	Name     string // template name (default "base"), ^[a-z0-9][a-z0-9_-]{0,62}$
	EnvdPath string // static envd binary to inject as /usr/local/bin/envd (required)

	Suite    string   // Debian suite for debootstrap (default bookworm)
	Mirror   string   // Debian mirror (default http://deb.debian.org/debian)
	Packages []string // debootstrap --include list (default DefaultPackages())
	FromTar  string   // a `docker export` tar: root filesystem from it instead of debootstrap

	KernelPackage string // apt package resolving to the kernel (default linux-image-cloud-amd64)
	KernelDeb     string // use this linux-image .deb instead of asking apt

	SizeBytes int64     // ext4 size; 0 = content*1.5 + 1 GiB
	Progress  io.Writer // human progress lines; nil = silent
	Force     bool      // rebuild even when the inputs did not change (kernel dirs stay immutable)
}

// Template is a built guest image, ready for a VMM: absolute paths to its files.
type Template struct {
	Name          string
	Dir           string // WRENN_DIR/images/{name}
	RootFS        string // ext4 disk image
	Kernel        string // uncompressed vmlinux (PVH boot)
	KernelBzImage string // the original vmlinuz, for VMMs or kernels without PVH
	Initrd        string
	KernelVersion string
	KernelPVH     bool
	// FirecrackerReady: the kernel can boot this template under Firecracker;
	// Manifest.Kernel.FirecrackerMissing says why not.
	FirecrackerReady bool
	Manifest         Manifest

	UpToDate bool   // Build found everything current and did nothing
	Steps    []Step // what Build did, with timings (empty from Load)
}

// Manifest is images/{name}/template.json. Paths are relative to WRENN_DIR.
type Manifest struct {
	Name           string    `json:"name"`
	Kernel         Kernel    `json:"kernel"`
	Vmlinux        string    `json:"vmlinux"`
	Vmlinuz        string    `json:"vmlinuz"`
	Initrd         Initrd    `json:"initrd"`
	RootFS         RootFS    `json:"rootfs"`
	EnvdSHA256     string    `json:"envd_sha256"`
	InputsHash     string    `json:"inputs_hash"`
	BuilderVersion string    `json:"builder_version"`
	Created        time.Time `json:"created"`
}

// RootFS describes the template's disk.
type RootFS struct {
	Path      string `json:"path"`
	SHA256    string `json:"sha256"`
	Size      int64  `json:"size"`      // apparent size (the file is sparse)
	Allocated int64  `json:"allocated"` // bytes actually on disk
	Source    string `json:"source"`    // "debootstrap bookworm http://…" or "tar sha256:…"
}

const manifestFile = "template.json"

// normalize validates the options (the name first, before any path is built) and fills in
// defaults.
func (o Options) normalize() (*Options, error) {
	if o.Name == "" {
		o.Name = "base"
	}
	if err := ident.CheckTemplate(o.Name); err != nil {
		return nil, err
	}
	if o.Dir == "" {
		o.Dir = "/var/lib/wrenn"
	}
	if o.CacheDir == "" {
		o.CacheDir = filepath.Join(o.Dir, "cache")
	}
	var err error
	if o.Dir, err = filepath.Abs(o.Dir); err != nil {
		return nil, err
	}
	if o.CacheDir, err = filepath.Abs(o.CacheDir); err != nil {
		return nil, err
	}
	if o.Suite == "" {
		o.Suite = "bookworm"
	}
	if !regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`).MatchString(o.Suite) {
		return nil, fmt.Errorf("invalid Debian suite %q", o.Suite)
	}
	if o.Mirror == "" {
		o.Mirror = "http://deb.debian.org/debian"
	}
	if u, err := url.Parse(o.Mirror); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsAny(o.Mirror, " \t\n") {
		return nil, fmt.Errorf("invalid mirror %q: want an http(s) URL", o.Mirror)
	}
	if len(o.Packages) == 0 {
		o.Packages = DefaultPackages()
	}
	for _, p := range o.Packages {
		if !regexp.MustCompile(`^[a-z0-9][a-z0-9.+-]{0,127}$`).MatchString(p) {
			return nil, fmt.Errorf("invalid package name %q", p)
		}
	}
	if o.KernelPackage == "" {
		o.KernelPackage = "linux-image-cloud-amd64"
	}
	if !validDebField(o.KernelPackage) || strings.HasPrefix(o.KernelPackage, "-") {
		return nil, fmt.Errorf("invalid kernel package %q", o.KernelPackage)
	}
	if o.EnvdPath == "" {
		return nil, errors.New("no envd binary given (build it with `make envd`)")
	}
	return &o, nil
}

// workDir holds a build's scratch files (kernel unpacking, the staging tree). It lives in
// WRENN_DIR, is private (0700: the staging tree holds the guest's setuid binaries) and is
// emptied at the start and end of every build.
func (o *Options) workDir() string { return filepath.Join(o.Dir, ".image-build") }

// Build makes (or refreshes) a template. With identical inputs it is a quick no-op; a new
// envd only re-injects and re-packs; debootstrap reruns only when the suite, mirror or
// package list change (or with Force).
func Build(ctx context.Context, opts Options) (*Template, error) {
	o, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("image build needs root (debootstrap, file ownership in the guest filesystem)")
	}
	rep := newReporter(o.Progress, o.Name)
	start := time.Now()
	for _, d := range []string{o.Dir, filepath.Join(o.Dir, "kernels"), filepath.Join(o.Dir, "images"), o.CacheDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	unlock, err := lockDir(ctx, rep, o.Dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if o.CacheDir != o.Dir {
		unlockCache, err := lockDir(ctx, rep, o.CacheDir)
		if err != nil {
			return nil, err
		}
		defer unlockCache()
	}
	// Whatever an interrupted build left in the work dir is garbage now that we hold the lock.
	tmpDir := o.workDir()
	if err := os.RemoveAll(tmpDir); err != nil {
		return nil, fmt.Errorf("clear %s: %w", tmpDir, err)
	}
	if err := os.MkdirAll(tmpDir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", tmpDir, err)
	}
	defer os.RemoveAll(tmpDir)
	stale, _ := filepath.Glob(filepath.Join(o.Dir, "images", ".*.new-*"))
	for _, d := range stale { // half-written templates of interrupted builds
		_ = os.RemoveAll(d)
	}

	envd, err := os.ReadFile(o.EnvdPath)
	if err != nil {
		return nil, fmt.Errorf("read envd: %w", err)
	}
	if !isStaticELF(envd) {
		return nil, fmt.Errorf("%s is not a static ELF binary (build envd with CGO_ENABLED=0: make envd)", o.EnvdPath)
	}
	envdSum := sha256.Sum256(envd)

	k, err := ensureKernel(ctx, rep, o)
	if err != nil {
		return nil, err
	}
	initrd, err := ensureInitrd(ctx, rep, o, k)
	if err != nil {
		return nil, err
	}
	src, err := sourceID(ctx, rep, o)
	if err != nil {
		return nil, err
	}
	guestFiles, err := guestFiles()
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	fmt.Fprintf(h, "wrenn-template %s\nname %s\nkernel %s\ninitrd %s\nsource %s\nenvd %x\nsize %d\n",
		builderVersion, o.Name, k.ID, initrd.ID, src, envdSum, o.SizeBytes)
	for _, f := range guestFiles {
		s := sha256.Sum256(f.data)
		fmt.Fprintf(h, "file %s %o %x\n", f.path, f.mode, s)
	}
	inputs := hex.EncodeToString(h.Sum(nil))

	final := filepath.Join(o.Dir, "images", o.Name)
	if !o.Force {
		if t, err := Load(o.Dir, o.Name); err == nil && t.Manifest.InputsHash == inputs {
			rep.printf("up to date (%s)", time.Since(start).Round(time.Millisecond))
			t.UpToDate, t.Steps = true, rep.steps
			return t, nil
		}
	}

	m := Manifest{
		Name: o.Name, Kernel: *k, Initrd: *initrd,
		Vmlinux:    filepath.Join("kernels", k.ID, vmlinuxFile),
		Vmlinuz:    filepath.Join("kernels", k.ID, vmlinuzFile),
		EnvdSHA256: hex.EncodeToString(envdSum[:]), InputsHash: inputs, BuilderVersion: builderVersion,
	}
	newDir, err := os.MkdirTemp(filepath.Join(o.Dir, "images"), "."+o.Name+".new-")
	if err != nil {
		return nil, fmt.Errorf("create template staging dir: %w", err)
	}
	defer os.RemoveAll(newDir) // after a successful swap this holds the previous version
	if err := os.Chmod(newDir, 0o755); err != nil {
		return nil, err
	}
	rootfs, err := buildRootFS(ctx, rep, o, envd, guestFiles, filepath.Join(newDir, "rootfs.ext4"))
	if err != nil {
		return nil, err
	}
	rootfs.Source = src
	rootfs.Path = filepath.Join("images", o.Name, "rootfs.ext4")
	m.RootFS = *rootfs
	m.Created = time.Now().UTC()
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(newDir, manifestFile), append(data, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("write manifest: %w", err)
	}
	if err := syncDir(newDir); err != nil {
		return nil, err
	}
	if err := atomicfile.ReplaceDir(newDir, final); err != nil {
		return nil, fmt.Errorf("publish template %s: %w", o.Name, err)
	}
	t, err := Load(o.Dir, o.Name)
	if err != nil {
		return nil, err
	}
	rep.printf("built in %s: %s (%d MiB on disk)", time.Since(start).Round(100*time.Millisecond), t.RootFS, m.RootFS.Allocated>>20)
	t.Steps = rep.steps
	return t, nil
}

// sourceID names where the root filesystem comes from, for the inputs hash.
func sourceID(ctx context.Context, rep *reporter, o *Options) (string, error) {
	if o.FromTar == "" {
		return fmt.Sprintf("debootstrap %s %s %s", o.Suite, o.Mirror, debootstrapKey(o)), nil
	}
	start := time.Now()
	f, err := os.Open(o.FromTar)
	if err != nil {
		return "", fmt.Errorf("open container tar: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, ctxReader{ctx, f}); err != nil {
		return "", fmt.Errorf("hash container tar %s: %w", o.FromTar, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	rep.done("hash tar", start, false, sum[:16])
	return "tar sha256:" + sum, nil
}

// Load reads a built template's manifest and checks that its files exist.
// ErrNotBuilt: Load found no template of that name (errors.Is).
var ErrNotBuilt = errors.New("no such template")

type notBuiltError struct{ name string }

func (e notBuiltError) Error() string {
	return fmt.Sprintf("template %s not built; run wrenn image build", e.name)
}

func (e notBuiltError) Is(target error) bool { return target == ErrNotBuilt }

func Load(dir, name string) (*Template, error) {
	if err := ident.CheckTemplate(name); err != nil {
		return nil, err
	}
	if dir == "" {
		dir = "/var/lib/wrenn"
	}
	tdir := filepath.Join(dir, "images", name)
	data, err := os.ReadFile(filepath.Join(tdir, manifestFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, notBuiltError{name}
	}
	if err != nil {
		return nil, fmt.Errorf("read template %s: %w", name, err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("parse %s: %w", filepath.Join(tdir, manifestFile), err)
	}
	if m.Name != name {
		return nil, fmt.Errorf("template %s: manifest names %q", name, m.Name)
	}
	if kernelIDPattern.MatchString(m.Kernel.ID) {
		m.Kernel.fillFirecracker(filepath.Join(dir, "kernels", m.Kernel.ID))
	}
	t := &Template{
		Name: name, Dir: tdir, Manifest: m,
		RootFS:        filepath.Join(dir, m.RootFS.Path),
		Kernel:        filepath.Join(dir, m.Vmlinux),
		KernelBzImage: filepath.Join(dir, m.Vmlinuz),
		Initrd:        filepath.Join(dir, m.Initrd.Path),
		KernelVersion: m.Kernel.Version,
		KernelPVH:     m.Kernel.PVH,

		FirecrackerReady: m.Kernel.FirecrackerReady,
	}
	for _, f := range []struct {
		what, path string
		size       int64
	}{{"root filesystem", t.RootFS, m.RootFS.Size}, {"kernel", t.Kernel, 0}, {"initrd", t.Initrd, m.Initrd.Size}} {
		st, err := os.Stat(f.path)
		if err != nil {
			return nil, fmt.Errorf("template %s is incomplete (%s missing: %v); run wrenn image build --force", name, f.what, err)
		}
		if f.size > 0 && st.Size() != f.size {
			return nil, fmt.Errorf("template %s: %s %s is %d bytes, the manifest says %d; run wrenn image build --force", name, f.what, f.path, st.Size(), f.size)
		}
	}
	return t, nil
}

// lockDir takes an exclusive flock on dir/.lock so concurrent builds (two test packages,
// a CLI run during make test) wait for each other instead of corrupting shared caches.
func lockDir(ctx context.Context, rep *reporter, dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open build lock in %s: %w", dir, err)
	}
	waiting := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", dir, err)
		}
		if !waiting {
			rep.printf("waiting for another image build using %s", dir)
			waiting = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the build lock in %s: %w", dir, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ctxReader stops long reads (hashing a multi-GB tar or disk) when the context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
