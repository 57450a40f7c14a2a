package files

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/wrennhq/wrenn/internal/envd/fsx"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func entriesJSON(t *testing.T, entries ...entryInfo) string {
	t.Helper()
	b, err := json.Marshal(entries)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func expectEntries(t *testing.T, r response, entries ...entryInfo) {
	t.Helper()
	expectStatus(t, r, 200)
	if want := entriesJSON(t, entries...); strings.TrimSpace(r.body) != want {
		t.Fatalf("body %s\nwant %s", strings.TrimSpace(r.body), want)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q", ct)
	}
}

func fileEntry(p string) entryInfo { return entryInfo{Name: filepath.Base(p), Path: p, Type: "file"} }

func expectMode(t *testing.T, p string, want os.FileMode) {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != want {
		t.Fatalf("%s mode %v, want %v", p, st.Mode(), want)
	}
}

func expectAbsent(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s exists (err %v)", p, err)
	}
}

// expectOnly checks that dir holds exactly names: no temporary files left behind.
func expectOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("%s holds %v, want %v", dir, got, names)
	}
}

func TestUploadMultipartSingle(t *testing.T) {
	e := newEnv(t)
	target := e.path("hello.txt")
	// FormData.append("file", "file content"): no filename, target from `path`.
	r := e.postForm(e.url("path", target), nil, formPart{field: "file", data: "file content", noFilename: true})
	expectEntries(t, r, fileEntry(target))
	if strings.TrimSpace(r.body) != `[{"name":"hello.txt","path":"`+target+`","type":"file"}]` {
		t.Fatalf("exact body %s", r.body)
	}
	if readFile(t, target) != "file content" {
		t.Fatal("content")
	}
	expectMode(t, target, 0o644)

	// With `path` given, the part's filename is ignored.
	r = e.postForm(e.url("path", target), nil, formPart{field: "file", filename: "other.txt", data: "v2"})
	expectEntries(t, r, fileEntry(target))
	if readFile(t, target) != "v2" {
		t.Fatal("overwrite")
	}
	expectAbsent(t, e.path("other.txt"))
	expectOnly(t, e.dir, "hello.txt")
}

func TestUploadMultipartMany(t *testing.T) {
	e := newEnv(t)
	a, b, c := e.path("one.txt"), e.path("deep/er/two.txt"), e.path("deep/three.txt")
	r := e.postForm(e.url(), nil,
		formPart{field: "file", filename: a, data: "1"},
		formPart{field: "note", filename: e.path("ignored.txt"), data: "not a file part"},
		formPart{field: "file", filename: b, data: "2"},
		formPart{field: "file", filename: c, data: ""},
	)
	expectEntries(t, r, fileEntry(a), fileEntry(b), fileEntry(c))
	for p, want := range map[string]string{a: "1", b: "2", c: ""} {
		if got := readFile(t, p); got != want {
			t.Fatalf("%s = %q, want %q", p, got, want)
		}
	}
	expectAbsent(t, e.path("ignored.txt"))
	expectMode(t, e.path("deep"), os.ModeDir|0o755)
	expectMode(t, e.path("deep/er"), os.ModeDir|0o755)

	// No file parts at all: an empty array.
	r = e.postForm(e.url(), nil, formPart{field: "other", filename: "x", data: "y"})
	expectStatus(t, r, 200)
	if strings.TrimSpace(r.body) != "[]" {
		t.Fatalf("body %s", r.body)
	}
}

