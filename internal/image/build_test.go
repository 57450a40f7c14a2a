package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/testutil"
)

// TestBuildReal builds a real template once (debootstrap from the Debian mirror, the cloud
// kernel from apt) and then checks the incremental paths against it. Set
// WRENN_TEST_CACHE_DIR to a persistent directory so debootstrap runs once per machine rather
// than once per test run.
func TestBuildReal(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the real image build in -short mode")
	}
	testutil.RequireRoot(t, "the real image build runs debootstrap and sets file ownership")
	for _, tool := range []string{"debootstrap", "mkfs.ext4", "debugfs", "dpkg-deb", "apt-get", "apt-cache", "cp"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping the real image build: %s is not installed (see scripts/install-deps.sh)", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	envd := testEnvd(t)
	cache := os.Getenv("WRENN_TEST_CACHE_DIR")
	if cache == "" {
		cache = filepath.Join(t.TempDir(), "cache")
		t.Log("WRENN_TEST_CACHE_DIR unset: debootstrap runs from scratch into a temporary cache")
	}
	dir := filepath.Join(t.TempDir(), "wrenn")
	var progress bytes.Buffer
	opts := Options{Dir: dir, CacheDir: cache, EnvdPath: envd, Progress: io.MultiWriter(&progress, testLogWriter{t})}

	start := time.Now()
	tpl, err := Build(ctx, opts)
	if err != nil {
		t.Fatalf("first build: %v", err)
	}
	t.Logf("first build took %s (steps %s)", time.Since(start).Round(time.Millisecond), stepSummary(tpl.Steps))
	checkTemplate(t, tpl)

	t.Run("noop", func(t *testing.T) {
		start := time.Now()
		again, err := Build(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		if !again.UpToDate || took > 2*time.Second {
			t.Fatalf("second build: up to date = %v in %s, want a no-op under 2s", again.UpToDate, took)
		}
		if again.Manifest.RootFS.SHA256 != tpl.Manifest.RootFS.SHA256 {
			t.Error("no-op build changed the root filesystem")
		}
	})

	t.Run("changed-envd", func(t *testing.T) {
		// Trailing bytes keep the ELF valid and static but change its hash.
		data, _ := os.ReadFile(envd)
		changed := filepath.Join(t.TempDir(), "envd")
		if err := os.WriteFile(changed, append(data, []byte("wrenn-test")...), 0o755); err != nil {
			t.Fatal(err)
		}
		o := opts
		o.EnvdPath = changed
		start := time.Now()
		re, err := Build(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		t.Logf("rebuild with a new envd took %s (steps %s)", took.Round(time.Millisecond), stepSummary(re.Steps))
		if re.UpToDate || re.Manifest.EnvdSHA256 == tpl.Manifest.EnvdSHA256 {
			t.Fatal("a changed envd did not rebuild the template")
		}
		for _, s := range re.Steps {
			if (s.Name == "debootstrap" || s.Name == "kernel" || s.Name == "initramfs") && !s.Cached {
				t.Errorf("step %s re-ran for an envd change", s.Name)
			}
		}
		if took > 30*time.Second {
			t.Errorf("envd rebuild took %s, want < 30s", took)
		}
		if re.Manifest.Kernel.ID != tpl.Manifest.Kernel.ID || re.Initrd != tpl.Initrd {
			t.Error("kernel or initrd changed for an envd change")
		}
		checkTemplate(t, re)
	})

	t.Run("from-tar", func(t *testing.T) {
		o := opts
		o.Name = "fromtar"
		o.FromTar = tarFromTree(t, filepath.Join(cache, "debootstrap", mustNormalize(t, opts).Suite+"-"+debootstrapKey(mustNormalize(t, opts)), "rootfs"))
		start := time.Now()
		ft, err := Build(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("build from a container tar took %s", time.Since(start).Round(time.Millisecond))
		checkTemplate(t, ft)
		if !strings.HasPrefix(ft.Manifest.RootFS.Source, "tar sha256:") {
			t.Errorf("source = %q", ft.Manifest.RootFS.Source)
		}
	})

	t.Run("tar-without-tini", func(t *testing.T) {
		tree := t.TempDir()
		os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
		os.WriteFile(filepath.Join(tree, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644)
		o := opts
		o.Name = "notini"
		o.FromTar = tarFromTree(t, tree)
		_, err := Build(ctx, o)
		if err == nil || !strings.Contains(err.Error(), "tini") {
			t.Fatalf("err = %v, want a message about tini", err)
		}
		if _, err := Load(dir, "notini"); err == nil {
			t.Error("a failed build left a loadable template")
		}
		if left, _ := filepath.Glob(filepath.Join(dir, "images", ".notini*")); len(left) > 0 {
			t.Errorf("staging left behind: %v", left)
		}
	})

	if entries, _ := os.ReadDir(filepath.Join(dir, ".image-build")); len(entries) > 0 {
		t.Errorf("tmp/ not cleaned: %v", entries)
	}
}

// checkTemplate verifies a built template's files and the guest contents that matter.
func checkTemplate(t *testing.T, tpl *Template) {
	t.Helper()
	loaded, err := Load(filepath.Dir(filepath.Dir(tpl.Dir)), tpl.Name)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if loaded.RootFS != tpl.RootFS || loaded.Kernel != tpl.Kernel || loaded.Initrd != tpl.Initrd {
		t.Errorf("Load = %+v, Build returned %+v", loaded, tpl)
	}
	if !tpl.KernelPVH || !regexp.MustCompile(`^\d+\.\d+`).MatchString(tpl.KernelVersion) {
		t.Errorf("kernel %q pvh=%v", tpl.KernelVersion, tpl.KernelPVH)
	}
	if f, err := elf.Open(tpl.Kernel); err != nil {
		t.Errorf("vmlinux is not ELF: %v", err)
	} else {
		f.Close()
	}
	debugfs := func(req string) string {
		out, err := exec.Command("debugfs", "-R", req, tpl.RootFS).CombinedOutput()
		if err != nil {
			t.Fatalf("debugfs %s: %v\n%s", req, err, out)
		}
		return string(out)
	}
	for _, p := range []string{"/usr/local/bin/envd", "/usr/local/bin/wrenn-init", "/usr/bin/tini"} {
		if out := debugfs("stat " + p); !strings.Contains(out, "Type: regular") || !strings.Contains(out, "Mode:  0755") {
			t.Errorf("%s in the image:\n%s", p, out)
		}
	}
	if out := debugfs("cat /etc/passwd"); !strings.Contains(out, "\nuser:x:1000:1000:") {
		t.Errorf("/etc/passwd has no user 1000:\n%s", out)
	}
	if out := debugfs("stat /etc/sudoers.d/user"); !strings.Contains(out, "Mode:  0440") || !strings.Contains(out, "User:     0") {
		t.Errorf("/etc/sudoers.d/user:\n%s", out)
	}
	if out := debugfs("stat /home/user"); !strings.Contains(out, "User:  1000") {
		t.Errorf("/home/user:\n%s", out)
	}
	if out := debugfs("cat /etc/chrony/chrony.conf"); !strings.Contains(out, "refclock PHC /dev/ptp0") || strings.Contains(out, "pool ") {
		t.Errorf("chrony.conf:\n%s", out)
	}

	// The initramfs: init, a static busybox, the virtio modules in dependency order.
	raw, err := os.ReadFile(tpl.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	cpio, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string][]byte{}
	for _, e := range readNewc(t, cpio) {
		have[e.name] = e.data
	}
	for _, p := range []string{"init", "bin/busybox", "dev/console", "lib/modules/virtio_blk.ko", "lib/modules/virtio_net.ko", "lib/modules/virtio_mmio.ko"} {
		if _, ok := have[p]; !ok {
			t.Errorf("initramfs lacks %s", p)
		}
	}
	if !isStaticELF(have["bin/busybox"]) {
		t.Error("initramfs busybox is not static")
	}
	order := string(have["lib/modules/wrenn.order"])
	if i, j := strings.Index(order, "virtio_ring\n"), strings.Index(order, "virtio\n"); i < 0 || j < 0 || i > j {
		t.Errorf("module order wrong:\n%s", order)
	}
	if k := tpl.Manifest.Kernel; k.Ext4BuiltIn != !strings.Contains(order, "ext4") {
		t.Errorf("ext4 built in = %v but order is:\n%s", k.Ext4BuiltIn, order)
	}
}

// testEnvd returns a static envd: the one make test built, or a fresh build.
func testEnvd(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("WRENN_ENVD_BIN"); p != "" {
		return p
	}
	out := filepath.Join(t.TempDir(), "envd")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "github.com/wrennhq/wrenn/cmd/envd")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build envd: %v\n%s", err, b)
	}
	return out
}

func mustNormalize(t *testing.T, o Options) *Options {
	t.Helper()
	n, err := o.normalize()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// tarFromTree writes a `docker export`-like tar (relative names, numeric owners) of tree.
func tarFromTree(t *testing.T, tree string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "export.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.Walk(tree, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(tree, path)
		if rel == "." {
			return nil
		}
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = rel
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uname, hdr.Gname = "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			src, err := os.Open(path)
			if err != nil {
				return err
			}
			defer src.Close()
			if _, err := io.Copy(tw, src); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("tar %s: %v", tree, err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func stepSummary(steps []Step) string {
	var parts []string
	for _, s := range steps {
		c := ""
		if s.Cached {
			c = " cached"
		}
		parts = append(parts, fmt.Sprintf("%s %s%s", s.Name, s.Duration.Round(time.Millisecond), c))
	}
	return strings.Join(parts, ", ")
}

// testLogWriter sends progress lines to the test log (visible with -v or on failure).
type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
