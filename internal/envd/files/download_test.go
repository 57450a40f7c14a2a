package files

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestDownloadErrors(t *testing.T) {
	e := newEnv(t)
	writeFile(t, e.path("f.txt"), "x")

	missing := e.path("missing.txt")
	expectError(t, e.get(e.url("path", missing), nil), 404, "path '"+missing+"' does not exist")
	under := e.path("f.txt/child")
	expectError(t, e.get(e.url("path", under), nil), 404, "path '"+under+"' does not exist")
	expectError(t, e.get(e.url("path", e.dir), nil), 400, "path '"+e.dir+"' is a directory")
	// A trailing slash and dot segments are cleaned before the check.
	expectError(t, e.get(e.url("path", e.dir+"/./"), nil), 400, "path '"+e.dir+"' is a directory")

	const msg406 = "error parsing Accept-Encoding: no acceptable encoding found, supported: [gzip]"
	for _, ae := range []string{"identity;q=0", "*;q=0", "br, identity;q=0", "gzip;q=0, identity;q=0", "br;q=1, *;q=0"} {
		r := e.get(e.url("path", e.path("f.txt")), map[string]string{"Accept-Encoding": ae})
		expectError(t, r, http.StatusNotAcceptable, msg406)
	}
	// Existence is checked before the encoding.
	r := e.get(e.url("path", missing), map[string]string{"Accept-Encoding": "identity;q=0"})
	expectStatus(t, r, 404)
}

func TestDownloadIdentity(t *testing.T) {
	e := newEnv(t)
	p := e.path(`we"ird\name.txt`)
	writeFile(t, p, "hello world")
	mtime := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}

	r := e.get(e.url("path", p), nil)
	expectStatus(t, r, 200)
	if r.body != "hello world" {
		t.Fatalf("body %q", r.body)
	}
	want := map[string]string{
		"Content-Disposition": `inline; filename="we\"ird\\name.txt"`,
		"Vary":                "Accept-Encoding",
		"Content-Length":      "11",
		"Content-Type":        "text/plain; charset=utf-8",
		"Accept-Ranges":       "bytes",
		"Last-Modified":       mtime.Format(http.TimeFormat),
	}
	for k, v := range want {
		if got := r.header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if ce := r.header.Get("Content-Encoding"); ce != "" {
		t.Errorf("Content-Encoding %q on identity response", ce)
	}

	// Range → 206, even when gzip is acceptable.
	r = e.get(e.url("path", p), map[string]string{"Range": "bytes=6-", "Accept-Encoding": "gzip"})
	expectStatus(t, r, http.StatusPartialContent)
	if r.body != "world" || r.header.Get("Content-Range") != "bytes 6-10/11" || r.header.Get("Content-Encoding") != "" {
		t.Fatalf("range: body %q headers %v", r.body, r.header)
	}
	// Conditional → 304.
	r = e.get(e.url("path", p), map[string]string{"If-Modified-Since": mtime.Add(time.Hour).Format(http.TimeFormat), "Accept-Encoding": "gzip"})
	expectStatus(t, r, http.StatusNotModified)

	// Extensionless files are sniffed, empty ones are empty.
	writeFile(t, e.path("blob"), "\x89PNG\r\n\x1a\n0000")
	if ct := e.get(e.url("path", e.path("blob")), nil).header.Get("Content-Type"); ct != "image/png" {
		t.Errorf("sniffed type %q", ct)
	}
	writeFile(t, e.path("empty.txt"), "")
	r = e.get(e.url("path", e.path("empty.txt")), nil)
	expectStatus(t, r, 200)
	if r.body != "" {
		t.Fatalf("empty file body %q", r.body)
	}
	// Symlinks are followed.
	if err := os.Symlink(p, e.path("link.txt")); err != nil {
		t.Fatal(err)
	}
	if r := e.get(e.url("path", e.path("link.txt")), nil); r.body != "hello world" {
		t.Fatalf("symlink body %q", r.body)
	}
}