func TestUploadMultipartErrors(t *testing.T) {
	e := newEnv(t)
	a := e.path("dup.txt")

	r := e.postForm(e.url(), nil, formPart{field: "file", filename: a, data: "1"}, formPart{field: "file", filename: e.path("sub/../dup.txt"), data: "2"})
	expectError(t, r, 400, "you cannot upload multiple files to the same path '"+a+"' in one upload request, only the first specified file was uploaded")
	if readFile(t, a) != "1" {
		t.Fatal("first part should have been written")
	}
	// Two parts with `path` given collide as well.
	r = e.postForm(e.url("path", e.path("p.txt")), nil, formPart{field: "file", data: "1", noFilename: true}, formPart{field: "file", data: "2", noFilename: true})
	expectStatus(t, r, 400)

	// No filename and no path.
	r = e.postForm(e.url(), nil, formPart{field: "file", data: "x", noFilename: true})
	expectError(t, r, 400, "error getting multipart custom part file name: filename not found in Content-Disposition header")

	// Malformed bodies are 400, not 500.
	bad := []struct{ ct, body string }{
		{"multipart/form-data; boundary=XYZ", "this is not multipart"},
		{"multipart/form-data; boundary=XYZ", "--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + e.path("trunc.txt") + "\"\r\n\r\npartial data without end"},
		{"multipart/form-data; boundary=XYZ", "--XYZ\r\nbroken header line\r\n\r\n"},
		{"multipart/form-data; boundary=XYZ", ""},
	}
	for _, c := range bad {
		r := e.do(http.MethodPost, e.url(), strings.NewReader(c.body), map[string]string{"Content-Type": c.ct})
		expectStatus(t, r, 400)
	}
	expectAbsent(t, e.path("trunc.txt"))
	r = e.do(http.MethodPost, e.url(), strings.NewReader("x"), map[string]string{"Content-Type": "multipart/form-data"})
	expectError(t, r, 400, "error parsing multipart form: no multipart boundary param in Content-Type")
}

func TestUploadTruncatedKeepsPreviousVersion(t *testing.T) {
	e := newEnv(t)
	target := e.path("keep.txt")
	writeFile(t, target, "previous version")
	body := "--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + target + "\"\r\n\r\n" + strings.Repeat("new data ", 1000)
	r := e.do(http.MethodPost, e.url(), strings.NewReader(body), map[string]string{"Content-Type": "multipart/form-data; boundary=XYZ"})
	expectStatus(t, r, 400)
	if readFile(t, target) != "previous version" {
		t.Fatal("a failed upload clobbered the previous version")
	}
	expectOnly(t, e.dir, "keep.txt")

	// A corrupt gzip stream fails midway too.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(bytes.Repeat([]byte("abc"), 100000))
	_ = zw.Close()
	corrupt := gz.Bytes()[:gz.Len()/2]
	r = e.do(http.MethodPost, e.url("path", target), bytes.NewReader(corrupt),
		map[string]string{"Content-Type": "application/octet-stream", "Content-Encoding": "gzip"})
	expectStatus(t, r, 400)
	if readFile(t, target) != "previous version" {
		t.Fatal("a failed gzip upload clobbered the previous version")
	}
	expectOnly(t, e.dir, "keep.txt")
}

func TestUploadClientDisconnect(t *testing.T) {
	e := newEnv(t)
	target := e.path("big.bin")
	writeFile(t, target, "old")

	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	u := strings.TrimPrefix(e.url("path", target), e.srv.URL)
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", u, 10<<20)
	_, _ = conn.Write(bytes.Repeat([]byte("n"), 3<<20))
	_ = conn.Close()
	e.srv.Close() // waits for the handler to finish

	if readFile(t, target) != "old" {
		t.Fatal("disconnect left a partial file in place of the old one")
	}
	expectOnly(t, e.dir, "big.bin")
}

func TestUploadOctetStream(t *testing.T) {
	e := newEnv(t)
	target := e.path("raw/data.bin")
	r := e.postRaw(e.url("path", target), "raw bytes", nil)
	expectEntries(t, r, fileEntry(target))
	if readFile(t, target) != "raw bytes" {
		t.Fatal("content")
	}
	expectMode(t, target, 0o644)

	r = e.postRaw(e.url(), "x", nil)
	expectError(t, r, 400, "path query parameter is required for raw body upload")
	// Content-Type parameters are fine.
	r = e.do(http.MethodPost, e.url("path", target), strings.NewReader("v2"), map[string]string{"Content-Type": "application/octet-stream; charset=binary"})
	expectStatus(t, r, 200)
	if readFile(t, target) != "v2" {
		t.Fatal("overwrite")
	}
}

