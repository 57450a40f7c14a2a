package filesystem

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"connectrpc.com/connect"

	rpc "github.com/wrennhq/wrenn/gen/envd/filesystem"
	"github.com/wrennhq/wrenn/internal/testutil"
)

// listTree builds:
//
//	a/ x.txt  y/ z.txt  y/deep/ d.txt
//	B.txt  b.txt  c -> a  dangling -> nowhere
func listTree(t *testing.T, root string) {
	t.Helper()
	writeFile(t, filepath.Join(root, "a", "x.txt"), "x", 0o644)
	writeFile(t, filepath.Join(root, "a", "y", "z.txt"), "zz", 0o600)
	writeFile(t, filepath.Join(root, "a", "y", "deep", "d.txt"), "", 0o644)
	mkdir(t, filepath.Join(root, "a"))
	mkdir(t, filepath.Join(root, "a", "y"))
	mkdir(t, filepath.Join(root, "a", "y", "deep"))
	writeFile(t, filepath.Join(root, "b.txt"), "b", 0o644)
	writeFile(t, filepath.Join(root, "B.txt"), "B", 0o644)
	symlink(t, filepath.Join(root, "a"), filepath.Join(root, "c"))
	symlink(t, "nowhere", filepath.Join(root, "dangling"))
}

func listRel(t *testing.T, root string, entries []*rpc.EntryInfo) []string {
	t.Helper()
	var out []string
	for _, e := range entries {
		rel, err := filepath.Rel(root, e.GetPath())
		if err != nil || strings.HasPrefix(rel, "..") {
			t.Fatalf("entry path %q not under %q", e.GetPath(), root)
		}
		if e.GetName() != filepath.Base(e.GetPath()) {
			t.Fatalf("entry name %q does not match path %q", e.GetName(), e.GetPath())
		}
		out = append(out, rel)
	}
	return out
}

func TestListDirDepthsAndOrder(t *testing.T) {
	eachCodec(t, func(t *testing.T, e *env) {
		listTree(t, e.dir)
		cases := []struct {
			depth uint32
			want  []string
		}{
			{0, []string{"B.txt", "a", "b.txt", "c", "dangling"}},
			{1, []string{"B.txt", "a", "b.txt", "c", "dangling"}},
			{2, []string{"B.txt", "a", "a/x.txt", "a/y", "b.txt", "c", "dangling"}},
			{3, []string{"B.txt", "a", "a/x.txt", "a/y", "a/y/deep", "a/y/z.txt", "b.txt", "c", "dangling"}},
			{4, []string{"B.txt", "a", "a/x.txt", "a/y", "a/y/deep", "a/y/deep/d.txt", "a/y/z.txt", "b.txt", "c", "dangling"}},
			{1000, []string{"B.txt", "a", "a/x.txt", "a/y", "a/y/deep", "a/y/deep/d.txt", "a/y/z.txt", "b.txt", "c", "dangling"}},
		}
		for _, tc := range cases {
			res, err := e.client.ListDir(ctx(t), connect.NewRequest(&rpc.ListDirRequest{Path: e.dir, Depth: tc.depth}))
			if err != nil {
				t.Fatalf("depth %d: %v", tc.depth, err)
			}
			if got := listRel(t, e.dir, res.Msg.GetEntries()); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("depth %d:\n got %q\nwant %q", tc.depth, got, tc.want)
			}
		}

		// Entries carry full EntryInfo, symlink semantics included.
		res, err := e.client.ListDir(ctx(t), connect.NewRequest(&rpc.ListDirRequest{Path: e.dir, Depth: 3}))
		if err != nil {
			t.Fatal(err)
		}
		byRel := map[string]*rpc.EntryInfo{}
		for _, en := range res.Msg.GetEntries() {
			rel, _ := filepath.Rel(e.dir, en.GetPath())
			byRel[rel] = en
		}
		if z := byRel["a/y/z.txt"]; z.GetType() != rpc.FileType_FILE_TYPE_FILE || z.GetSize() != 2 || z.GetMode() != 0o600 || z.GetPermissions() != "-rw-------" || z.GetModifiedTime() == nil {
			t.Fatalf("a/y/z.txt entry %v", z)
		}
		if y := byRel["a/y"]; y.GetType() != rpc.FileType_FILE_TYPE_DIRECTORY || y.GetPermissions() != "drwxr-xr-x" {
			t.Fatalf("a/y entry %v", y)
		}
		if c := byRel["c"]; c.GetType() != rpc.FileType_FILE_TYPE_DIRECTORY || c.GetSymlinkTarget() != e.path("a") || c.GetPermissions() != "Lrwxrwxrwx" {
			t.Fatalf("c entry %v", c)
		}
		if d := byRel["dangling"]; d.GetType() != rpc.FileType_FILE_TYPE_UNSPECIFIED || d.SymlinkTarget == nil {
			t.Fatalf("dangling entry %v", d)
		}
		if os.Geteuid() == 0 {
			if x := byRel["a/x.txt"]; x.GetOwner() != "root" || x.GetGroup() != "root" {
				t.Fatalf("owner/group %q/%q", x.GetOwner(), x.GetGroup())
			}
		}
	})
}

