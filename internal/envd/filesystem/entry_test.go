package filesystem

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	rpc "github.com/wrennhq/wrenn/gen/envd/filesystem"
	"github.com/wrennhq/wrenn/internal/testutil"
)

func tempDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestEntryFile(t *testing.T) {
	dir := tempDir(t)
	p := filepath.Join(dir, "file.txt")
	writeFile(t, p, "test", 0o644)
	mtime := time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	e, err := Entry(p, p)
	if err != nil {
		t.Fatal(err)
	}
	if e.GetName() != "file.txt" || e.GetPath() != p || e.GetType() != rpc.FileType_FILE_TYPE_FILE {
		t.Fatalf("entry %v", e)
	}
	if e.GetSize() != 4 || e.GetMode() != 0o644 || e.GetPermissions() != "-rw-r--r--" {
		t.Fatalf("size/mode/permissions: %d %o %q", e.GetSize(), e.GetMode(), e.GetPermissions())
	}
	if os.Geteuid() == 0 && (e.GetOwner() != "root" || e.GetGroup() != "root") {
		t.Fatalf("owner/group %q/%q, want root/root", e.GetOwner(), e.GetGroup())
	}
	if !e.GetModifiedTime().AsTime().Equal(mtime) {
		t.Fatalf("modified %v, want %v", e.GetModifiedTime().AsTime(), mtime)
	}
	if e.SymlinkTarget != nil {
		t.Fatalf("symlink_target set on a file: %q", e.GetSymlinkTarget())
	}
	if e.Metadata != nil {
		t.Fatalf("metadata %v on a file without xattrs", e.Metadata)
	}
}

func TestEntryDirAndSpecialModes(t *testing.T) {
	dir := tempDir(t)
	d := filepath.Join(dir, "sub")
	mkdir(t, d)
	e, err := Entry(d, d)
	if err != nil {
		t.Fatal(err)
	}
	if e.GetType() != rpc.FileType_FILE_TYPE_DIRECTORY || e.GetMode() != 0o755 || e.GetPermissions() != "drwxr-xr-x" {
		t.Fatalf("dir entry %v", e)
	}
	// Mode is permission bits only; the string shows the special bits Go-style.
	if err := os.Chmod(d, 0o755|fs.ModeSticky); err != nil {
		t.Fatal(err)
	}
	e, err = Entry(d, d)
	if err != nil {
		t.Fatal(err)
	}
	if e.GetMode() != 0o755 || e.GetPermissions() != "dtrwxr-xr-x" {
		t.Fatalf("sticky dir: mode %o permissions %q", e.GetMode(), e.GetPermissions())
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	e, err = Entry(fifo, fifo)
	if err != nil {
		t.Fatal(err)
	}
	if e.GetType() != rpc.FileType_FILE_TYPE_UNSPECIFIED || e.GetPermissions() != "prw-------" {
		t.Fatalf("fifo entry %v", e)
	}
}

func TestEntrySymlinks(t *testing.T) {
	dir := tempDir(t)
	target := filepath.Join(dir, "real", "target.txt")
	writeFile(t, target, "hello", 0o600)
	mkdir(t, filepath.Join(dir, "real", "d"))

	// Relative link: the target is reported fully resolved and absolute.
	link := filepath.Join(dir, "link")
	symlink(t, "real/target.txt", link)
	e, err := Entry(link, link)
	if err != nil {
		t.Fatal(err)
	}
	if e.GetType() != rpc.FileType_FILE_TYPE_FILE || e.GetMode() != 0o600 {
		t.Fatalf("symlink to file: type %v mode %o, want target's", e.GetType(), e.GetMode())
	}
	if e.GetPermissions() != "Lrwxrwxrwx" {
		t.Fatalf("permissions %q, want the link's own", e.GetPermissions())
	}
	if e.SymlinkTarget == nil || e.GetSymlinkTarget() != target {
		t.Fatalf("symlink_target %v, want %s", e.SymlinkTarget, target)
	}
	if e.GetName() != "link" || e.GetPath() != link {
		t.Fatalf("name/path %q %q", e.GetName(), e.GetPath())
	}

	// Chain of links to a directory: resolved to the end.
	l2 := filepath.Join(dir, "l2")
	symlink(t, filepath.Join(dir, "real", "d"), l2)
	l1 := filepath.Join(dir, "l1")
	symlink(t, "l2", l1)
	e, err = Entry(l1, l1)
	if err != nil {
		t.Fatal(err)
	}
	if e.GetType() != rpc.FileType_FILE_TYPE_DIRECTORY || e.GetSymlinkTarget() != filepath.Join(dir, "real", "d") || e.GetMode() != 0o755 {
		t.Fatalf("link chain entry %v", e)
	}

	// Dangling and looping links have no type.
	dangling := filepath.Join(dir, "dangling")
	symlink(t, "nowhere", dangling)
	e, err = Entry(dangling, dangling)
	if err != nil {
		t.Fatal(err)
	}
	if e.GetType() != rpc.FileType_FILE_TYPE_UNSPECIFIED || e.SymlinkTarget == nil || e.GetSymlinkTarget() != filepath.Join(dir, "nowhere") {
		t.Fatalf("dangling link entry %v", e)
	}
	loopA, loopB := filepath.Join(dir, "loopA"), filepath.Join(dir, "loopB")
	symlink(t, loopB, loopA)
	symlink(t, loopA, loopB)
	e, err = Entry(loopA, loopA)
	if err != nil {
		t.Fatal(err)
	}
	if e.GetType() != rpc.FileType_FILE_TYPE_UNSPECIFIED || e.SymlinkTarget == nil {
		t.Fatalf("looping link entry %v", e)
	}

	// The requested path is reported as is, even when reached through a link.
	viaLink := filepath.Join(l1, "x")
	writeFile(t, filepath.Join(dir, "real", "d", "x"), "", 0o644)
	e, err = Entry(viaLink, filepath.Join(dir, "real", "d", "x"))
	if err != nil {
		t.Fatal(err)
	}
	if e.GetPath() != viaLink || e.SymlinkTarget != nil {
		t.Fatalf("entry through link %v", e)
	}
}

func TestEntryMissing(t *testing.T) {
	p := filepath.Join(tempDir(t), "nope")
	if _, err := Entry(p, p); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err %v, want not-exist", err)
	}
}

