package envd_test

// End-to-end tests of the plain-HTTP /files endpoint (downloads, uploads, signing),
// driven with net/http against the real envd binary (envdtest.Start).

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	fspb "github.com/wrennhq/wrenn/gen/envd/filesystem"
	"github.com/wrennhq/wrenn/internal/envd/envdtest"
	"github.com/wrennhq/wrenn/internal/envd/files"
)

// filesResp is a fully read /files response.
type filesResp struct {
	status int
	body   string
	header http.Header
}

// filesDo sends method to /files?<q> with body and header (name, value pairs). Unless
// the caller sets Accept-Encoding, identity is asked for, so that Go's transport does
// not negotiate and undo gzip behind the test's back.
func filesDo(t *testing.T, e *envdtest.Envd, method string, q url.Values, body io.Reader, header ...string) filesResp {
	t.Helper()
	u := e.URL + "/files"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(context.Background(), method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", "identity")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.HTTP.Do(req)
	if err != nil {
		t.Fatalf("%s /files: %v", method, err)
	}
	return filesResp{status: resp.StatusCode, body: envdtest.ReadAll(t, resp), header: resp.Header}
}

// download GETs a file.
func download(t *testing.T, e *envdtest.Envd, q url.Values, header ...string) filesResp {
	t.Helper()
	return filesDo(t, e, http.MethodGet, q, nil, header...)
}

// uploadRaw POSTs data as application/octet-stream.
func uploadRaw(t *testing.T, e *envdtest.Envd, q url.Values, data []byte, header ...string) filesResp {
	t.Helper()
	return filesDo(t, e, http.MethodPost, q, bytes.NewReader(data),
		append([]string{"Content-Type", "application/octet-stream"}, header...)...)
}

// part is one multipart file part.
type part struct{ filename, content string }

// uploadMultipart POSTs parts as multipart/form-data, each in a form field "file".
func uploadMultipart(t *testing.T, e *envdtest.Envd, q url.Values, parts []part, header ...string) filesResp {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		w, err := mw.CreateFormFile("file", p.filename)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, p.content); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return filesDo(t, e, http.MethodPost, q, &buf, append([]string{"Content-Type", mw.FormDataContentType()}, header...)...)
}

// query builds url.Values from name, value pairs.
func query(kv ...string) url.Values {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	return q
}

// wantResp checks status and exact body (without the trailing newline).
func wantResp(t *testing.T, what string, r filesResp, status int, body string) {
	t.Helper()
	if r.status != status || strings.TrimSuffix(r.body, "\n") != body {
		t.Errorf("%s: %d %q, want %d %q", what, r.status, r.body, status, body)
	}
}

// wantJSONError checks a {"code":…,"message":…} error response whose message contains text.
func wantJSONError(t *testing.T, what string, r filesResp, status int, text string) {
	t.Helper()
	var got struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal([]byte(r.body), &got); err != nil || r.status != status || got.Code != status || !strings.Contains(got.Message, text) ||
		r.header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("%s: %d %q (%s), want %d with a JSON error containing %q", what, r.status, r.body, r.header.Get("Content-Type"), status, text)
	}
}

func TestE2EFilesSignatureVectors(t *testing.T) {
	t.Parallel()
	exp := int64(1767225600)
	for _, v := range []struct {
		path, op, user, token string
		exp                   *int64
		want                  string
	}{
		{"/home/user/report.csv", files.OperationWrite, "", "wrenn-demo-token-123", &exp, "v1_nhvD2aAjbaBehQEkiL18MABSola2zFgqvbX/eHLeA10"},
		{"/home/user/report.csv", files.OperationRead, "root", "wrenn-demo-token-123", nil, "v1_3876YwZcAXs3dUdo5e50rM7sUfmBGjVgguIO2XyKILU"},
		{"hello.txt", files.OperationRead, "user", "0tQG31xiMp0IOQfaz9dcwi72L1CPo8e0", nil, "v1_gUtH/s9YCJWgCizjfUxuWfhFE4QSydOWEIIvfLwDr6E"},
	} {
		if got := files.Signature(v.path, v.op, v.user, v.token, v.exp); got != v.want {
			t.Errorf("Signature(%q, %q, %q, …) = %q, want %q (spec §2.3)", v.path, v.op, v.user, got, v.want)
		}
	}
	if files.OperationRead != "read" || files.OperationWrite != "write" {
		t.Errorf("operations %q/%q", files.OperationRead, files.OperationWrite)
	}
}