func TestUploadGzip(t *testing.T) {
	e := newEnv(t)
	content := strings.Repeat("compress me ", 50000)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(content))
	_ = zw.Close()

	target := e.path("gz.txt")
	r := e.do(http.MethodPost, e.url("path", target), bytes.NewReader(gz.Bytes()),
		map[string]string{"Content-Type": "application/octet-stream", "Content-Encoding": "gzip"})
	expectEntries(t, r, fileEntry(target))
	if readFile(t, target) != content {
		t.Fatal("gzip octet-stream content")
	}

	// A gzip-compressed multipart body.
	ct, body := multipartBody(t, formPart{field: "file", filename: e.path("gzm.txt"), data: content})
	var gzm bytes.Buffer
	zw = gzip.NewWriter(&gzm)
	_, _ = zw.Write(body.Bytes())
	_ = zw.Close()
	r = e.do(http.MethodPost, e.url(), &gzm, map[string]string{"Content-Type": ct, "Content-Encoding": "GZIP"})
	expectEntries(t, r, fileEntry(e.path("gzm.txt")))
	if readFile(t, e.path("gzm.txt")) != content {
		t.Fatal("gzip multipart content")
	}

	r = e.do(http.MethodPost, e.url("path", e.path("notgz.txt")), strings.NewReader("plain text"),
		map[string]string{"Content-Type": "application/octet-stream", "Content-Encoding": "gzip"})
	expectStatus(t, r, 400)
	if !strings.Contains(r.body, "error decompressing request body: failed to create gzip reader") {
		t.Fatalf("body %s", r.body)
	}
	expectAbsent(t, e.path("notgz.txt"))

	r = e.do(http.MethodPost, e.url("path", e.path("br.txt")), strings.NewReader("x"),
		map[string]string{"Content-Type": "application/octet-stream", "Content-Encoding": "br"})
	expectError(t, r, 400, "error decompressing request body: unsupported Content-Encoding: br, supported: [gzip]")
	expectAbsent(t, e.path("br.txt"))

	r = e.do(http.MethodPost, e.url("path", e.path("id.txt")), strings.NewReader("x"),
		map[string]string{"Content-Type": "application/octet-stream", "Content-Encoding": "identity"})
	expectStatus(t, r, 200)
}

func TestUploadContentTypes(t *testing.T) {
	e := newEnv(t)
	target := e.path("ct.txt")
	r := e.do(http.MethodPost, e.url("path", target), strings.NewReader("x"), map[string]string{"Content-Type": "text/plain"})
	expectError(t, r, 400, "unsupported content type: text/plain, expected multipart/form-data or application/octet-stream")
	r = e.do(http.MethodPost, e.url("path", target), strings.NewReader("x"), nil)
	expectError(t, r, 400, "unsupported content type: , expected multipart/form-data or application/octet-stream")
	r = e.do(http.MethodPost, e.url("path", target), strings.NewReader("x"), map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	expectStatus(t, r, 400)
	expectAbsent(t, target)
}

func TestUploadIntoDirectory(t *testing.T) {
	e := newEnv(t)
	dir := e.path("adir")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	expectError(t, e.postRaw(e.url("path", dir), "x", nil), 400, "path is a directory: "+dir)
	r := e.postForm(e.url(), nil, formPart{field: "file", filename: dir, data: "x"})
	expectError(t, r, 400, "path is a directory: "+dir)
	// A symlink to a directory is a directory.
	if err := os.Symlink(dir, e.path("dirlink")); err != nil {
		t.Fatal(err)
	}
	expectError(t, e.postRaw(e.url("path", e.path("dirlink")), "x", nil), 400, "path is a directory: "+e.path("dirlink"))
	// A parent that is a file is the client's mistake as well.
	writeFile(t, e.path("plain"), "x")
	r = e.postRaw(e.url("path", e.path("plain/child.txt")), "x", nil)
	expectStatus(t, r, 400)
	expectOnly(t, dir)
}

func TestUploadOverwriteSemantics(t *testing.T) {
	e := newEnv(t)
	// The permission bits of an existing file survive an overwrite.
	script := e.path("run.sh")
	writeFile(t, script, "#!/bin/sh\n")
	if err := os.Chmod(script, 0o755); err != nil {
		t.Fatal(err)
	}
	expectStatus(t, e.postRaw(e.url("path", script), "#!/bin/sh\necho hi\n", nil), 200)
	expectMode(t, script, 0o755)

	// Writing through a symlink updates its target and keeps the link.
	real := e.path("real.txt")
	writeFile(t, real, "old")
	link := e.path("link.txt")
	if err := os.Symlink("real.txt", link); err != nil {
		t.Fatal(err)
	}
	r := e.postRaw(e.url("path", link), "new", nil)
	expectEntries(t, r, fileEntry(link))
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("symlink replaced: %v", err)
	}
	if readFile(t, real) != "new" {
		t.Fatal("symlink target not updated")
	}
	// A dangling symlink creates its target.
	if err := os.Symlink("created.txt", e.path("dangling")); err != nil {
		t.Fatal(err)
	}
	expectStatus(t, e.postRaw(e.url("path", e.path("dangling")), "made", nil), 200)
	if readFile(t, e.path("created.txt")) != "made" {
		t.Fatal("dangling symlink target not created")
	}
	expectOnly(t, e.dir, "created.txt", "dangling", "link.txt", "real.txt", "run.sh")
}

