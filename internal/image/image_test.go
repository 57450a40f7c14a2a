package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

// A bad name must be refused before any directory is created or file read.
func TestBuildRejectsBadNameBeforeTouchingPaths(t *testing.T) {
	for _, name := range []string{"../x", "A", strings.Repeat("n", 64), "a/b"} {
		dir := filepath.Join(t.TempDir(), "wrenn")
		_, err := Build(context.Background(), Options{Dir: dir, Name: name, EnvdPath: "/nonexistent/envd"})
		if err == nil || !strings.Contains(err.Error(), "invalid template name") {
			t.Errorf("Build(name=%q) err = %v, want invalid template name", name, err)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("Build(name=%q) created %s", name, dir)
		}
		if _, err := Load(dir, name); err == nil || !strings.Contains(err.Error(), "invalid template name") {
			t.Errorf("Load(name=%q) err = %v", name, err)
		}
	}
	// The empty name means the default, not an error.
	o, err := Options{EnvdPath: "/x"}.normalize()
	if err != nil || o.Name != "base" || o.Dir != "/var/lib/wrenn" || o.Suite != "bookworm" {
		t.Fatalf("defaults: %+v, %v", o, err)
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, o := range []Options{
		{EnvdPath: "/x", Mirror: "file:///etc"},
		{EnvdPath: "/x", Mirror: "http://deb.debian.org/debian --foreign"},
		{EnvdPath: "/x", Suite: "--help"},
		{EnvdPath: "/x", Packages: []string{"bash", "-oDebug=1"}},
		{EnvdPath: "/x", KernelPackage: "-o=x"},
		{},
	} {
		if _, err := o.normalize(); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
}

func TestLoadNotBuilt(t *testing.T) {
	_, err := Load(t.TempDir(), "base")
	if err == nil || err.Error() != "template base not built; run wrenn image build" {
		t.Fatalf("err = %v", err)
	}
}

// fakeGuestTree makes the smallest tree inject accepts.
func fakeGuestTree(t *testing.T, withTini bool) string {
	t.Helper()
	tree := t.TempDir()
	files := map[string]string{
		"usr/bin/bash":     "bash",
		"usr/bin/dash":     "dash",
		"etc/passwd":       "root:x:0:0:root:/root:/bin/bash\n_chrony:x:100:65534::/nonexistent:/usr/sbin/nologin",
		"etc/group":        "root:x:0:\nshadow:x:42:\n",
		"etc/shadow":       "root:*:19000:0:99999:7:::\n",
		"etc/skel/.bashrc": "# bashrc\n",
	}
	if withTini {
		files["usr/bin/tini"] = "tini"
	}
	for p, body := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(tree, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tree, p), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(tree, "etc/shadow"), 0o640)
	os.Symlink("usr/bin", filepath.Join(tree, "bin"))
	os.Symlink("dash", filepath.Join(tree, "usr/bin/sh"))
	return tree
}

func TestInject(t *testing.T) {
	files, err := guestFiles()
	if err != nil {
		t.Fatal(err)
	}
	if err := inject(fakeGuestTree(t, false), []byte("envd"), files); err == nil || !strings.Contains(err.Error(), "tini") {
		t.Fatalf("tree without tini: err = %v", err)
	}

	tree := fakeGuestTree(t, true)
	if err := inject(tree, []byte("envd"), files); err != nil {
		t.Fatal(err)
	}
	passwd, _ := os.ReadFile(filepath.Join(tree, "etc/passwd"))
	if !strings.Contains(string(passwd), "\nuser:x:1000:1000:Sandbox user:/home/user:/bin/bash\n") {
		t.Errorf("passwd:\n%s", passwd)
	}
	group, _ := os.ReadFile(filepath.Join(tree, "etc/group"))
	if !strings.Contains(string(group), "user:x:1000:\n") {
		t.Errorf("group:\n%s", group)
	}
	shadow, _ := os.ReadFile(filepath.Join(tree, "etc/shadow"))
	if !strings.HasPrefix(strings.Split(string(shadow), "\n")[1], "user:*:") {
		t.Errorf("shadow:\n%s", shadow)
	}
	if fi, _ := os.Stat(filepath.Join(tree, "etc/shadow")); fi.Mode().Perm() != 0o640 {
		t.Errorf("shadow mode changed to %v", fi.Mode())
	}
	sudoers, _ := os.ReadFile(filepath.Join(tree, "etc/sudoers.d/user"))
	if string(sudoers) != "user ALL=(ALL:ALL) NOPASSWD:ALL\n" {
		t.Errorf("sudoers = %q", sudoers)
	}
	for p, mode := range map[string]fs.FileMode{
		"etc/sudoers.d/user": 0o440, "usr/local/bin/envd": 0o755, "usr/local/bin/wrenn-init": 0o755,
		"etc/chrony/chrony.conf": 0o644, "home/user/.bashrc": 0o644,
		"tmp": fs.ModeDir | fs.ModeSticky | 0o777,
	} {
		fi, err := os.Stat(filepath.Join(tree, p))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != mode {
			t.Errorf("%s mode %v, want %v", p, fi.Mode(), mode)
		}
	}
	if os.Geteuid() == 0 {
		fi, _ := os.Stat(filepath.Join(tree, "home/user"))
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1000 || st.Gid != 1000 {
			t.Errorf("home owned by %d:%d", st.Uid, st.Gid)
		}
	}
	// Injecting twice (a rebuild over an image that already has the user) changes nothing.
	before, _ := os.ReadFile(filepath.Join(tree, "etc/passwd"))
	if err := inject(tree, []byte("envd2"), files); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(tree, "etc/passwd"))
	if string(before) != string(after) {
		t.Errorf("second inject changed passwd:\n%s", after)
	}
}

