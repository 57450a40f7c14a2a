package filesystem

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"connectrpc.com/connect"

	rpc "github.com/wrennhq/wrenn/gen/envd/filesystem"
	"github.com/wrennhq/wrenn/internal/testutil"
)

func TestStat(t *testing.T) {
	eachCodec(t, func(t *testing.T, e *env) {
		f := e.path("file.txt")
		writeFile(t, f, "test", 0o644)
		setXattr(t, f, "author", "bob")
		res, err := e.client.Stat(ctx(t), connect.NewRequest(&rpc.StatRequest{Path: f}))
		if err != nil {
			t.Fatal(err)
		}
		got := res.Msg.GetEntry()
		want, err := Entry(f, f)
		if err != nil {
			t.Fatal(err)
		}
		if got.GetName() != "file.txt" || got.GetPath() != f || got.GetType() != rpc.FileType_FILE_TYPE_FILE ||
			got.GetSize() != 4 || got.GetMode() != 0o644 || got.GetPermissions() != "-rw-r--r--" ||
			got.GetOwner() != want.GetOwner() || got.GetGroup() != want.GetGroup() ||
			!got.GetModifiedTime().AsTime().Equal(want.GetModifiedTime().AsTime()) ||
			got.SymlinkTarget != nil || got.GetMetadata()["author"] != "bob" {
			t.Fatalf("stat entry %v, want %v", got, want)
		}

		d := e.path("dir")
		mkdir(t, d)
		res, err = e.client.Stat(ctx(t), connect.NewRequest(&rpc.StatRequest{Path: d}))
		if err != nil {
			t.Fatal(err)
		}
		if g := res.Msg.GetEntry(); g.GetType() != rpc.FileType_FILE_TYPE_DIRECTORY || g.GetMode() != 0o755 || g.GetPermissions() != "drwxr-xr-x" {
			t.Fatalf("dir entry %v", g)
		}

		link := e.path("link")
		symlink(t, "file.txt", link)
		res, err = e.client.Stat(ctx(t), connect.NewRequest(&rpc.StatRequest{Path: link}))
		if err != nil {
			t.Fatal(err)
		}
		if g := res.Msg.GetEntry(); g.GetType() != rpc.FileType_FILE_TYPE_FILE || g.GetSymlinkTarget() != f ||
			g.GetPermissions() != "Lrwxrwxrwx" || g.GetPath() != link {
			t.Fatalf("symlink entry %v", g)
		}

		dangling := e.path("dangling")
		symlink(t, "missing", dangling)
		res, err = e.client.Stat(ctx(t), connect.NewRequest(&rpc.StatRequest{Path: dangling}))
		if err != nil {
			t.Fatal(err)
		}
		if g := res.Msg.GetEntry(); g.GetType() != rpc.FileType_FILE_TYPE_UNSPECIFIED || g.SymlinkTarget == nil {
			t.Fatalf("dangling entry %v", g)
		}
	})
}

