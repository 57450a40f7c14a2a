package image

import (
	"archive/tar"
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tarEntry describes one member of a test archive.
type tarEntry struct {
	name, link string
	typ        byte
	mode       int64
	uid, gid   int
	body       string
}

func writeTestTar(t *testing.T, entries []tarEntry) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		hdr := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: mode, Uid: e.uid, Gid: e.gid,
			Size: int64(len(e.body)), ModTime: time.Unix(1700000000, 0)}
		if e.typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "export.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// emptyDir fails the test when anything was written into dir.
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Fatalf("something escaped into %s: %v", dir, entries)
	}
}

func TestExtractTarRefusesEscapes(t *testing.T) {
	outside := t.TempDir() // a stand-in for the host's /etc
	rel, err := filepath.Rel("/", outside)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		entries []tarEntry
	}{
		{"dotdot", []tarEntry{{name: "../../" + rel + "/x", typ: tar.TypeReg, body: "pwned"}}},
		{"absolute", []tarEntry{{name: outside + "/x", typ: tar.TypeReg, body: "pwned"}}},
		{"absolute-symlink-dir", []tarEntry{
			{name: "evil", typ: tar.TypeSymlink, link: outside},
			{name: "evil/x", typ: tar.TypeReg, body: "pwned"},
		}},
		{"relative-symlink-escape", []tarEntry{
			{name: "up", typ: tar.TypeSymlink, link: strings.Repeat("../", 12) + rel},
			{name: "up/x", typ: tar.TypeReg, body: "pwned"},
		}},
		{"symlink-then-overwrite-file", []tarEntry{
			{name: "passwd", typ: tar.TypeSymlink, link: outside + "/passwd"},
			{name: "a/b/../../passwd/x", typ: tar.TypeReg, body: "pwned"},
		}},
		{"hardlink-outside", []tarEntry{{name: "h", typ: tar.TypeLink, link: "../../" + rel + "/x"}}},
		{"hardlink-absolute", []tarEntry{{name: "h", typ: tar.TypeLink, link: "/etc/passwd"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tree := t.TempDir()
			_, err := extractTar(context.Background(), writeTestTar(t, tc.entries), tree, nil)
			if err == nil {
				t.Fatal("archive accepted")
			}
			t.Logf("refused: %v", err)
			emptyDir(t, outside)
		})
	}
}

func TestExtractTarContents(t *testing.T) {
	root := os.Geteuid() == 0
	tree := t.TempDir()
	n, err := extractTar(context.Background(), writeTestTar(t, []tarEntry{
		{name: "./", typ: tar.TypeDir, mode: 0o755},
		{name: "usr/", typ: tar.TypeDir, mode: 0o755},
		{name: "usr/bin/", typ: tar.TypeDir, mode: 0o755},
		{name: "usr/bin/sudo", typ: tar.TypeReg, mode: 0o4755, body: "suid"},
		{name: "usr/bin/tini", typ: tar.TypeReg, mode: 0o755, body: "tini"},
		{name: "usr/bin/tini-hard", typ: tar.TypeLink, link: "usr/bin/tini"},
		{name: "bin", typ: tar.TypeSymlink, link: "usr/bin"},
		{name: "etc/alternatives/editor", typ: tar.TypeSymlink, link: "/usr/bin/vi"}, // absolute: kept as is
		{name: "home/user/", typ: tar.TypeDir, mode: 0o700, uid: 1000, gid: 1000},
		{name: "home/user/.bashrc", typ: tar.TypeReg, uid: 1000, gid: 1000, body: "PS1=x"},
		{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
		{name: "dev/null", typ: tar.TypeChar},                                  // skipped: devtmpfs provides /dev
		{name: "usr/bin/tini", typ: tar.TypeReg, mode: 0o755, body: "tini v2"}, // later entry wins
	}), tree, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n != 11 {
		t.Errorf("wrote %d entries, want 11", n)
	}
	check := func(p string, wantMode fs.FileMode, uid int) {
		t.Helper()
		fi, err := os.Lstat(filepath.Join(tree, p))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != wantMode {
			t.Errorf("%s mode = %v, want %v", p, fi.Mode(), wantMode)
		}
		if st := fi.Sys().(*syscall.Stat_t); root && int(st.Uid) != uid {
			t.Errorf("%s uid = %d, want %d", p, st.Uid, uid)
		}
	}
	check("usr/bin/sudo", 0o755|fs.ModeSetuid, 0)
	check("home/user", 0o700|fs.ModeDir, 1000)
	check("home/user/.bashrc", 0o644, 1000)
	check("tmp", 0o777|fs.ModeDir|fs.ModeSticky, 0)
	if l, _ := os.Readlink(filepath.Join(tree, "etc/alternatives/editor")); l != "/usr/bin/vi" {
		t.Errorf("absolute symlink target = %q", l)
	}
	if b, _ := os.ReadFile(filepath.Join(tree, "bin/tini")); string(b) != "tini v2" {
		t.Errorf("bin/tini (through the relative symlink) = %q", b)
	}
	if _, err := os.Lstat(filepath.Join(tree, "dev/null")); err == nil {
		t.Error("device node was created")
	}
}

func TestResolveIn(t *testing.T) {
	tree := t.TempDir()
	os.MkdirAll(filepath.Join(tree, "usr/bin"), 0o755)
	os.WriteFile(filepath.Join(tree, "usr/bin/bash"), []byte("x"), 0o755)
	os.Symlink("usr/bin", filepath.Join(tree, "bin"))
	os.Symlink("/usr/bin/bash", filepath.Join(tree, "usr/bin/sh")) // absolute, as in many images
	os.Symlink("/../../../../etc/passwd", filepath.Join(tree, "escape"))
	r, err := os.OpenRoot(tree)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, p := range []string{"bin/sh", "/bin/bash", "usr/bin/sh"} {
		fi, err := resolveIn(r, p)
		if err != nil || !fi.Mode().IsRegular() {
			t.Errorf("resolveIn(%q) = %v, %v", p, fi, err)
		}
	}
	if _, err := resolveIn(r, "escape"); err == nil {
		t.Error("escape resolved to a file (the host's /etc/passwd?)")
	}
}
