package fsx

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/wrennhq/wrenn/internal/testutil"
)

func TestUploadTempNames(t *testing.T) {
	long := strings.Repeat("a", 200)
	for _, base := range []string{"x.txt", ".hidden", long} {
		name := UploadTempPrefix(base) + "0123456789abcdef"
		if !IsUploadTemp("/some/dir/" + name) {
			t.Errorf("%q not recognised as an upload temp name", name)
		}
		if len(name) > 255 {
			t.Errorf("temp name for a %d-byte base is %d bytes", len(base), len(name))
		}
	}
	for _, user := range []string{"x.txt", ".bashrc", "wrenn-upload-notes.txt", "a/.b/c"} {
		if IsUploadTemp(user) {
			t.Errorf("%q mistaken for an upload temp name", user)
		}
	}
}

func TestMkdirAllOwnedChownsOnlyWhatItCreates(t *testing.T) {
	testutil.RequireRoot(t, "chowning to another uid")
	root := t.TempDir()
	deep := filepath.Join(root, "a", "b", "c")
	if err := MkdirAllOwned(deep, 4242, 4343); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"a", "a/b", "a/b/c"} {
		fi, err := os.Stat(filepath.Join(root, d))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 4242 || st.Gid != 4343 || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: uid %d gid %d mode %v", d, st.Uid, st.Gid, fi.Mode().Perm())
		}
	}
	if st, _ := os.Stat(root); st.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Error("pre-existing parent was chowned")
	}
	f := filepath.Join(root, "file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := MkdirAllOwned(filepath.Join(f, "sub"), 1, 1); err == nil {
		t.Error("mkdir under a regular file succeeded")
	}
}

func TestMetadataReplaceAndValidate(t *testing.T) {
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ReplaceMetadata(f, map[string]string{"Author": "ann", "k": "v"}); err != nil {
		if strings.Contains(err.Error(), "operation not supported") {
			t.Skip("the temp dir's filesystem has no user xattrs")
		}
		t.Fatal(err)
	}
	if err := ReplaceMetadata(f, map[string]string{"author": "bob"}); err != nil {
		t.Fatal(err)
	}
	md, err := ReadMetadata(f)
	if err != nil || len(md) != 1 || md["author"] != "bob" {
		t.Fatalf("metadata %v %v, want only author=bob", md, err)
	}
	if err := ReplaceMetadata(f, nil); err != nil {
		t.Fatal(err)
	}
	if md, _ := ReadMetadata(f); md != nil {
		t.Errorf("metadata not cleared: %v", md)
	}
	for _, bad := range []map[string]string{
		{"": "v"}, {"k\n": "v"}, {"k": "v\x00"}, {strings.Repeat("k", 247): "v"}, {"k": strings.Repeat("v", 4096)},
	} {
		if ValidateMetadata(bad) == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestIsUnlinkedTemp(t *testing.T) {
	dir := t.TempDir()
	if !IsUnlinkedTemp(filepath.Join(dir, "#12345")) {
		t.Error("missing #<ino> not recognised")
	}
	real := filepath.Join(dir, "#777")
	if err := os.WriteFile(real, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{real, filepath.Join(dir, "#"), filepath.Join(dir, "#12a"), filepath.Join(dir, "12345")} {
		if IsUnlinkedTemp(p) {
			t.Errorf("%s mistaken for an unlinked temp inode", p)
		}
	}
}