// A hostile tree whose /usr/local/bin points outside must not receive envd.
func TestInjectContained(t *testing.T) {
	outside := t.TempDir()
	tree := fakeGuestTree(t, true)
	os.MkdirAll(filepath.Join(tree, "usr/local"), 0o755)
	os.Symlink(outside, filepath.Join(tree, "usr/local/bin"))
	files, _ := guestFiles()
	if err := inject(tree, []byte("envd"), files); err == nil {
		t.Fatal("inject followed an absolute symlink out of the tree")
	}
	emptyDir(t, outside)
}

func TestKernelArgs(t *testing.T) {
	args, err := GuestParams{
		IP: netip.MustParsePrefix("169.254.0.21/30"), Gateway: netip.MustParseAddr("169.254.0.22"),
		Hostname: "sb1", DNS: []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("1.1.1.1")},
	}.KernelArgs()
	want := []string{"wrenn.ip=169.254.0.21/30", "wrenn.gw=169.254.0.22", "wrenn.hostname=sb1", "wrenn.dns=10.0.0.2,1.1.1.1"}
	if err != nil || !reflect.DeepEqual(args, want) {
		t.Fatalf("KernelArgs = %q, %v", args, err)
	}
	if args, err := (GuestParams{}).KernelArgs(); err != nil || len(args) != 0 {
		t.Fatalf("empty params = %q, %v", args, err)
	}
	if _, err := (GuestParams{Hostname: "a b"}).KernelArgs(); err == nil {
		t.Error("bad hostname accepted")
	}
	if _, err := (GuestParams{Gateway: netip.MustParseAddr("10.0.0.1")}).KernelArgs(); err == nil {
		t.Error("gateway without IP accepted")
	}
}

func TestSHA256Sparse(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sparse.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Data, a hole, data, and a trailing hole (like a fresh ext4 image).
	f.WriteAt([]byte("superblock"), 1024)
	f.WriteAt(bytes.Repeat([]byte("inode table "), 100000), 5<<20)
	f.Truncate(64 << 20)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	got, err := sha256Sparse(context.Background(), f, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if got != hex.EncodeToString(want[:]) {
		t.Fatalf("sha256Sparse = %s, want %x", got, want)
	}
}