// xattrsSupported reports whether dir's filesystem takes user xattrs.
func xattrsSupported(t *testing.T, dir string) bool {
	p := filepath.Join(dir, ".xattr-probe")
	writeFile(t, p, "")
	defer os.Remove(p)
	return unix.Setxattr(p, "user.probe", []byte("1"), 0) == nil
}

func TestUploadMetadata(t *testing.T) {
	e := newEnv(t)
	if !xattrsSupported(t, e.dir) {
		t.Skip("filesystem of the temp dir has no user xattrs")
	}
	target := e.path("meta.txt")
	md := map[string]string{"X-Metadata-Author": "mish", "x-metadata-Purpose": "Upload Test"}

	r := e.postRaw(e.url("path", target), "v1", md)
	want := entryInfo{Name: "meta.txt", Path: target, Type: "file", Metadata: map[string]string{"author": "mish", "purpose": "Upload Test"}}
	expectEntries(t, r, want)
	if strings.TrimSpace(r.body) != `[{"metadata":{"author":"mish","purpose":"Upload Test"},"name":"meta.txt","path":"`+target+`","type":"file"}]` {
		t.Fatalf("exact body %s", r.body)
	}
	buf := make([]byte, 64)
	n, err := unix.Getxattr(target, "user.e2b.author", buf)
	if err != nil || string(buf[:n]) != "mish" {
		t.Fatalf("xattr: %q %v", buf[:n], err)
	}

	// Overwrite with other metadata replaces the whole set.
	r = e.postForm(e.url("path", target), map[string]string{"X-Metadata-Reviewer": "ana"}, formPart{field: "file", data: "v2", noFilename: true})
	expectEntries(t, r, entryInfo{Name: "meta.txt", Path: target, Type: "file", Metadata: map[string]string{"reviewer": "ana"}})

	// Overwrite without metadata clears it, and the response has no metadata key.
	r = e.postRaw(e.url("path", target), "v3", nil)
	expectEntries(t, r, fileEntry(target))
	if strings.Contains(r.body, "metadata") {
		t.Fatalf("metadata key present: %s", r.body)
	}
	if _, err := unix.Getxattr(target, "user.e2b.reviewer", buf); !errors.Is(err, unix.ENODATA) {
		t.Fatalf("old metadata survived: %v", err)
	}

	// Multi-file uploads apply the metadata to every file.
	a, b := e.path("m/a.txt"), e.path("m/b.txt")
	r = e.postForm(e.url(), map[string]string{"X-Metadata-Tag": "both"}, formPart{field: "file", filename: a, data: "a"}, formPart{field: "file", filename: b, data: "b"})
	tag := map[string]string{"tag": "both"}
	expectEntries(t, r, entryInfo{Name: "a.txt", Path: a, Type: "file", Metadata: tag}, entryInfo{Name: "b.txt", Path: b, Type: "file", Metadata: tag})
	// "X-Metadata-" with an empty key is ignored.
	r = e.postRaw(e.url("path", e.path("emptykey.txt")), "x", map[string]string{"X-Metadata-": "v"})
	expectEntries(t, r, fileEntry(e.path("emptykey.txt")))
}