func TestStatErrorsAndPaths(t *testing.T) {
	eachCodec(t, func(t *testing.T, e *env) {
		c := ctx(t)
		_, err := e.client.Stat(c, connect.NewRequest(&rpc.StatRequest{Path: e.path("missing")}))
		testutil.WantCode(t, "Stat missing", err, connect.CodeNotFound, "file not found: lstat "+e.path("missing"))

		// A path "below" a regular file does not exist either.
		writeFile(t, e.path("f"), "", 0o644)
		_, err = e.client.Stat(c, connect.NewRequest(&rpc.StatRequest{Path: e.path("f", "x")}))
		testutil.WantCode(t, "Stat below a file", err, connect.CodeNotFound, "file not found: ")

		_, err = e.client.Stat(c, connect.NewRequest(&rpc.StatRequest{Path: e.path("a\x00b")}))
		testutil.WantCode(t, "Stat of a NUL path", err, connect.CodeInvalidArgument, "invalid path")
		_, err = e.client.Stat(c, connect.NewRequest(&rpc.StatRequest{Path: "~other/x"}))
		testutil.WantCode(t, "Stat ~other/x", err, connect.CodeInvalidArgument, "invalid path")
		long := filepath.Join(e.dir, strings.Repeat("a", 300)) // ENAMETOOLONG
		_, err = e.client.Stat(c, connect.NewRequest(&rpc.StatRequest{Path: long}))
		testutil.WantCode(t, "Stat of a too long name", err, connect.CodeInvalidArgument, "")

		// Empty path: the default workdir; relative and ~ paths: the user's home.
		e.st.SetDefaultWorkdir(e.dir)
		res, err := e.client.Stat(c, connect.NewRequest(&rpc.StatRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		if res.Msg.GetEntry().GetPath() != e.dir || res.Msg.GetEntry().GetType() != rpc.FileType_FILE_TYPE_DIRECTORY {
			t.Fatalf("empty path entry %v, want %s", res.Msg.GetEntry(), e.dir)
		}
		home, err := os.UserHomeDir()
		if err != nil {
			t.Skip(err)
		}
		if os.Geteuid() == 0 {
			res, err = e.client.Stat(c, connect.NewRequest(&rpc.StatRequest{Path: "~"}))
			if err != nil {
				t.Fatal(err)
			}
			if res.Msg.GetEntry().GetPath() != filepath.Clean(home) {
				t.Fatalf("~ resolved to %q, want %q", res.Msg.GetEntry().GetPath(), home)
			}
		}
	})
}

func TestMakeDir(t *testing.T) {
	eachCodec(t, func(t *testing.T, e *env) {
		c := ctx(t)
		old := syscall.Umask(0o077) // MakeDir must not depend on the daemon's umask
		defer syscall.Umask(old)

		p := e.path("a", "b", "c")
		res, err := e.client.MakeDir(c, connect.NewRequest(&rpc.MakeDirRequest{Path: p}))
		if err != nil {
			t.Fatal(err)
		}
		if g := res.Msg.GetEntry(); g.GetPath() != p || g.GetName() != "c" || g.GetType() != rpc.FileType_FILE_TYPE_DIRECTORY {
			t.Fatalf("entry %v", g)
		}
		for _, d := range []string{e.path("a"), e.path("a", "b"), p} {
			fi, err := os.Stat(d)
			if err != nil {
				t.Fatal(err)
			}
			if !fi.IsDir() || fi.Mode().Perm() != 0o755 {
				t.Fatalf("%s: mode %v, want drwxr-xr-x", d, fi.Mode())
			}
		}

		_, err = e.client.MakeDir(c, connect.NewRequest(&rpc.MakeDirRequest{Path: p}))
		testutil.WantCode(t, "MakeDir existing", err, connect.CodeAlreadyExists, "directory already exists: "+p)
		if err.(*connect.Error).Message() != "directory already exists: "+p {
			t.Fatalf("message %q", err.(*connect.Error).Message())
		}

		writeFile(t, e.path("file"), "", 0o644)
		_, err = e.client.MakeDir(c, connect.NewRequest(&rpc.MakeDirRequest{Path: e.path("file")}))
		testutil.WantCode(t, "MakeDir over a file", err, connect.CodeInvalidArgument, "path already exists but it is not a directory: ")
		symlink(t, "nowhere", e.path("dangling"))
		_, err = e.client.MakeDir(c, connect.NewRequest(&rpc.MakeDirRequest{Path: e.path("dangling")}))
		testutil.WantCode(t, "MakeDir over a dangling symlink", err, connect.CodeInvalidArgument, "path already exists but it is not a directory: ")
		symlink(t, "a", e.path("dirlink"))
		_, err = e.client.MakeDir(c, connect.NewRequest(&rpc.MakeDirRequest{Path: e.path("dirlink")}))
		testutil.WantCode(t, "MakeDir over a dir symlink", err, connect.CodeAlreadyExists, "directory already exists: ")
		_, err = e.client.MakeDir(c, connect.NewRequest(&rpc.MakeDirRequest{Path: e.path("file", "sub")}))
		testutil.WantCode(t, "MakeDir below a file", err, connect.CodeInvalidArgument, "")
		_, err = e.client.MakeDir(c, connect.NewRequest(&rpc.MakeDirRequest{Path: "a\x00"}))
		testutil.WantCode(t, "MakeDir of a NUL path", err, connect.CodeInvalidArgument, "invalid path")
	})
}

func TestMakeDirAndMoveOwnedByUser(t *testing.T) {
	testutil.RequireRoot(t, "chowning what MakeDir and Move create to the requesting user")
	eachCodec(t, func(t *testing.T, e *env) {
		c := ctx(t)
		if err := os.Chmod(e.dir, 0o777); err != nil {
			t.Fatal(err)
		}
		p := e.path("x", "y")
		if _, err := e.client.MakeDir(c, withUser(&rpc.MakeDirRequest{Path: p}, "nobody")); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{e.path("x"), p} {
			st := statT(t, d)
			if st.Uid != 65534 || st.Gid != 65534 {
				t.Fatalf("%s owned by %d:%d, want nobody 65534:65534", d, st.Uid, st.Gid)
			}
		}
		if st := statT(t, e.dir); st.Uid != 0 {
			t.Fatalf("existing parent chowned to %d", st.Uid)
		}

		src := e.path("src.txt")
		writeFile(t, src, "data", 0o644)
		dst := e.path("m", "n", "dst.txt")
		res, err := e.client.Move(c, withUser(&rpc.MoveRequest{Source: src, Destination: dst}, "nobody"))
		if err != nil {
			t.Fatal(err)
		}
		if res.Msg.GetEntry().GetPath() != dst {
			t.Fatalf("entry %v", res.Msg.GetEntry())
		}
		for _, d := range []string{e.path("m"), e.path("m", "n")} {
			if st := statT(t, d); st.Uid != 65534 || st.Gid != 65534 {
				t.Fatalf("%s owned by %d:%d, want 65534", d, st.Uid, st.Gid)
			}
		}
		// The moved file keeps its own owner.
		if st := statT(t, dst); st.Uid != 0 {
			t.Fatalf("moved file owned by %d", st.Uid)
		}
	})
}

func statT(t *testing.T, p string) *syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

func TestMove(t *testing.T) {
	eachCodec(t, func(t *testing.T, e *env) {
		c := ctx(t)
		src := e.path("a.txt")
		writeFile(t, src, "hello", 0o640)
		dst := e.path("deep", "er", "b.txt")
		res, err := e.client.Move(c, connect.NewRequest(&rpc.MoveRequest{Source: src, Destination: dst}))
		if err != nil {
			t.Fatal(err)
		}
		g := res.Msg.GetEntry()
		if g.GetPath() != dst || g.GetName() != "b.txt" || g.GetSize() != 5 || g.GetMode() != 0o640 || g.GetType() != rpc.FileType_FILE_TYPE_FILE {
			t.Fatalf("entry %v", g)
		}
		if _, err := os.Stat(src); !os.IsNotExist(err) {
			t.Fatalf("source still there: %v", err)
		}
		if b, err := os.ReadFile(dst); err != nil || string(b) != "hello" {
			t.Fatalf("dest %q %v", b, err)
		}

		// Overwrites an existing file.
		writeFile(t, src, "new", 0o644)
		if _, err := e.client.Move(c, connect.NewRequest(&rpc.MoveRequest{Source: src, Destination: dst})); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(dst); string(b) != "new" {
			t.Fatalf("not overwritten: %q", b)
		}

		// Missing source: not_found, and no destination parents are created.
		_, err = e.client.Move(c, connect.NewRequest(&rpc.MoveRequest{Source: e.path("nope"), Destination: e.path("new", "x")}))
		testutil.WantCode(t, "Move missing source", err, connect.CodeNotFound, "source file not found: ")
		if _, err := os.Stat(e.path("new")); !os.IsNotExist(err) {
			t.Fatalf("destination parent created for a failed move: %v", err)
		}

		// A directory cannot move into itself; a directory cannot replace a file.
		mkdir(t, e.path("d", "sub"))
		_, err = e.client.Move(c, connect.NewRequest(&rpc.MoveRequest{Source: e.path("d"), Destination: e.path("d", "sub", "d")}))
		testutil.WantCode(t, "Move into itself", err, connect.CodeInvalidArgument, "error renaming: ")
		_, err = e.client.Move(c, connect.NewRequest(&rpc.MoveRequest{Source: e.path("d"), Destination: dst}))
		testutil.WantCode(t, "Move a dir over a file", err, connect.CodeFailedPrecondition, "error renaming: ")
		// The destination's parent is a file.
		_, err = e.client.Move(c, connect.NewRequest(&rpc.MoveRequest{Source: dst, Destination: e.path("deep", "er", "b.txt", "x")}))
		testutil.WantCode(t, "Move below a file", err, connect.CodeInvalidArgument, "cannot create parent directories")

		_, err = e.client.Move(c, connect.NewRequest(&rpc.MoveRequest{Source: dst}))
		testutil.WantCode(t, "Move without destination", err, connect.CodeInvalidArgument, "source and destination must not be empty")
		_, err = e.client.Move(c, connect.NewRequest(&rpc.MoveRequest{Source: "\x00", Destination: dst}))
		testutil.WantCode(t, "Move of a NUL path", err, connect.CodeInvalidArgument, "invalid path")
	})
}

func TestRemove(t *testing.T) {
	eachCodec(t, func(t *testing.T, e *env) {
		c := ctx(t)
		f := e.path("f.txt")
		writeFile(t, f, "x", 0o644)
		writeFile(t, e.path("tree", "a", "b", "c.txt"), "x", 0o644)
		for _, p := range []string{f, e.path("tree")} {
			if _, err := e.client.Remove(c, connect.NewRequest(&rpc.RemoveRequest{Path: p})); err != nil {
				t.Fatalf("remove %s: %v", p, err)
			}
			if _, err := os.Lstat(p); !os.IsNotExist(err) {
				t.Fatalf("%s still exists: %v", p, err)
			}
		}
		// A symlink is removed, not its target.
		writeFile(t, e.path("target"), "x", 0o644)
		symlink(t, e.path("target"), e.path("ln"))
		if _, err := e.client.Remove(c, connect.NewRequest(&rpc.RemoveRequest{Path: e.path("ln")})); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(e.path("target")); err != nil {
			t.Fatalf("symlink target removed: %v", err)
		}
		// Missing paths (also below a file) are success.
		writeFile(t, f, "x", 0o644)
		for _, p := range []string{e.path("missing"), e.path("f.txt", "below")} {
			if _, err := e.client.Remove(c, connect.NewRequest(&rpc.RemoveRequest{Path: p})); err != nil {
				t.Fatalf("remove missing %s: %v", p, err)
			}
		}
		_, err := e.client.Remove(c, connect.NewRequest(&rpc.RemoveRequest{}))
		testutil.WantCode(t, "Remove without path", err, connect.CodeInvalidArgument, "path must not be empty")
		_, err = e.client.Remove(c, connect.NewRequest(&rpc.RemoveRequest{Path: "x\x00"}))
		testutil.WantCode(t, "Remove of a NUL path", err, connect.CodeInvalidArgument, "invalid path")
	})
}

func TestRemoveFailureIsInternal(t *testing.T) {
	testutil.RequireRoot(t, "a failure even root gets (other users get permission denied first)")
	e := newEnv(t, codecs[0])
	// A failure even for root: procfs entries cannot be unlinked.
	_, err := e.client.Remove(ctx(t), connect.NewRequest(&rpc.RemoveRequest{Path: "/proc/self/status"}))
	testutil.WantCode(t, "Remove in /proc", err, connect.CodeInternal, "error removing file or directory: ")
}

// Every RPC rejects a Basic header naming an unknown user with E2B's message, even
// the ones that do not act as a user.
func TestUnknownUserRejected(t *testing.T) {
	eachCodec(t, func(t *testing.T, e *env) {
		c := ctx(t)
		const who = "no-such-user-xyz"
		const msg = "invalid username: 'no-such-user-xyz'"
		calls := map[string]func() error{
			"Stat": func() error {
				_, err := e.client.Stat(c, withUser(&rpc.StatRequest{Path: e.dir}, who))
				return err
			},
			"MakeDir": func() error {
				_, err := e.client.MakeDir(c, withUser(&rpc.MakeDirRequest{Path: e.path("x")}, who))
				return err
			},
			"Move": func() error {
				_, err := e.client.Move(c, withUser(&rpc.MoveRequest{Source: e.path("a"), Destination: e.path("b")}, who))
				return err
			},
			"ListDir": func() error {
				_, err := e.client.ListDir(c, withUser(&rpc.ListDirRequest{Path: e.dir}, who))
				return err
			},
			"Remove": func() error {
				_, err := e.client.Remove(c, withUser(&rpc.RemoveRequest{Path: e.path("x")}, who))
				return err
			},
			"WatchDir": func() error {
				s, err := e.client.WatchDir(c, withUser(&rpc.WatchDirRequest{Path: e.dir}, who))
				if err != nil {
					return err
				}
				defer s.Close()
				for s.Receive() {
					return nil // a message means the user was accepted
				}
				return s.Err()
			},
			"CreateWatcher": func() error {
				_, err := e.client.CreateWatcher(c, withUser(&rpc.CreateWatcherRequest{Path: e.dir}, who))
				return err
			},
			"GetWatcherEvents": func() error {
				_, err := e.client.GetWatcherEvents(c, withUser(&rpc.GetWatcherEventsRequest{WatcherId: "wx"}, who))
				return err
			},
			"RemoveWatcher": func() error {
				_, err := e.client.RemoveWatcher(c, withUser(&rpc.RemoveWatcherRequest{WatcherId: "wx"}, who))
				return err
			},
		}
		for name, call := range calls {
			t.Run(name, func(t *testing.T) {
				err := call()
				testutil.WantCode(t, name, err, connect.CodeUnauthenticated, msg)
				if m := err.(*connect.Error).Message(); m != msg {
					t.Fatalf("message %q, want %q", m, msg)
				}
			})
		}
		if _, err := os.Lstat(e.path("x")); !os.IsNotExist(err) {
			t.Fatal("an unauthenticated request changed the filesystem")
		}

		// A malformed Basic header is rejected too; the default user is used without one.
		req := connect.NewRequest(&rpc.StatRequest{Path: e.dir})
		req.Header().Set("Authorization", "Basic !!!")
		_, err := e.client.Stat(c, req)
		testutil.WantCode(t, "Stat with a malformed Basic header", err, connect.CodeUnauthenticated, "")

		e.st.SetDefaultUser(who)
		_, err = e.client.Stat(c, connect.NewRequest(&rpc.StatRequest{Path: e.dir}))
		testutil.WantCode(t, "Stat as a missing default user", err, connect.CodeUnauthenticated, "invalid default user: '"+who+"'")
		// Polling RPCs do not act as a user, so a bad default user does not matter there.
		_, err = e.client.GetWatcherEvents(c, connect.NewRequest(&rpc.GetWatcherEventsRequest{WatcherId: "wx"}))
		testutil.WantCode(t, "GetWatcherEvents with a missing default user", err, connect.CodeNotFound, "watcher with id wx not found")
	})
}

// Empty messages never crash a handler; each answers with a result or a clear error.
func TestEmptyRequests(t *testing.T) {
	eachCodec(t, func(t *testing.T, e *env) {
		e.st.SetDefaultWorkdir(e.dir)
		c := ctx(t)
		if _, err := e.client.Stat(c, connect.NewRequest(&rpc.StatRequest{})); err != nil {
			t.Fatalf("Stat: %v", err)
		}
		_, err := e.client.MakeDir(c, connect.NewRequest(&rpc.MakeDirRequest{}))
		testutil.WantCode(t, "MakeDir of the default workdir", err, connect.CodeAlreadyExists, "directory already exists: "+e.dir)
		_, err = e.client.Move(c, connect.NewRequest(&rpc.MoveRequest{}))
		testutil.WantCode(t, "empty Move", err, connect.CodeInvalidArgument, "")
		if _, err := e.client.ListDir(c, connect.NewRequest(&rpc.ListDirRequest{})); err != nil {
			t.Fatalf("ListDir: %v", err)
		}
		_, err = e.client.Remove(c, connect.NewRequest(&rpc.RemoveRequest{}))
		testutil.WantCode(t, "empty Remove", err, connect.CodeInvalidArgument, "")
		_, err = e.client.GetWatcherEvents(c, connect.NewRequest(&rpc.GetWatcherEventsRequest{}))
		testutil.WantCode(t, "empty GetWatcherEvents", err, connect.CodeNotFound, "watcher with id  not found")
		_, err = e.client.RemoveWatcher(c, connect.NewRequest(&rpc.RemoveWatcherRequest{}))
		testutil.WantCode(t, "empty RemoveWatcher", err, connect.CodeNotFound, "")
		res, err := e.client.CreateWatcher(c, connect.NewRequest(&rpc.CreateWatcherRequest{}))
		if err != nil {
			t.Fatalf("CreateWatcher: %v", err)
		}
		if _, err := e.client.RemoveWatcher(c, connect.NewRequest(&rpc.RemoveWatcherRequest{WatcherId: res.Msg.GetWatcherId()})); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithCancel(c)
		defer cancel()
		s, err := e.client.WatchDir(wctx, connect.NewRequest(&rpc.WatchDirRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if !s.Receive() || s.Msg().GetStart() == nil {
			t.Fatalf("WatchDir on the default dir: %v", s.Err())
		}
	})
}