func TestDownloadGzip(t *testing.T) {
	e := newEnv(t)
	p := e.path("data.json")
	content := strings.Repeat(`{"k":"value"}`, 10000)
	writeFile(t, p, content)

	for _, ae := range []string{"gzip", "gzip, deflate, br", "br;q=1, gzip;q=0.5", "identity;q=0.5, gzip", "identity;q=0, *"} {
		r := e.get(e.url("path", p), map[string]string{"Accept-Encoding": ae})
		expectStatus(t, r, 200)
		if r.header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("%q: Content-Encoding %q", ae, r.header.Get("Content-Encoding"))
		}
		// net/http adds a Content-Length itself when a small response fits its buffer;
		// it must then describe the compressed body.
		if cl := r.header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(r.body)) {
			t.Fatalf("%q: Content-Length %s for %d compressed bytes", ae, cl, len(r.body))
		}
		if r.header.Get("Content-Type") != "application/json" || r.header.Get("Vary") != "Accept-Encoding" ||
			r.header.Get("Content-Disposition") != `inline; filename="data.json"` {
			t.Fatalf("%q: headers %v", ae, r.header)
		}
		zr, err := gzip.NewReader(strings.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != content {
			t.Fatalf("%q: decompressed content differs", ae)
		}
	}
	for _, ae := range []string{"", "identity", "br", "*", "gzip;q=0", "gzip;q=0.5, identity", "deflate, br"} {
		h := map[string]string{}
		if ae != "" {
			h["Accept-Encoding"] = ae
		}
		r := e.get(e.url("path", p), h)
		expectStatus(t, r, 200)
		if r.header.Get("Content-Encoding") != "" || r.body != content {
			t.Fatalf("%q: expected identity, got encoding %q", ae, r.header.Get("Content-Encoding"))
		}
	}
}

func TestDownloadPseudoFile(t *testing.T) {
	e := newEnv(t)
	// procfs reports size 0 and cannot seek to the end; the content must still arrive.
	r := e.get(e.url("path", "/proc/self/status"), nil)
	expectStatus(t, r, 200)
	if !strings.Contains(r.body, "Pid:") {
		t.Fatalf("procfs body %q", r.body)
	}
	// Character devices stream too.
	r = e.get(e.url("path", "/dev/null"), nil)
	expectStatus(t, r, 200)
	if r.body != "" {
		t.Fatalf("/dev/null body %q", r.body)
	}
}

func TestNegotiateEncoding(t *testing.T) {
	cases := []struct {
		in        string
		gzip, ok  bool
		noHeaders bool
	}{
		{noHeaders: true, gzip: false, ok: true},
		{in: "", gzip: false, ok: true},
		{in: "gzip", gzip: true, ok: true},
		{in: "GZIP", gzip: true, ok: true},
		{in: "x-gzip", gzip: true, ok: true},
		{in: "gzip;q=0", gzip: false, ok: true},
		{in: "gzip;q=0.3, identity;q=0.5", gzip: false, ok: true},
		{in: "gzip;q=0.5, identity;q=0.5", gzip: true, ok: true},
		{in: "identity", gzip: false, ok: true},
		{in: "*", gzip: false, ok: true},
		{in: "*;q=0", gzip: false, ok: false},
		{in: "*;q=0, identity", gzip: false, ok: true},
		{in: "*;q=0, gzip", gzip: true, ok: true},
		{in: "identity;q=0", gzip: false, ok: false},
		{in: "identity;q=0, *;q=0.1", gzip: true, ok: true},
		{in: "br, zstd", gzip: false, ok: true},
		{in: "gzip;q=bogus", gzip: true, ok: true},
		{in: " gzip ; Q=0.8 ", gzip: true, ok: true},
	}
	for _, c := range cases {
		var vals []string
		if !c.noHeaders {
			vals = []string{c.in}
		}
		g, ok := negotiateEncoding(vals)
		if g != c.gzip || ok != c.ok {
			t.Errorf("%q: got gzip=%v ok=%v, want gzip=%v ok=%v", c.in, g, ok, c.gzip, c.ok)
		}
	}
}

func TestContentDisposition(t *testing.T) {
	cases := map[string]string{
		"a.txt":       `inline; filename="a.txt"`,
		`q"uote`:      `inline; filename="q\"uote"`,
		`back\slash`:  `inline; filename="back\\slash"`,
		"h\u00e9.txt": `inline; filename="h__.txt"; filename*=UTF-8''h%C3%A9.txt`,
		"new\nline":   `inline; filename="new_line"; filename*=UTF-8''new%0Aline`,
	}
	for in, want := range cases {
		if got := contentDisposition(in); got != want {
			t.Errorf("%q: got %s, want %s", in, got, want)
		}
	}
}

func TestDownloadLarge(t *testing.T) {
	e := newEnv(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), 3<<20/16+7) // > several copy buffers
	p := e.path("large.bin")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.get(e.url("path", p), nil)
	if r.status != 200 || r.body != string(data) {
		t.Fatalf("identity: status %d, %d bytes", r.status, len(r.body))
	}
	r = e.get(e.url("path", p), map[string]string{"Accept-Encoding": "gzip"})
	if r.header.Get("Content-Encoding") != "gzip" || r.header.Get("Content-Length") != "" {
		t.Fatalf("gzip headers %v", r.header)
	}
	zr, err := gzip.NewReader(strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("gzip: %v, %d bytes", err, len(got))
	}
}