func TestE2EFilesUploadAndDownload(t *testing.T) {
	t.Parallel()
	e := userEnvd(t)

	// Octet-stream, relative path: lands in /home/user, owned by user, 0644.
	r := uploadRaw(t, e, query("path", "hello.txt"), []byte("Hello, World!"))
	wantResp(t, "raw upload", r, 200, `[{"name":"hello.txt","path":"/home/user/hello.txt","type":"file"}]`)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("upload response Content-Type %q", ct)
	}
	if got := hostRead(t, e, "/home/user/hello.txt"); got != "Hello, World!" {
		t.Errorf("uploaded content %q", got)
	}
	wantOwned(t, e, "/home/user/hello.txt", userUID, userGID, 0o644)

	// Overwrite.
	r = uploadRaw(t, e, query("path", "/home/user/hello.txt"), []byte("v2"))
	wantResp(t, "overwrite", r, 200, `[{"name":"hello.txt","path":"/home/user/hello.txt","type":"file"}]`)
	if got := hostRead(t, e, "/home/user/hello.txt"); got != "v2" {
		t.Errorf("overwritten content %q", got)
	}

	// Multipart, one file, target from `path` (the part's filename is ignored); the
	// missing parents are created 0755 and owned by user.
	r = uploadMultipart(t, e, query("path", "mp/one/single.txt"), []part{{"ignored-name.txt", "single"}})
	wantResp(t, "multipart with path", r, 200, `[{"name":"single.txt","path":"/home/user/mp/one/single.txt","type":"file"}]`)
	if got := hostRead(t, e, "/home/user/mp/one/single.txt"); got != "single" {
		t.Errorf("multipart content %q", got)
	}
	if !hostMissing(t, e, "/home/user/ignored-name.txt") {
		t.Error("the part's filename was used despite path")
	}
	wantOwned(t, e, "/home/user/mp", userUID, userGID, fs.ModeDir|0o755)
	wantOwned(t, e, "/home/user/mp/one", userUID, userGID, fs.ModeDir|0o755)
	wantOwned(t, e, "/home/user/mp/one/single.txt", userUID, userGID, 0o644)

	// Multipart, several files, targets from the full per-part filenames.
	r = uploadMultipart(t, e, nil, []part{
		{"multi/a.txt", "A"},
		{"multi/sub/dir/b.txt", "B"},
		{"/home/user/abs/c.txt", "C"},
		{"top.txt", "T"},
	})
	wantResp(t, "multipart multi", r, 200, `[{"name":"a.txt","path":"/home/user/multi/a.txt","type":"file"},`+
		`{"name":"b.txt","path":"/home/user/multi/sub/dir/b.txt","type":"file"},`+
		`{"name":"c.txt","path":"/home/user/abs/c.txt","type":"file"},`+
		`{"name":"top.txt","path":"/home/user/top.txt","type":"file"}]`)
	for p, want := range map[string]string{"multi/a.txt": "A", "multi/sub/dir/b.txt": "B", "abs/c.txt": "C", "top.txt": "T"} {
		if got := hostRead(t, e, "/home/user/"+p); got != want {
			t.Errorf("%s holds %q, want %q", p, got, want)
		}
		wantOwned(t, e, "/home/user/"+p, userUID, userGID, 0o644)
	}
	wantOwned(t, e, "/home/user/multi/sub/dir", userUID, userGID, fs.ModeDir|0o755)
	// Two parts with one target.
	r = uploadMultipart(t, e, nil, []part{{"dup.txt", "1"}, {"/home/user/dup.txt", "2"}})
	wantJSONError(t, "duplicate targets", r, 400, "/home/user/dup.txt")

	// Parts not named "file" are ignored.
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("other", "not a file")
	fw, _ := mw.CreateFormFile("file", "fields/kept.txt")
	_, _ = io.WriteString(fw, "kept")
	other, _ := mw.CreateFormFile("attachment", "fields/ignored.txt")
	_, _ = io.WriteString(other, "ignored")
	_ = mw.Close()
	r = filesDo(t, e, http.MethodPost, nil, &buf, "Content-Type", mw.FormDataContentType())
	wantResp(t, "multipart with other parts", r, 200, `[{"name":"kept.txt","path":"/home/user/fields/kept.txt","type":"file"}]`)
	if !hostMissing(t, e, "/home/user/fields/ignored.txt") {
		t.Error("a part not named file was written")
	}
	// With `path`, two file parts collide.
	r = uploadMultipart(t, e, query("path", "two.txt"), []part{{"a", "1"}, {"b", "2"}})
	wantJSONError(t, "two parts with one path", r, 400, "/home/user/two.txt")

	// Upload refusals.
	wantJSONError(t, "upload to another user's home", uploadRaw(t, e, query("path", "~root/x.txt"), []byte("x")), 400, "")
	wantJSONError(t, "raw upload without path", uploadRaw(t, e, nil, []byte("x")), 400, "path query parameter is required for raw body upload")
	wantJSONError(t, "upload onto a directory", uploadRaw(t, e, query("path", "multi"), []byte("x")), 400, "path is a directory: /home/user/multi")
	wantJSONError(t, "text/plain upload", filesDo(t, e, http.MethodPost, query("path", "t.txt"), strings.NewReader("x"), "Content-Type", "text/plain"), 400, "unsupported content type")
	if !hostMissing(t, e, "/home/user/t.txt") {
		t.Error("a refused upload created a file")
	}

	// Download: content and headers.
	r = download(t, e, query("path", "hello.txt"))
	if r.status != 200 || r.body != "v2" {
		t.Fatalf("download: %d %q", r.status, r.body)
	}
	if cd := r.header.Get("Content-Disposition"); cd != `inline; filename="hello.txt"` {
		t.Errorf("Content-Disposition %q", cd)
	}
	if r.header.Get("Content-Length") != "2" || r.header.Get("Content-Type") != "text/plain; charset=utf-8" || r.header.Get("Content-Encoding") != "" || !strings.Contains(r.header.Get("Vary"), "Accept-Encoding") {
		t.Errorf("download headers %v", r.header)
	}
	r = download(t, e, query("path", "/home/user/multi/sub/dir/b.txt"))
	if r.status != 200 || r.body != "B" || r.header.Get("Content-Disposition") != `inline; filename="b.txt"` {
		t.Errorf("download b.txt: %d %q %v", r.status, r.body, r.header)
	}
	r = download(t, e, query("path", "~/top.txt"))
	if r.status != 200 || r.body != "T" {
		t.Errorf("download ~/top.txt: %d %q", r.status, r.body)
	}
	r = download(t, e, query("path", "top.txt"), "Range", "bytes=0-0")
	if r.status != 206 || r.body != "T" || r.header.Get("Content-Range") != "bytes 0-0/1" {
		t.Errorf("range download: %d %q %v", r.status, r.body, r.header)
	}
	wantResp(t, "download missing", download(t, e, query("path", "nope.txt")), 404, `{"code":404,"message":"path '/home/user/nope.txt' does not exist"}`)
	wantResp(t, "download directory", download(t, e, query("path", "multi")), 400, `{"code":400,"message":"path '/home/user/multi' is a directory"}`)
	wantResp(t, "download empty path", download(t, e, query("path", "")), 400, `{"code":400,"message":"path '/home/user' is a directory"}`)
	wantJSONError(t, "download from another user's home", download(t, e, query("path", "~root/x")), 400, "")
	wantJSONError(t, "download below a file", download(t, e, query("path", "hello.txt/x")), 404, "does not exist")

	// An empty file downloads as empty.
	uploadRaw(t, e, query("path", "empty.txt"), nil)
	if r := download(t, e, query("path", "empty.txt")); r.status != 200 || r.body != "" {
		t.Errorf("empty file: %d %q", r.status, r.body)
	}
}

