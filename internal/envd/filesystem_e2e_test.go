package envd_test

// End-to-end tests of the filesystem.Filesystem Connect service, driven against the real
// envd binary (envdtest.Start) in both codecs. Fixtures are laid out, and results
// inspected, from the test side through HostPath (/proc/<pid>/root), so ownership and
// modes are checked on disk rather than only in what envd reports.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"connectrpc.com/connect"
	fspb "github.com/wrennhq/wrenn/gen/envd/filesystem"
	"github.com/wrennhq/wrenn/internal/envd/envdtest"
	"github.com/wrennhq/wrenn/internal/testutil"
)

const (
	userUID = envdtest.UserUID
	userGID = envdtest.UserGID
)

// fsReq wraps msg in a Connect request carrying header (name, value pairs).
func fsReq[T any](msg *T, header ...string) *connect.Request[T] {
	req := connect.NewRequest(msg)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header().Set(header[i], header[i+1])
	}
	return req
}

// asRoot is the header pair that makes an RPC act as root.
var asRoot = []string{"Authorization", envdtest.BasicUser("root")}

// hostMkdir creates dir (and parents) inside envd's namespace, owned by `user`.
func hostMkdir(t *testing.T, e *envdtest.Envd, dir string) {
	t.Helper()
	var made []string
	for d := dir; d != "/" && d != "/home/user"; d = filepath.Dir(d) {
		if _, err := os.Lstat(e.HostPath(d)); err == nil {
			break
		}
		made = append(made, d)
	}
	for i := len(made) - 1; i >= 0; i-- {
		hp := e.HostPath(made[i])
		if err := os.Mkdir(hp, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(hp, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(hp, userUID, userGID); err != nil {
			t.Fatal(err)
		}
	}
}

// hostWrite writes a file inside envd's namespace, mode 0644, owned by `user`.
func hostWrite(t *testing.T, e *envdtest.Envd, p, content string) {
	t.Helper()
	hostMkdir(t, e, filepath.Dir(p))
	hp := e.HostPath(p)
	if err := os.WriteFile(hp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(hp, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(hp, userUID, userGID); err != nil {
		t.Fatal(err)
	}
}

// hostSymlink creates a symlink inside envd's namespace, owned by `user`.
func hostSymlink(t *testing.T, e *envdtest.Envd, target, link string) {
	t.Helper()
	if err := os.Symlink(target, e.HostPath(link)); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(e.HostPath(link), userUID, userGID); err != nil {
		t.Fatal(err)
	}
}

// hostRead reads a file inside envd's namespace.
func hostRead(t *testing.T, e *envdtest.Envd, p string) string {
	t.Helper()
	b, err := os.ReadFile(e.HostPath(p))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// hostStat is lstat inside envd's namespace: owner, group and the full mode.
func hostStat(t *testing.T, e *envdtest.Envd, p string) (uid, gid uint32, mode fs.FileMode) {
	t.Helper()
	fi, err := os.Lstat(e.HostPath(p))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid, fi.Mode()
}

// hostMissing reports whether p does not exist inside envd's namespace.
func hostMissing(t *testing.T, e *envdtest.Envd, p string) bool {
	t.Helper()
	_, err := os.Lstat(e.HostPath(p))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err != nil
}

// wantOwned checks that p is owned by uid:gid with exactly mode (type bits included).
func wantOwned(t *testing.T, e *envdtest.Envd, p string, uid, gid uint32, mode fs.FileMode) {
	t.Helper()
	u, g, m := hostStat(t, e, p)
	if u != uid || g != gid || m != mode {
		t.Errorf("%s on disk: uid %d gid %d mode %v, want %d %d %v", p, u, g, m, uid, gid, mode)
	}
}

// forCodecs runs f once per codec, in parallel subtests, each with its own directory
// under /home/user (so both share one envd without colliding).
func forCodecs(t *testing.T, f func(t *testing.T, codec envdtest.Codec, dir string)) {
	for _, codec := range envdtest.Codecs {
		t.Run(string(codec), func(t *testing.T) {
			t.Parallel()
			f(t, codec, "/home/user/"+string(codec))
		})
	}
}

func TestE2EFilesystemStat(t *testing.T) {
	t.Parallel()
	e := userEnvd(t)
	forCodecs(t, func(t *testing.T, codec envdtest.Codec, dir string) {
		c := e.Filesystem(codec)
		stat := func(p string, header ...string) (*fspb.EntryInfo, error) {
			resp, err := c.Stat(context.Background(), fsReq(&fspb.StatRequest{Path: p}, header...))
			if err != nil {
				return nil, err
			}
			return resp.Msg.GetEntry(), nil
		}
		file := dir + "/stat/a.txt"
		hostWrite(t, e, file, "abcd")
		hostMkdir(t, e, dir+"/stat/sub")
		hostWrite(t, e, dir+"/stat/sub/inner.txt", "inner")
		hostSymlink(t, e, "a.txt", dir+"/stat/link")                 // relative target
		hostSymlink(t, e, dir+"/stat/sub", dir+"/stat/dirlink")      // absolute target
		hostSymlink(t, e, "nowhere.txt", dir+"/stat/dangling")       // dangling
		hostSymlink(t, e, "link", dir+"/stat/chain")                 // link to a link
		hostSymlink(t, e, dir+"/stat/sub/inner.txt", dir+"/stat/in") // into a subdirectory

		// A regular file, asked for absolutely, relative to home and with ~.
		fi, err := os.Lstat(e.HostPath(file))
		if err != nil {
			t.Fatal(err)
		}
		rel := strings.TrimPrefix(file, "/home/user/")
		for _, p := range []string{file, rel, "~/" + rel} {
			en, err := stat(p)
			if err != nil {
				t.Fatalf("Stat %q: %v", p, err)
			}
			if en.GetName() != "a.txt" || en.GetPath() != file || en.GetType() != fspb.FileType_FILE_TYPE_FILE ||
				en.GetSize() != 4 || en.GetMode() != 0o644 || en.GetMode() != 420 || en.GetPermissions() != "-rw-r--r--" ||
				en.GetOwner() != "user" || en.GetGroup() != "user" || en.SymlinkTarget != nil || len(en.GetMetadata()) != 0 {
				t.Errorf("Stat %q: %v", p, en)
			}
			if !en.GetModifiedTime().AsTime().Equal(fi.ModTime()) {
				t.Errorf("Stat %q: modified %v, want %v", p, en.GetModifiedTime().AsTime(), fi.ModTime())
			}
		}

		// A directory.
		en, err := stat(dir + "/stat/sub")
		if err != nil {
			t.Fatal(err)
		}
		if en.GetName() != "sub" || en.GetPath() != dir+"/stat/sub" || en.GetType() != fspb.FileType_FILE_TYPE_DIRECTORY ||
			en.GetMode() != 0o755 || en.GetPermissions() != "drwxr-xr-x" || en.GetOwner() != "user" || en.GetGroup() != "user" || en.SymlinkTarget != nil {
			t.Errorf("Stat dir: %v", en)
		}

		// Symlinks: the target's type and mode, the link's own permissions, the fully
		// resolved absolute target, and the path as requested.
		links := []struct {
			link, target string
			typ          fspb.FileType
			mode         uint32
		}{
			{"link", file, fspb.FileType_FILE_TYPE_FILE, 0o644},
			{"dirlink", dir + "/stat/sub", fspb.FileType_FILE_TYPE_DIRECTORY, 0o755},
			{"chain", file, fspb.FileType_FILE_TYPE_FILE, 0o644},
			{"in", dir + "/stat/sub/inner.txt", fspb.FileType_FILE_TYPE_FILE, 0o644},
		}
		for _, l := range links {
			p := dir + "/stat/" + l.link
			en, err := stat(p)
			if err != nil {
				t.Fatalf("Stat %s: %v", l.link, err)
			}
			if en.GetName() != l.link || en.GetPath() != p || en.GetType() != l.typ || en.GetMode() != l.mode ||
				en.GetPermissions() != "Lrwxrwxrwx" || en.SymlinkTarget == nil || en.GetSymlinkTarget() != l.target ||
				en.GetOwner() != "user" || en.GetGroup() != "user" {
				t.Errorf("Stat %s: %v, want type %v mode %o target %s", l.link, en, l.typ, l.mode, l.target)
			}
		}
		en, err = stat(dir + "/stat/dangling")
		if err != nil {
			t.Fatalf("Stat dangling link: %v", err)
		}
		if en.GetType() != fspb.FileType_FILE_TYPE_UNSPECIFIED || en.GetPermissions() != "Lrwxrwxrwx" || en.SymlinkTarget == nil ||
			en.GetPath() != dir+"/stat/dangling" || en.GetName() != "dangling" {
			t.Errorf("Stat dangling link: %v", en)
		}

		// Through a symlinked directory the path stays the one requested.
		en, err = stat(dir + "/stat/dirlink/inner.txt")
		if err != nil {
			t.Fatal(err)
		}
		if en.GetPath() != dir+"/stat/dirlink/inner.txt" || en.GetName() != "inner.txt" || en.GetSize() != 5 || en.SymlinkTarget != nil {
			t.Errorf("Stat through a symlinked dir: %v", en)
		}

		// Root's view of the same file, and of root's own home.
		en, err = stat(file, asRoot...)
		if err != nil || en.GetOwner() != "user" || en.GetPath() != file {
			t.Errorf("Stat as root: %v %v", en, err)
		}
		en, err = stat("~", asRoot...)
		if err != nil || en.GetPath() != "/root" || en.GetOwner() != "root" || en.GetGroup() != "root" || en.GetMode() != 0o700 {
			t.Errorf("Stat ~ as root: %v %v", en, err)
		}

		_, err = stat(dir + "/stat/missing.txt")
		testutil.WantCode(t, "Stat missing", err, connect.CodeNotFound, "file not found")
		_, err = stat(file + "/below-a-file")
		testutil.WantCode(t, "Stat below a file", err, connect.CodeNotFound, "file not found")
		_, err = stat("~root/x")
		testutil.WantCode(t, "Stat ~root/x", err, connect.CodeInvalidArgument, "")
	})
}

func TestE2EFilesystemMakeDir(t *testing.T) {
	t.Parallel()
	e := userEnvd(t)
	forCodecs(t, func(t *testing.T, codec envdtest.Codec, dir string) {
		c := e.Filesystem(codec)
		mkdir := func(p string, header ...string) (*fspb.EntryInfo, error) {
			resp, err := c.MakeDir(context.Background(), fsReq(&fspb.MakeDirRequest{Path: p}, header...))
			if err != nil {
				return nil, err
			}
			return resp.Msg.GetEntry(), nil
		}

		// All missing parents are created 0755 and owned by the user.
		deep := dir + "/mk/a/b/c"
		en, err := mkdir(deep)
		if err != nil {
			t.Fatal(err)
		}
		if en.GetName() != "c" || en.GetPath() != deep || en.GetType() != fspb.FileType_FILE_TYPE_DIRECTORY ||
			en.GetMode() != 0o755 || en.GetPermissions() != "drwxr-xr-x" || en.GetOwner() != "user" || en.GetGroup() != "user" {
			t.Errorf("MakeDir entry: %v", en)
		}
		for _, p := range []string{dir, dir + "/mk", dir + "/mk/a", dir + "/mk/a/b", deep} {
			wantOwned(t, e, p, userUID, userGID, fs.ModeDir|0o755)
		}

		_, err = mkdir(deep)
		testutil.WantCode(t, "MakeDir existing", err, connect.CodeAlreadyExists, "directory already exists: "+deep)
		// A symlink to a directory is a directory too.
		hostSymlink(t, e, deep, dir+"/mk/clink")
		_, err = mkdir(dir + "/mk/clink")
		testutil.WantCode(t, "MakeDir over a dir symlink", err, connect.CodeAlreadyExists, "")

		hostWrite(t, e, dir+"/mk/file", "x")
		_, err = mkdir(dir + "/mk/file")
		testutil.WantCode(t, "MakeDir over a file", err, connect.CodeInvalidArgument, "")
		_, err = mkdir(dir + "/mk/file/sub")
		testutil.WantCode(t, "MakeDir below a file", err, connect.CodeInvalidArgument, "")
		if hostRead(t, e, dir+"/mk/file") != "x" {
			t.Error("the file was changed")
		}

		// Relative paths resolve against the user's home.
		rel := strings.TrimPrefix(dir, "/home/user/") + "/rel/x"
		en, err = mkdir(rel)
		if err != nil || en.GetPath() != dir+"/rel/x" {
			t.Fatalf("MakeDir %q: %v %v", rel, en, err)
		}
		wantOwned(t, e, dir+"/rel", userUID, userGID, fs.ModeDir|0o755)

		// As root, new directories belong to root; relative ones land in /root.
		en, err = mkdir(dir+"/byroot/inner", asRoot...)
		if err != nil || en.GetOwner() != "root" || en.GetGroup() != "root" {
			t.Fatalf("MakeDir as root: %v %v", en, err)
		}
		wantOwned(t, e, dir+"/byroot", 0, 0, fs.ModeDir|0o755)
		wantOwned(t, e, dir+"/byroot/inner", 0, 0, fs.ModeDir|0o755)
		en, err = mkdir(string(codec)+"-rootrel", asRoot...)
		if err != nil || en.GetPath() != "/root/"+string(codec)+"-rootrel" {
			t.Fatalf("relative MakeDir as root: %v %v", en, err)
		}
		wantOwned(t, e, "/root/"+string(codec)+"-rootrel", 0, 0, fs.ModeDir|0o755)
	})
}

func TestE2EFilesystemMove(t *testing.T) {
	t.Parallel()
	e := userEnvd(t)
	forCodecs(t, func(t *testing.T, codec envdtest.Codec, dir string) {
		c := e.Filesystem(codec)
		move := func(src, dst string, header ...string) (*fspb.EntryInfo, error) {
			resp, err := c.Move(context.Background(), fsReq(&fspb.MoveRequest{Source: src, Destination: dst}, header...))
			if err != nil {
				return nil, err
			}
			return resp.Msg.GetEntry(), nil
		}

		// Overwrite an existing destination.
		hostWrite(t, e, dir+"/mv/src.txt", "new content")
		hostWrite(t, e, dir+"/mv/dst.txt", "old")
		en, err := move(dir+"/mv/src.txt", dir+"/mv/dst.txt")
		if err != nil {
			t.Fatal(err)
		}
		if en.GetPath() != dir+"/mv/dst.txt" || en.GetName() != "dst.txt" || en.GetType() != fspb.FileType_FILE_TYPE_FILE ||
			en.GetSize() != int64(len("new content")) || en.GetOwner() != "user" {
			t.Errorf("Move entry: %v", en)
		}
		if got := hostRead(t, e, dir+"/mv/dst.txt"); got != "new content" {
			t.Errorf("destination holds %q", got)
		}
		if !hostMissing(t, e, dir+"/mv/src.txt") {
			t.Error("source still exists")
		}

		// Missing destination parents are created, owned by the user; relative paths
		// resolve against home.
		rel := strings.TrimPrefix(dir, "/home/user/")
		en, err = move(rel+"/mv/dst.txt", rel+"/mv/new/deep/moved.txt")
		if err != nil {
			t.Fatal(err)
		}
		if en.GetPath() != dir+"/mv/new/deep/moved.txt" || en.GetName() != "moved.txt" {
			t.Errorf("Move entry: %v", en)
		}
		wantOwned(t, e, dir+"/mv/new", userUID, userGID, fs.ModeDir|0o755)
		wantOwned(t, e, dir+"/mv/new/deep", userUID, userGID, fs.ModeDir|0o755)
		wantOwned(t, e, dir+"/mv/new/deep/moved.txt", userUID, userGID, 0o644)

		// A directory moves with its content.
		hostWrite(t, e, dir+"/mv/tree/x/y.txt", "y")
		en, err = move(dir+"/mv/tree", dir+"/mv/tree2")
		if err != nil || en.GetType() != fspb.FileType_FILE_TYPE_DIRECTORY || hostRead(t, e, dir+"/mv/tree2/x/y.txt") != "y" {
			t.Errorf("Move a directory: %v %v", en, err)
		}

		// As root, the created parents belong to root.
		hostWrite(t, e, dir+"/mv/r.txt", "r")
		if _, err := move(dir+"/mv/r.txt", dir+"/mv/rootparent/r.txt", asRoot...); err != nil {
			t.Fatal(err)
		}
		wantOwned(t, e, dir+"/mv/rootparent", 0, 0, fs.ModeDir|0o755)
		wantOwned(t, e, dir+"/mv/rootparent/r.txt", userUID, userGID, 0o644) // rename keeps the owner

		_, err = move(dir+"/mv/nope.txt", dir+"/mv/never/x.txt")
		testutil.WantCode(t, "Move missing source", err, connect.CodeNotFound, "source file not found")
		if !hostMissing(t, e, dir+"/mv/never") {
			t.Error("a failed Move created the destination's parents")
		}
	})
}

func TestE2EFilesystemListDir(t *testing.T) {
	t.Parallel()
	e := envdtest.Start(t)
	// A workdir other than home: relative paths must still resolve against home.
	e.Init(t, `{"defaultUser":"user","defaultWorkdir":"/root"}`)
	// Each directory's entries in lexical order, subdirectories right after themselves
	// ("a" < "a.txt" here, although "a.txt" < "a/x.txt" as strings).
	hostWrite(t, e, "/home/user/ls/a/x.txt", "x")
	hostWrite(t, e, "/home/user/ls/a/y/z.txt", "z")
	hostWrite(t, e, "/home/user/ls/a/y/q/deep.txt", "deep")
	hostWrite(t, e, "/home/user/ls/a.txt", "a")
	hostWrite(t, e, "/home/user/ls/b.txt", "b")
	hostMkdir(t, e, "/home/user/ls/c/d")
	hostSymlink(t, e, "a", "/home/user/ls/link") // listed, never entered
	hostWrite(t, e, "/root/in-workdir.txt", "w")
	hostMkdir(t, e, "/home/user/loops")
	hostSymlink(t, e, "loop2", "/home/user/loops/loop1")
	hostSymlink(t, e, "loop1", "/home/user/loops/loop2")

	depth1 := []string{"a", "a.txt", "b.txt", "c", "link"}
	depth2 := []string{"a", "a/x.txt", "a/y", "a.txt", "b.txt", "c", "c/d", "link"}
	depth3 := []string{"a", "a/x.txt", "a/y", "a/y/q", "a/y/z.txt", "a.txt", "b.txt", "c", "c/d", "link"}
	types := map[string]fspb.FileType{
		"a": fspb.FileType_FILE_TYPE_DIRECTORY, "a/y": fspb.FileType_FILE_TYPE_DIRECTORY, "a/y/q": fspb.FileType_FILE_TYPE_DIRECTORY,
		"c": fspb.FileType_FILE_TYPE_DIRECTORY, "c/d": fspb.FileType_FILE_TYPE_DIRECTORY, "link": fspb.FileType_FILE_TYPE_DIRECTORY,
	}

	forCodecs(t, func(t *testing.T, codec envdtest.Codec, _ string) {
		c := e.Filesystem(codec)
		list := func(p string, depth uint32, header ...string) ([]*fspb.EntryInfo, error) {
			resp, err := c.ListDir(context.Background(), fsReq(&fspb.ListDirRequest{Path: p, Depth: depth}, header...))
			if err != nil {
				return nil, err
			}
			return resp.Msg.GetEntries(), nil
		}
		for _, tc := range []struct {
			path  string
			depth uint32
			want  []string
		}{
			{"/home/user/ls", 0, depth1},
			{"/home/user/ls", 1, depth1},
			{"ls", 2, depth2},
			{"~/ls", 3, depth3},
			{"/home/user/ls/", 3, depth3},
		} {
			entries, err := list(tc.path, tc.depth)
			if err != nil {
				t.Fatalf("ListDir %q depth %d: %v", tc.path, tc.depth, err)
			}
			var got []string
			for _, en := range entries {
				rel := strings.TrimPrefix(en.GetPath(), "/home/user/ls/")
				got = append(got, rel)
				wantType, ok := types[rel]
				if !ok {
					wantType = fspb.FileType_FILE_TYPE_FILE
				}
				if en.GetPath() != "/home/user/ls/"+rel || en.GetName() != filepath.Base(rel) || en.GetType() != wantType ||
					en.GetOwner() != "user" || en.GetGroup() != "user" {
					t.Errorf("ListDir %q depth %d: entry %v", tc.path, tc.depth, en)
				}
				if rel == "a.txt" && (en.GetSize() != 1 || en.GetMode() != 0o644 || en.GetPermissions() != "-rw-r--r--") {
					t.Errorf("ListDir: file entry %v", en)
				}
				if rel == "link" && (en.GetSymlinkTarget() != "/home/user/ls/a" || en.GetPermissions() != "Lrwxrwxrwx") {
					t.Errorf("ListDir: symlink entry %v", en)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ListDir %q depth %d:\n got %q\nwant %q", tc.path, tc.depth, got, tc.want)
			}
		}

		// Listing through a symlink keeps the requested prefix.
		entries, err := list("/home/user/ls/link", 1)
		if err != nil || len(entries) != 2 || entries[0].GetPath() != "/home/user/ls/link/x.txt" || entries[1].GetPath() != "/home/user/ls/link/y" {
			t.Errorf("ListDir through a symlink: %v %v", entries, err)
		}
		// Empty path: the default workdir.
		entries, err = list("", 1)
		if err != nil || len(entries) != 1 || entries[0].GetPath() != "/root/in-workdir.txt" {
			t.Errorf("ListDir of the default workdir: %v %v", entries, err)
		}
		// Relative paths as root resolve against /root.
		entries, err = list(".", 1, asRoot...)
		if err != nil || len(entries) != 1 || entries[0].GetPath() != "/root/in-workdir.txt" || entries[0].GetOwner() != "user" {
			t.Errorf("ListDir . as root: %v %v", entries, err)
		}

		_, err = list("/home/user/ls/b.txt", 1)
		testutil.WantCode(t, "ListDir of a file", err, connect.CodeInvalidArgument, "path is not a directory")
		_, err = list("/home/user/ls/nope", 1)
		testutil.WantCode(t, "ListDir of a missing path", err, connect.CodeNotFound, "path not found")
		_, err = list("/home/user/loops/loop1", 1)
		testutil.WantCode(t, "ListDir of a symlink loop", err, connect.CodeFailedPrecondition, "")
	})
}

func TestE2EFilesystemRemove(t *testing.T) {
	t.Parallel()
	e := userEnvd(t)
	forCodecs(t, func(t *testing.T, codec envdtest.Codec, dir string) {
		c := e.Filesystem(codec)
		remove := func(p string) error {
			_, err := c.Remove(context.Background(), fsReq(&fspb.RemoveRequest{Path: p}))
			return err
		}
		hostWrite(t, e, dir+"/rm/tree/a/b/c.txt", "c")
		hostWrite(t, e, dir+"/rm/tree/d.txt", "d")
		hostWrite(t, e, dir+"/rm/keep.txt", "keep")
		hostWrite(t, e, dir+"/rm/single.txt", "s")
		hostSymlink(t, e, dir+"/rm/keep.txt", dir+"/rm/link")

		if err := remove(dir + "/rm/tree"); err != nil {
			t.Fatal(err)
		}
		if !hostMissing(t, e, dir+"/rm/tree") {
			t.Error("tree not removed")
		}
		if err := remove(strings.TrimPrefix(dir, "/home/user/") + "/rm/single.txt"); err != nil {
			t.Fatal(err)
		}
		if !hostMissing(t, e, dir+"/rm/single.txt") {
			t.Error("relative remove did not remove the file")
		}
		// Removing a symlink removes the link, not its target.
		if err := remove(dir + "/rm/link"); err != nil {
			t.Fatal(err)
		}
		if !hostMissing(t, e, dir+"/rm/link") || hostRead(t, e, dir+"/rm/keep.txt") != "keep" {
			t.Error("remove of a symlink")
		}
		for _, p := range []string{dir + "/rm/tree", dir + "/rm/never/existed"} {
			if err := remove(p); err != nil {
				t.Errorf("remove of missing %s: %v", p, err)
			}
		}
		// Via Stat, as the SDK's exists() does.
		_, err := c.Stat(context.Background(), fsReq(&fspb.StatRequest{Path: dir + "/rm/tree"}))
		testutil.WantCode(t, "Stat after remove", err, connect.CodeNotFound, "")
	})
}

// Every filesystem RPC rejects a Basic header naming an unknown user.
func TestE2EFilesystemUnknownBasicUser(t *testing.T) {
	t.Parallel()
	e := userEnvd(t)
	hostMkdir(t, e, "/home/user/g")
	ghost := []string{"Authorization", envdtest.BasicUser("ghost")}
	forCodecs(t, func(t *testing.T, codec envdtest.Codec, _ string) {
		c := e.Filesystem(codec)
		ctx := context.Background()
		errs := map[string]error{}
		_, errs["Stat"] = c.Stat(ctx, fsReq(&fspb.StatRequest{Path: "/home/user/g"}, ghost...))
		_, errs["MakeDir"] = c.MakeDir(ctx, fsReq(&fspb.MakeDirRequest{Path: "/home/user/g/new"}, ghost...))
		_, errs["Move"] = c.Move(ctx, fsReq(&fspb.MoveRequest{Source: "/home/user/g", Destination: "/home/user/g2"}, ghost...))
		_, errs["ListDir"] = c.ListDir(ctx, fsReq(&fspb.ListDirRequest{Path: "/home/user/g"}, ghost...))
		_, errs["Remove"] = c.Remove(ctx, fsReq(&fspb.RemoveRequest{Path: "/home/user/g"}, ghost...))
		_, errs["CreateWatcher"] = c.CreateWatcher(ctx, fsReq(&fspb.CreateWatcherRequest{Path: "/home/user/g"}, ghost...))
		_, errs["GetWatcherEvents"] = c.GetWatcherEvents(ctx, fsReq(&fspb.GetWatcherEventsRequest{WatcherId: "wx"}, ghost...))
		_, errs["RemoveWatcher"] = c.RemoveWatcher(ctx, fsReq(&fspb.RemoveWatcherRequest{WatcherId: "wx"}, ghost...))
		errs["WatchDir"] = watchErr(t, c, &fspb.WatchDirRequest{Path: "/home/user/g"}, ghost...)
		for name, err := range errs {
			testutil.WantCode(t, name+" as ghost", err, connect.CodeUnauthenticated, "unknown user: invalid username: 'ghost'")
		}
		for _, p := range []string{"/home/user/g/new", "/home/user/g2"} {
			if !hostMissing(t, e, p) {
				t.Errorf("a rejected request created %s", p)
			}
		}
		if hostMissing(t, e, "/home/user/g") {
			t.Error("a rejected request removed /home/user/g")
		}
	})
}

// With an access token set by /init, every filesystem RPC needs X-Access-Token.
func TestE2EFilesystemAccessToken(t *testing.T) {
	t.Parallel()
	e := envdtest.Start(t)
	e.Init(t, `{"accessToken":"fs-token","defaultUser":"user"}`)
	token := []string{"X-Access-Token", "fs-token"}
	wrong := []string{"X-Access-Token", "not-the-token"}
	forCodecs(t, func(t *testing.T, codec envdtest.Codec, dir string) {
		c := e.Filesystem(codec)
		ctx := context.Background()
		for _, hdr := range [][]string{nil, wrong} {
			_, err := c.Stat(ctx, fsReq(&fspb.StatRequest{Path: "/home/user"}, hdr...))
			testutil.WantCode(t, fmt.Sprintf("Stat with %v", hdr), err, connect.CodeUnauthenticated, "")
			_, err = c.MakeDir(ctx, fsReq(&fspb.MakeDirRequest{Path: dir + "/denied"}, hdr...))
			testutil.WantCode(t, fmt.Sprintf("MakeDir with %v", hdr), err, connect.CodeUnauthenticated, "")
			_, err = c.ListDir(ctx, fsReq(&fspb.ListDirRequest{Path: "/home/user"}, hdr...))
			testutil.WantCode(t, fmt.Sprintf("ListDir with %v", hdr), err, connect.CodeUnauthenticated, "")
			_, err = c.CreateWatcher(ctx, fsReq(&fspb.CreateWatcherRequest{Path: "/home/user"}, hdr...))
			testutil.WantCode(t, fmt.Sprintf("CreateWatcher with %v", hdr), err, connect.CodeUnauthenticated, "")
			err = watchErr(t, c, &fspb.WatchDirRequest{Path: "/home/user"}, hdr...)
			testutil.WantCode(t, fmt.Sprintf("WatchDir with %v", hdr), err, connect.CodeUnauthenticated, "")
		}
		if !hostMissing(t, e, dir+"/denied") {
			t.Error("an unauthenticated MakeDir created the directory")
		}

		en, err := c.MakeDir(ctx, fsReq(&fspb.MakeDirRequest{Path: dir + "/allowed"}, token...))
		if err != nil || en.Msg.GetEntry().GetOwner() != "user" {
			t.Fatalf("MakeDir with the token: %v %v", en, err)
		}
		st, err := c.Stat(ctx, fsReq(&fspb.StatRequest{Path: dir + "/allowed"}, token...))
		if err != nil || st.Msg.GetEntry().GetType() != fspb.FileType_FILE_TYPE_DIRECTORY {
			t.Fatalf("Stat with the token: %v %v", st, err)
		}
		ls, err := c.ListDir(ctx, fsReq(&fspb.ListDirRequest{Path: dir}, token...))
		if err != nil || len(ls.Msg.GetEntries()) != 1 {
			t.Fatalf("ListDir with the token: %v %v", ls, err)
		}
		s := openWatch(t, c, &fspb.WatchDirRequest{Path: dir + "/allowed"}, token...)
		hostWrite(t, e, dir+"/allowed/x.txt", "x")
		waitEvent(t, s, "WRITE x.txt", isEvent("x.txt", fspb.EventType_EVENT_TYPE_WRITE))
		cw, err := c.CreateWatcher(ctx, fsReq(&fspb.CreateWatcherRequest{Path: dir}, token...))
		if err != nil {
			t.Fatal(err)
		}
		id := cw.Msg.GetWatcherId()
		_, err = c.GetWatcherEvents(ctx, fsReq(&fspb.GetWatcherEventsRequest{WatcherId: id}))
		testutil.WantCode(t, "GetWatcherEvents without the token", err, connect.CodeUnauthenticated, "")
		if _, err := c.GetWatcherEvents(ctx, fsReq(&fspb.GetWatcherEventsRequest{WatcherId: id}, token...)); err != nil {
			t.Fatal(err)
		}
		_, err = c.RemoveWatcher(ctx, fsReq(&fspb.RemoveWatcherRequest{WatcherId: id}))
		testutil.WantCode(t, "RemoveWatcher without the token", err, connect.CodeUnauthenticated, "")
		if _, err := c.RemoveWatcher(ctx, fsReq(&fspb.RemoveWatcherRequest{WatcherId: id}, token...)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Move(ctx, fsReq(&fspb.MoveRequest{Source: dir + "/allowed", Destination: dir + "/moved"}, token...)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Remove(ctx, fsReq(&fspb.RemoveRequest{Path: dir + "/moved"})); connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Errorf("Remove without the token: %v", err)
		}
		if _, err := c.Remove(ctx, fsReq(&fspb.RemoveRequest{Path: dir + "/moved"}, token...)); err != nil || !hostMissing(t, e, dir+"/moved") {
			t.Errorf("Remove with the token: %v", err)
		}
	})
}