func TestUploadInvalidMetadataWritesNothing(t *testing.T) {
	e := newEnv(t)
	existing := e.path("existing.txt")
	writeFile(t, existing, "keep")
	cases := map[string]map[string]string{
		"non-ASCII value": {"X-Metadata-Author": "caf\xc3\xa9"},
		"long key":        {"X-Metadata-" + strings.Repeat("k", 247): "v"},
		"too large":       {"X-Metadata-A": strings.Repeat("v", 2100), "X-Metadata-B": strings.Repeat("v", 2100)},
	}
	for name, hdr := range cases {
		t.Run(name, func(t *testing.T) {
			target := e.path("invalid-" + strings.ReplaceAll(name, " ", "-") + ".txt")
			r := e.postRaw(e.url("path", target), "x", hdr)
			expectStatus(t, r, 400)
			if !strings.Contains(r.body, "invalid metadata: ") {
				t.Fatalf("body %s", r.body)
			}
			expectAbsent(t, target)
			r = e.postForm(e.url(), hdr, formPart{field: "file", filename: target, data: "x"})
			expectStatus(t, r, 400)
			expectAbsent(t, target)
			r = e.postRaw(e.url("path", existing), "clobber", hdr)
			expectStatus(t, r, 400)
			if readFile(t, existing) != "keep" {
				t.Fatal("rejected upload changed the existing file")
			}
		})
	}
	// The longest key is fine. (The 4096-byte total is not tested at the limit: ext4
	// keeps all xattrs of a file in one block, so it cannot store quite that much.)
	ok := map[string]string{"X-Metadata-" + strings.Repeat("k", 246): strings.Repeat("v", 1000)}
	expectStatus(t, e.postRaw(e.url("path", e.path("limits.txt")), "x", ok), 200)
}

func TestUploadDiskFull(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	if os.Getuid() != 0 {
		t.Skip("writing /dev/full needs root on most systems")
	}
	e := newEnv(t)
	// /dev/full answers every write with ENOSPC: the same path a full disk takes.
	r := e.postRaw(e.url("path", "/dev/full"), "data", nil)
	expectError(t, r, http.StatusInsufficientStorage, "attempted to write 4 bytes: not enough disk space available")
	r = e.postForm(e.url("path", "/dev/full"), nil, formPart{field: "file", data: "data", noFilename: true})
	expectStatus(t, r, http.StatusInsufficientStorage)
	if !strings.HasSuffix(strings.TrimSpace(r.body), `not enough disk space available"}`) {
		t.Fatalf("body %s", r.body)
	}
	// Writing to a character device leaves it one.
	if fi, err := os.Stat("/dev/full"); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("/dev/full changed: %v", err)
	}
}

func TestFsErrorMapping(t *testing.T) {
	wrap := func(err error) error { return &os.PathError{Op: "write", Path: "/x", Err: err} }
	if e := fsError("w", wrap(syscall.ENOSPC), 0); e.status != 507 || e.msg != "not enough disk space available" {
		t.Errorf("ENOSPC: %d %s", e.status, e.msg)
	}
	if e := fsError("w", wrap(syscall.EDQUOT), 10); e.status != 507 || e.msg != "attempted to write 10 bytes: not enough disk space available" {
		t.Errorf("EDQUOT: %d %s", e.status, e.msg)
	}
	if e := fsError("w", wrap(syscall.ENOTDIR), 0); e.status != 400 {
		t.Errorf("ENOTDIR: %d", e.status)
	}
	for _, errno := range []syscall.Errno{syscall.EACCES, syscall.EPERM, syscall.EROFS} {
		if e := fsError("w", wrap(errno), 0); e.status != 403 {
			t.Errorf("%v: %d", errno, e.status)
		}
	}
	if e := fsError("w", wrap(syscall.ENOENT), 0); e.status != 400 || !strings.Contains(e.msg, "does not take new files") {
		t.Errorf("ENOENT: %d %s", e.status, e.msg)
	}
	if e := fsError("w", wrap(syscall.EIO), 0); e.status != 500 {
		t.Errorf("EIO: %d", e.status)
	}
}