func TestListDirThroughSymlink(t *testing.T) {
	eachCodec(t, func(t *testing.T, e *env) {
		listTree(t, e.path("real"))
		link := e.path("link")
		symlink(t, "real", link)
		res, err := e.client.ListDir(ctx(t), connect.NewRequest(&rpc.ListDirRequest{Path: link, Depth: 2}))
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"B.txt", "a", "a/x.txt", "a/y", "b.txt", "c", "dangling"}
		// Paths keep the requested (link) prefix.
		if got := listRel(t, link, res.Msg.GetEntries()); !reflect.DeepEqual(got, want) {
			t.Fatalf("got %q want %q", got, want)
		}
		// The link is followed for the root only, and the root itself is not listed.
		for _, en := range res.Msg.GetEntries() {
			if en.GetPath() == link {
				t.Fatal("root listed")
			}
		}
	})
}

func TestListDirMetadata(t *testing.T) {
	eachCodec(t, func(t *testing.T, e *env) {
		writeFile(t, e.path("with"), "", 0o644)
		writeFile(t, e.path("without"), "", 0o644)
		setXattr(t, e.path("with"), "author", "carol")
		setXattr(t, e.path("with"), "team", "x")
		res, err := e.client.ListDir(ctx(t), connect.NewRequest(&rpc.ListDirRequest{Path: e.dir}))
		if err != nil {
			t.Fatal(err)
		}
		ents := res.Msg.GetEntries()
		if len(ents) != 2 {
			t.Fatalf("entries %v", ents)
		}
		if md := ents[0].GetMetadata(); !reflect.DeepEqual(md, map[string]string{"author": "carol", "team": "x"}) {
			t.Fatalf("metadata %v", md)
		}
		if ents[1].Metadata != nil {
			t.Fatalf("metadata on a file without any: %v", ents[1].Metadata)
		}
	})
}

func TestListDirErrors(t *testing.T) {
	eachCodec(t, func(t *testing.T, e *env) {
		c := ctx(t)
		_, err := e.client.ListDir(c, connect.NewRequest(&rpc.ListDirRequest{Path: e.path("missing")}))
		testutil.WantCode(t, "ListDir of a missing path", err, connect.CodeNotFound, "path not found: ")

		writeFile(t, e.path("file"), "", 0o644)
		_, err = e.client.ListDir(c, connect.NewRequest(&rpc.ListDirRequest{Path: e.path("file")}))
		testutil.WantCode(t, "ListDir of a file", err, connect.CodeInvalidArgument, "path is not a directory: "+e.path("file"))

		symlink(t, "file", e.path("filelink"))
		_, err = e.client.ListDir(c, connect.NewRequest(&rpc.ListDirRequest{Path: e.path("filelink")}))
		testutil.WantCode(t, "ListDir of a symlink to a file", err, connect.CodeInvalidArgument, "path is not a directory: ")

		symlink(t, "nowhere", e.path("dangling"))
		_, err = e.client.ListDir(c, connect.NewRequest(&rpc.ListDirRequest{Path: e.path("dangling")}))
		testutil.WantCode(t, "ListDir of a dangling symlink", err, connect.CodeNotFound, "path not found: ")

		symlink(t, "loop2", e.path("loop1"))
		symlink(t, "loop1", e.path("loop2"))
		_, err = e.client.ListDir(c, connect.NewRequest(&rpc.ListDirRequest{Path: e.path("loop1")}))
		testutil.WantCode(t, "ListDir of a symlink loop", err, connect.CodeFailedPrecondition, "cyclic symlink")

		_, err = e.client.ListDir(c, connect.NewRequest(&rpc.ListDirRequest{Path: "bad\x00"}))
		testutil.WantCode(t, "ListDir of a NUL path", err, connect.CodeInvalidArgument, "invalid path")

		// An empty directory lists as no entries.
		mkdir(t, e.path("empty"))
		res, err := e.client.ListDir(c, connect.NewRequest(&rpc.ListDirRequest{Path: e.path("empty"), Depth: 5}))
		if err != nil || len(res.Msg.GetEntries()) != 0 {
			t.Fatalf("empty dir: %v %v", res, err)
		}
	})
}

// Entries that vanish between readdir and lstat are skipped rather than failing the
// listing; a cancelled request stops the walk.
func TestWalkerSkipsVanishedAndStopsOnCancel(t *testing.T) {
	root := tempDir(t)
	listTree(t, root)
	names := newIDNames(0)
	w := &walker{ctx: context.Background(), reqRoot: root, realRoot: root, depth: 10, names: names}
	// Remove a subtree after the top-level readdir would have seen it: emulate by
	// walking a subdirectory that no longer exists, which must be silent.
	if err := w.walk("gone", 2); err != nil {
		t.Fatalf("vanished subdirectory: %v", err)
	}
	if len(w.entries) != 0 {
		t.Fatalf("entries from a vanished dir: %v", w.entries)
	}
	c, cancel := context.WithCancel(context.Background())
	cancel()
	w = &walker{ctx: c, reqRoot: root, realRoot: root, depth: 10, names: names}
	if err := w.walk("", 1); err == nil {
		t.Fatal("cancelled walk succeeded")
	}
}