func TestE2EFilesGzip(t *testing.T) {
	t.Parallel()
	e := userEnvd(t)
	content := strings.Repeat("compress me, please. ", 2000)

	// Upload: octet-stream with Content-Encoding: gzip is stored decompressed.
	var zbuf bytes.Buffer
	zw := gzip.NewWriter(&zbuf)
	if _, err := zw.Write([]byte(content)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	r := uploadRaw(t, e, query("path", "gz/up.txt"), zbuf.Bytes(), "Content-Encoding", "gzip")
	wantResp(t, "gzip upload", r, 200, `[{"name":"up.txt","path":"/home/user/gz/up.txt","type":"file"}]`)
	if got := hostRead(t, e, "/home/user/gz/up.txt"); got != content {
		t.Errorf("gzip upload stored %d bytes, want the %d decompressed", len(got), len(content))
	}
	wantOwned(t, e, "/home/user/gz/up.txt", userUID, userGID, 0o644)
	// Multipart bodies can be gzipped as a whole too.
	var mbuf bytes.Buffer
	mw := multipart.NewWriter(&mbuf)
	w, _ := mw.CreateFormFile("file", "gz/mp.txt")
	_, _ = io.WriteString(w, "multipart gzip")
	_ = mw.Close()
	zbuf.Reset()
	zw = gzip.NewWriter(&zbuf)
	_, _ = zw.Write(mbuf.Bytes())
	_ = zw.Close()
	r = filesDo(t, e, http.MethodPost, nil, &zbuf, "Content-Type", mw.FormDataContentType(), "Content-Encoding", "gzip")
	wantResp(t, "gzip multipart upload", r, 200, `[{"name":"mp.txt","path":"/home/user/gz/mp.txt","type":"file"}]`)
	if got := hostRead(t, e, "/home/user/gz/mp.txt"); got != "multipart gzip" {
		t.Errorf("gzip multipart stored %q", got)
	}
	wantJSONError(t, "br upload", uploadRaw(t, e, query("path", "gz/br.txt"), []byte("x"), "Content-Encoding", "br"), 400, "")
	wantJSONError(t, "corrupt gzip upload", uploadRaw(t, e, query("path", "gz/bad.txt"), []byte("not gzip at all"), "Content-Encoding", "gzip"), 400, "")

	// Download with Accept-Encoding: gzip comes compressed.
	r = download(t, e, query("path", "gz/up.txt"), "Accept-Encoding", "gzip")
	// Content-Length, if net/http adds one for a small body, is the compressed length,
	// never the file's.
	if cl := r.header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(r.body)) {
		t.Errorf("gzip download: Content-Length %s for %d compressed bytes", cl, len(r.body))
	}
	if r.status != 200 || r.header.Get("Content-Encoding") != "gzip" || r.header.Get("Content-Disposition") != `inline; filename="up.txt"` {
		t.Fatalf("gzip download: %d %v", r.status, r.header)
	}
	zr, err := gzip.NewReader(strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil || string(got) != content {
		t.Errorf("gzip download decompresses to %d bytes (%v), want %d", len(got), err, len(content))
	}
	if len(r.body) >= len(content) {
		t.Errorf("gzip download is %d bytes for %d of repetitive text", len(r.body), len(content))
	}
	// Identity when asked for it.
	r = download(t, e, query("path", "gz/up.txt"))
	if r.status != 200 || r.header.Get("Content-Encoding") != "" || r.body != content {
		t.Errorf("identity download: %d %v (%d bytes)", r.status, r.header, len(r.body))
	}
	wantJSONError(t, "download with no acceptable encoding", download(t, e, query("path", "gz/up.txt"), "Accept-Encoding", "br, identity;q=0"), 406, "no acceptable encoding")
}

func TestE2EFilesMetadata(t *testing.T) {
	t.Parallel()
	e := userEnvd(t)
	type entry struct {
		Metadata map[string]string `json:"metadata"`
		Name     string            `json:"name"`
		Path     string            `json:"path"`
		Type     string            `json:"type"`
	}
	decode := func(r filesResp) []entry {
		t.Helper()
		var out []entry
		if r.status != 200 {
			t.Fatalf("upload: %d %s", r.status, r.body)
		}
		if err := json.Unmarshal([]byte(r.body), &out); err != nil {
			t.Fatalf("upload response %q: %v", r.body, err)
		}
		return out
	}
	want := map[string]string{"author": "alice", "purpose": "e2e test"}
	r := uploadRaw(t, e, query("path", "meta.txt"), []byte("m"), "X-Metadata-Author", "alice", "X-Metadata-Purpose", "e2e test")
	got := decode(r)
	if !reflect.DeepEqual(got, []entry{{Metadata: want, Name: "meta.txt", Path: "/home/user/meta.txt", Type: "file"}}) {
		t.Errorf("upload with metadata answered %s", r.body)
	}
	r = uploadMultipart(t, e, query("path", "meta-mp.txt"), []part{{"x", "m"}}, "X-Metadata-Author", "bob")
	if got := decode(r); len(got) != 1 || !reflect.DeepEqual(got[0].Metadata, map[string]string{"author": "bob"}) {
		t.Errorf("multipart upload with metadata answered %s", r.body)
	}

	// Stat and ListDir report it, in both codecs.
	for _, codec := range envdtest.Codecs {
		c := e.Filesystem(codec)
		st, err := c.Stat(context.Background(), fsReq(&fspb.StatRequest{Path: "meta.txt"}))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(st.Msg.GetEntry().GetMetadata(), want) {
			t.Errorf("%s: Stat metadata %v, want %v", codec, st.Msg.GetEntry().GetMetadata(), want)
		}
		ls, err := c.ListDir(context.Background(), fsReq(&fspb.ListDirRequest{Path: "/home/user"}))
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range ls.Msg.GetEntries() {
			if en.GetName() == "meta.txt" && !reflect.DeepEqual(en.GetMetadata(), want) {
				t.Errorf("%s: ListDir metadata %v", codec, en.GetMetadata())
			}
		}
	}

	// Overwriting without metadata clears it: no "metadata" key at all.
	r = uploadRaw(t, e, query("path", "meta.txt"), []byte("m2"))
	wantResp(t, "overwrite without metadata", r, 200, `[{"name":"meta.txt","path":"/home/user/meta.txt","type":"file"}]`)
	for _, codec := range envdtest.Codecs {
		st, err := e.Filesystem(codec).Stat(context.Background(), fsReq(&fspb.StatRequest{Path: "/home/user/meta.txt"}))
		if err != nil || len(st.Msg.GetEntry().GetMetadata()) != 0 {
			t.Errorf("%s: Stat after clearing: %v %v", codec, st, err)
		}
	}

	// Invalid metadata is refused before anything is written.
	r = uploadRaw(t, e, query("path", "meta-bad.txt"), []byte("x"), "X-Metadata-"+strings.Repeat("k", 300), "v")
	wantJSONError(t, "oversized metadata key", r, 400, "metadata")
	if !hostMissing(t, e, "/home/user/meta-bad.txt") {
		t.Error("a rejected upload created its file")
	}
}

func TestE2EFilesSigning(t *testing.T) {
	t.Parallel()
	e := envdtest.Start(t)
	const token = "files-e2e-token"
	e.Init(t, `{"accessToken":"`+token+`","defaultUser":"user"}`)
	hostWrite(t, e, "/home/user/signed.txt", "signed content")

	sign := func(path, op, user string, exp *int64) string { return files.Signature(path, op, user, token, exp) }
	past, future := time.Now().Add(-time.Minute).Unix(), time.Now().Add(time.Hour).Unix()

	// Reads.
	wantResp(t, "read without signature", download(t, e, query("path", "signed.txt")), 401, `{"code":401,"message":"missing signature query parameter"}`)
	wantResp(t, "read with a wrong signature", download(t, e, query("path", "signed.txt", "signature", "v1_AAAA")), 401, `{"code":401,"message":"invalid signature"}`)
	wantResp(t, "read signed for write", download(t, e, query("path", "signed.txt", "signature", sign("signed.txt", "write", "", nil))), 401, `{"code":401,"message":"invalid signature"}`)
	wantResp(t, "read signed for another path", download(t, e, query("path", "signed.txt", "signature", sign("/home/user/signed.txt", "read", "", nil))), 401, `{"code":401,"message":"invalid signature"}`)
	wantResp(t, "read signed for another user", download(t, e, query("path", "signed.txt", "username", "user", "signature", sign("signed.txt", "read", "", nil))), 401, `{"code":401,"message":"invalid signature"}`)
	r := download(t, e, query("path", "signed.txt", "signature", sign("signed.txt", "read", "", &past), "signature_expiration", strconv.FormatInt(past, 10)))
	wantResp(t, "read with an expired signature", r, 401, `{"code":401,"message":"signature is already expired"}`)
	r = download(t, e, query("path", "signed.txt", "signature", sign("signed.txt", "read", "", &future), "signature_expiration", strconv.FormatInt(past, 10)))
	wantResp(t, "read with a tampered expiration", r, 401, `{"code":401,"message":"invalid signature"}`)

	r = download(t, e, query("path", "signed.txt", "signature", sign("signed.txt", "read", "", nil)))
	wantResp(t, "signed read", r, 200, "signed content")
	r = download(t, e, query("path", "signed.txt", "signature", sign("signed.txt", "read", "", &future), "signature_expiration", strconv.FormatInt(future, 10)))
	wantResp(t, "signed read with expiration", r, 200, "signed content")
	r = download(t, e, query("path", "signed.txt", "username", "user", "signature", sign("signed.txt", "read", "user", nil)))
	wantResp(t, "signed read as user", r, 200, "signed content")
	// The SDK's URL: path and signature percent-encoded by hand.
	sig := sign("/home/user/signed.txt", "read", "", &future)
	resp := get(t, e, "/files?path=%2Fhome%2Fuser%2Fsigned.txt&signature="+url.QueryEscape(sig)+"&signature_expiration="+strconv.FormatInt(future, 10), "Accept-Encoding", "identity")
	if body := envdtest.ReadAll(t, resp); resp.StatusCode != 200 || body != "signed content" {
		t.Errorf("SDK-shaped signed URL: %d %q", resp.StatusCode, body)
	}

	// Header token instead of a signature.
	wantResp(t, "read with the header token", download(t, e, query("path", "signed.txt"), "X-Access-Token", token), 200, "signed content")
	r = download(t, e, query("path", "signed.txt", "signature", sign("signed.txt", "read", "", nil)), "X-Access-Token", "wrong")
	wantResp(t, "read with a wrong header token", r, 401, `{"code":401,"message":"access token present in header but does not match"}`)

	// Writes.
	hello := []part{{"hello.txt", "hello"}}
	wantResp(t, "write without signature", uploadMultipart(t, e, query("path", "hello.txt"), hello), 401, `{"code":401,"message":"missing signature query parameter"}`)
	r = uploadMultipart(t, e, query("path", "hello.txt", "signature", sign("hello.txt", "read", "", nil)), hello)
	wantResp(t, "write signed for read", r, 401, `{"code":401,"message":"invalid signature"}`)
	r = uploadMultipart(t, e, query("path", "hello.txt", "signature", sign("hello.txt", "write", "", &past), "signature_expiration", strconv.FormatInt(past, 10)), hello)
	wantResp(t, "write with an expired signature", r, 401, `{"code":401,"message":"signature is already expired"}`)
	if !hostMissing(t, e, "/home/user/hello.txt") {
		t.Fatal("a refused upload created its file")
	}
	r = uploadMultipart(t, e, query("path", "hello.txt", "signature", sign("hello.txt", "write", "", &future), "signature_expiration", strconv.FormatInt(future, 10)), hello)
	wantResp(t, "signed write", r, 200, `[{"name":"hello.txt","path":"/home/user/hello.txt","type":"file"}]`)
	wantOwned(t, e, "/home/user/hello.txt", userUID, userGID, 0o644)
	r = uploadMultipart(t, e, query("path", "hello.txt", "username", "root", "signature", sign("hello.txt", "write", "root", nil)), hello)
	wantResp(t, "signed write as root", r, 200, `[{"name":"hello.txt","path":"/root/hello.txt","type":"file"}]`)
	wantOwned(t, e, "/root/hello.txt", 0, 0, 0o644)
	r = uploadRaw(t, e, query("path", "raw-signed.bin", "signature", sign("raw-signed.bin", "write", "", nil)), []byte("raw"))
	wantResp(t, "signed raw write", r, 200, `[{"name":"raw-signed.bin","path":"/home/user/raw-signed.bin","type":"file"}]`)
	r = uploadRaw(t, e, query("path", "by-header.txt"), []byte("hdr"), "X-Access-Token", token)
	wantResp(t, "write with the header token", r, 200, `[{"name":"by-header.txt","path":"/home/user/by-header.txt","type":"file"}]`)
	r = uploadRaw(t, e, query("path", "wrong-header.txt"), []byte("hdr"), "X-Access-Token", "wrong")
	wantResp(t, "write with a wrong header token", r, 401, `{"code":401,"message":"access token present in header but does not match"}`)
	if !hostMissing(t, e, "/home/user/wrong-header.txt") {
		t.Error("a refused upload created its file")
	}
}

func TestE2EFilesUsernameParam(t *testing.T) {
	t.Parallel()
	e := userEnvd(t)
	r := uploadRaw(t, e, query("path", "/home/user/by-root.txt", "username", "root"), []byte("r"))
	wantResp(t, "upload as root", r, 200, `[{"name":"by-root.txt","path":"/home/user/by-root.txt","type":"file"}]`)
	wantOwned(t, e, "/home/user/by-root.txt", 0, 0, 0o644)
	r = uploadRaw(t, e, query("path", "/home/user/by-user.txt", "username", "user"), []byte("u"))
	wantResp(t, "upload as user", r, 200, `[{"name":"by-user.txt","path":"/home/user/by-user.txt","type":"file"}]`)
	wantOwned(t, e, "/home/user/by-user.txt", userUID, userGID, 0o644)

	// Relative paths follow the chosen user's home; created parents are theirs.
	r = uploadMultipart(t, e, query("username", "root"), []part{{"deep/rel.txt", "rr"}})
	wantResp(t, "relative upload as root", r, 200, `[{"name":"rel.txt","path":"/root/deep/rel.txt","type":"file"}]`)
	wantOwned(t, e, "/root/deep", 0, 0, fs.ModeDir|0o755)
	wantOwned(t, e, "/root/deep/rel.txt", 0, 0, 0o644)
	if r := download(t, e, query("path", "deep/rel.txt", "username", "root")); r.status != 200 || r.body != "rr" {
		t.Errorf("relative download as root: %d %q", r.status, r.body)
	}
	wantJSONError(t, "relative download as user", download(t, e, query("path", "deep/rel.txt")), 404, "path '/home/user/deep/rel.txt' does not exist")

	// The Basic header also selects the user, when there is no username parameter.
	r = uploadRaw(t, e, query("path", "basic-root.txt"), []byte("b"), "Authorization", envdtest.BasicUser("root"))
	wantResp(t, "upload with Basic root", r, 200, `[{"name":"basic-root.txt","path":"/root/basic-root.txt","type":"file"}]`)
	wantOwned(t, e, "/root/basic-root.txt", 0, 0, 0o644)

	// Files are read and written with the daemon's privileges: the user reaches /root
	// (0700), and what it writes there is still its own.
	if r := download(t, e, query("path", "/root/basic-root.txt")); r.status != 200 || r.body != "b" {
		t.Errorf("user downloading from /root: %d %q", r.status, r.body)
	}
	r = uploadRaw(t, e, query("path", "/root/for-user.txt"), []byte("u"))
	wantResp(t, "user uploading into /root", r, 200, `[{"name":"for-user.txt","path":"/root/for-user.txt","type":"file"}]`)
	wantOwned(t, e, "/root/for-user.txt", userUID, userGID, 0o644)

	wantJSONError(t, "upload as ghost", uploadRaw(t, e, query("path", "ghost.txt", "username", "ghost"), []byte("g")), 401, "ghost")
	wantJSONError(t, "download as ghost", download(t, e, query("path", "by-user.txt", "username", "ghost")), 401, "ghost")
}

func TestE2EFilesLargeRoundTrip(t *testing.T) {
	t.Parallel()
	e := userEnvd(t)
	data := make([]byte, 10<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)

	r := uploadRaw(t, e, query("path", "big/random.bin"), data)
	wantResp(t, "large upload", r, 200, `[{"name":"random.bin","path":"/home/user/big/random.bin","type":"file"}]`)
	if fi, err := os.Lstat(e.HostPath("/home/user/big/random.bin")); err != nil || fi.Size() != int64(len(data)) {
		t.Fatalf("stored file: %v %v", fi, err)
	}

	r = download(t, e, query("path", "big/random.bin"))
	if r.status != 200 || r.header.Get("Content-Length") != strconv.Itoa(len(data)) {
		t.Fatalf("large download: %d %v", r.status, r.header)
	}
	if got := sha256.Sum256([]byte(r.body)); got != want {
		t.Fatalf("downloaded %d bytes with sha256 %x, want %d bytes with %x", len(r.body), got, len(data), want)
	}

	// Multipart and a gzip download of the same bytes.
	r = uploadMultipart(t, e, nil, []part{{"big/random-mp.bin", string(data)}})
	wantResp(t, "large multipart upload", r, 200, `[{"name":"random-mp.bin","path":"/home/user/big/random-mp.bin","type":"file"}]`)
	r = download(t, e, query("path", "big/random-mp.bin"), "Accept-Encoding", "gzip")
	if r.status != 200 || r.header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("large gzip download: %d %v", r.status, r.header)
	}
	zr, err := gzip.NewReader(strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, zr); err != nil {
		t.Fatal(err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
		t.Fatalf("gzip download sha256 %x, want %x", got, want)
	}
}

// An upload into a watched directory must only produce events named after files that
// exist there. The spec's write (§5.6: create/truncate, chown, write) touches only the
// target, so E2B's watchers see CREATE/CHMOD/WRITE for "up.txt" and nothing else.
func TestE2EFilesUploadWatchEventsNameOnlyRealFiles(t *testing.T) {
	t.Parallel()
	e := userEnvd(t)
	forCodecs(t, func(t *testing.T, codec envdtest.Codec, dir string) {
		w := dir + "/watched"
		hostMkdir(t, e, w)
		c := e.Filesystem(codec)
		s := openWatch(t, c, &fspb.WatchDirRequest{Path: w, Recursive: true})
		cw, err := c.CreateWatcher(context.Background(), fsReq(&fspb.CreateWatcherRequest{Path: w, Recursive: true}))
		if err != nil {
			t.Fatal(err)
		}
		id := cw.Msg.GetWatcherId()
		t.Cleanup(func() {
			_, _ = c.RemoveWatcher(context.Background(), fsReq(&fspb.RemoveWatcherRequest{WatcherId: id}))
		})
		for i, content := range []string{"new file", "overwrite"} {
			if r := uploadRaw(t, e, query("path", w+"/up.txt"), []byte(content)); r.status != 200 {
				t.Fatalf("upload %d: %d %s", i, r.status, r.body)
			}
		}
		// A sentinel written afterwards marks the end of the upload's events.
		if err := os.WriteFile(e.HostPath(w+"/sentinel.txt"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, streamed := waitEvent(t, s, "WRITE sentinel.txt", isEvent("sentinel.txt", fspb.EventType_EVENT_TYPE_WRITE))
		var polled []*fspb.FilesystemEvent
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			r, err := c.GetWatcherEvents(context.Background(), fsReq(&fspb.GetWatcherEventsRequest{WatcherId: id}))
			if err != nil {
				t.Fatal(err)
			}
			polled = append(polled, r.Msg.GetEvents()...)
			if n := len(polled); n > 0 && isEvent("sentinel.txt", fspb.EventType_EVENT_TYPE_WRITE)(polled[n-1]) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("polling watcher: no WRITE sentinel.txt within 5 s; events: %v", polled)
			}
		}
		for kind, evs := range map[string][]*fspb.FilesystemEvent{"WatchDir": streamed, "polling watcher": polled} {
			writes := 0
			for _, ev := range evs {
				switch ev.GetName() {
				case "up.txt":
					if ev.GetType() == fspb.EventType_EVENT_TYPE_WRITE {
						writes++
					}
				case "sentinel.txt":
				default:
					t.Errorf("%s: event for a name that never existed in %s: %v", kind, w, ev)
				}
			}
			if writes != 2 {
				t.Errorf("%s: %d WRITE events for up.txt after two uploads, want 2 (events: %v)", kind, writes, evs)
			}
		}
	})
}