// TestUploadEmitsWriteEvent checks that an overwrite, although it replaces the inode,
// shows up as IN_MODIFY on the target's name, which the SDKs' watch tests wait for.
func TestUploadEmitsWriteEvent(t *testing.T) {
	e := newEnv(t)
	target := e.path("watched.txt")
	writeFile(t, target, "before")

	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Skipf("inotify: %v", err)
	}
	defer unix.Close(fd)
	if _, err := unix.InotifyAddWatch(fd, e.dir, unix.IN_MODIFY|unix.IN_CREATE|unix.IN_MOVED_TO); err != nil {
		t.Fatal(err)
	}
	expectStatus(t, e.postRaw(e.url("path", target), "after", nil), 200)
	expectStatus(t, e.postRaw(e.url("path", e.path("fresh.txt")), "new", nil), 200)

	modified := map[string]bool{}
	deadline := time.Now().Add(2 * time.Second)
	buf := make([]byte, 64<<10)
	for time.Now().Before(deadline) && !(modified["watched.txt"] && modified["fresh.txt"]) {
		n, err := unix.Read(fd, buf)
		if err != nil || n <= 0 {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
			if ev.Mask&unix.IN_MODIFY != 0 {
				modified[name] = true
			}
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
	}
	if !modified["watched.txt"] || !modified["fresh.txt"] {
		t.Fatalf("IN_MODIFY seen for %v, want watched.txt and fresh.txt", modified)
	}
}

// TestNoFDLeaks runs successful and failing requests and checks the process holds no
// more descriptors afterwards.
func TestNoFDLeaks(t *testing.T) {
	e := newEnv(t)
	writeFile(t, e.path("f.txt"), "data")
	if err := os.Mkdir(e.path("d"), 0o755); err != nil {
		t.Fatal(err)
	}
	round := func() {
		e.get(e.url("path", e.path("f.txt")), nil)
		e.get(e.url("path", e.path("f.txt")), map[string]string{"Accept-Encoding": "gzip"})
		e.get(e.url("path", e.path("f.txt")), map[string]string{"Range": "bytes=1-2"})
		e.get(e.url("path", e.path("missing")), nil)
		e.get(e.url("path", "/proc/self/status"), nil)
		e.postRaw(e.url("path", e.path("up.txt")), "x", nil)
		e.postRaw(e.url("path", e.path("d")), "x", nil)
		e.postForm(e.url(), nil, formPart{field: "file", filename: e.path("m.txt"), data: "m"}, formPart{field: "file", filename: e.path("m.txt"), data: "m"})
		e.do(http.MethodPost, e.url(), strings.NewReader("--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\""+e.path("t.txt")+"\"\r\n\r\ntrunc"), map[string]string{"Content-Type": "multipart/form-data; boundary=B"})
		e.do(http.MethodPost, e.url("path", e.path("g.txt")), strings.NewReader("not gzip"), map[string]string{"Content-Type": "application/octet-stream", "Content-Encoding": "gzip"})
	}
	countFDs := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skipf("no /proc/self/fd: %v", err)
		}
		return len(ents)
	}
	round() // warm up lazily opened runtime descriptors
	time.Sleep(50 * time.Millisecond)
	before := countFDs()
	for range 5 {
		round()
	}
	var after int
	for range 50 { // server-side connection teardown is asynchronous
		if after = countFDs(); after <= before {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("descriptors: %d before, %d after", before, after)
}

// TestNamedTempFallback covers the path taken on filesystems without O_TMPFILE: a
// hidden named file renamed over the target, or removed when the upload fails.
func TestNamedTempFallback(t *testing.T) {
	dir := t.TempDir()
	final := filepath.Join(dir, "x.txt")
	writeFile(t, final, "old")

	named := func() *tempFile {
		f, err := os.CreateTemp(dir, fsx.UploadTempPrefix("x.txt")+"*")
		if err != nil {
			t.Fatal(err)
		}
		return &tempFile{f: f, dir: dir, base: "x.txt", name: f.Name()}
	}
	failed := named()
	_, _ = failed.f.WriteString("partial")
	failed.discard()
	expectOnly(t, dir, "x.txt")

	ok := named()
	_, _ = ok.f.WriteString("new")
	if err := ok.commit(final); err != nil {
		t.Fatal(err)
	}
	signalWrite(final, ok.f)
	ok.discard()
	expectOnly(t, dir, "x.txt")
	if readFile(t, final) != "new" {
		t.Fatal("content not replaced")
	}
	if len(fsx.UploadTempPrefix(strings.Repeat("n", 255))) > 100 {
		t.Fatal("temporary names must stay well under NAME_MAX")
	}
}