// setXattr sets a metadata attribute or skips when the filesystem has no user xattrs.
func setXattr(t *testing.T, path, key, value string) {
	t.Helper()
	if err := unix.Lsetxattr(path, "user.e2b."+key, []byte(value), 0); err != nil {
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
			t.Skipf("skipping: %s has no user xattrs: %v", filepath.Dir(path), err)
		}
		t.Fatal(err)
	}
}

func TestEntryMetadata(t *testing.T) {
	dir := tempDir(t)
	p := filepath.Join(dir, "f")
	writeFile(t, p, "x", 0o644)
	setXattr(t, p, "author", "alice")
	if err := unix.Lsetxattr(p, "user.other", []byte("ignored"), 0); err != nil {
		t.Fatal(err)
	}
	e, err := Entry(p, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.GetMetadata()) != 1 || e.GetMetadata()["author"] != "alice" {
		t.Fatalf("metadata %v, want {author: alice}", e.GetMetadata())
	}
}

func TestEntryOwnerNames(t *testing.T) {
	testutil.RequireRoot(t, "chowning files to other users")
	dir := tempDir(t)
	named := filepath.Join(dir, "named")
	writeFile(t, named, "", 0o644)
	if err := os.Lchown(named, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	e, err := Entry(named, named)
	if err != nil {
		t.Fatal(err)
	}
	if e.GetOwner() != "nobody" {
		t.Skipf("skipping: uid 65534 is %q here, not nobody", e.GetOwner())
	}
	if e.GetGroup() != "nogroup" && e.GetGroup() != "nobody" {
		t.Fatalf("group %q, want nogroup", e.GetGroup())
	}

	// Ids without a passwd/group entry are reported numerically.
	numeric := filepath.Join(dir, "numeric")
	writeFile(t, numeric, "", 0o644)
	if err := os.Lchown(numeric, 54321, 54322); err != nil {
		t.Fatal(err)
	}
	e, err = Entry(numeric, numeric)
	if err != nil {
		t.Fatal(err)
	}
	if e.GetOwner() != "54321" || e.GetGroup() != "54322" {
		t.Fatalf("owner/group %q/%q, want 54321/54322", e.GetOwner(), e.GetGroup())
	}
}

func TestIDNamesCache(t *testing.T) {
	c := newIDNames(time.Hour)
	calls := 0
	find := func(id string) (string, error) { calls++; return "name" + id, nil }
	for range 3 {
		if got := c.lookup(c.users, 7, find); got != "name7" {
			t.Fatalf("got %q", got)
		}
	}
	if calls != 1 {
		t.Fatalf("%d lookups, want 1 (cached)", calls)
	}
	miss := func(string) (string, error) { return "", errors.New("unknown") }
	if got := c.lookup(c.groups, 8, miss); got != "8" {
		t.Fatalf("fallback %q, want 8", got)
	}
	expired := newIDNames(time.Nanosecond)
	expired.lookup(expired.users, 1, find)
	time.Sleep(time.Millisecond)
	expired.lookup(expired.users, 1, find)
	if calls != 3 {
		t.Fatalf("%d lookups, want 3 (expired entry refreshed)", calls)
	}
}
