package files

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/envd/state"
)

// testEnv is a Handler behind an httptest server. Its default user is root when the
// tests run as root (else the current user), so files live under t.TempDir() via
// absolute paths and nothing outside it is touched.
type testEnv struct {
	t   *testing.T
	st  *state.State
	h   *Handler
	srv *httptest.Server
	dir string // scratch directory for absolute paths
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	st := state.New()
	if os.Getuid() != 0 {
		cur, err := user.Current()
		if err != nil {
			t.Fatalf("current user: %v", err)
		}
		st.SetDefaultUser(cur.Username)
	}
	h := New(st, nil)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &testEnv{t: t, st: st, h: h, srv: srv, dir: t.TempDir()}
}

// newHomeEnv is newEnv whose default user ("tester", the current uid/gid) has a
// temporary home, so relative and ~ paths can be exercised without writing to a real
// home directory.
func newHomeEnv(t *testing.T) (*testEnv, string) {
	t.Helper()
	e := newEnv(t)
	home := t.TempDir()
	tester := &state.User{Name: "tester", UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), Home: home}
	real := e.h.lookupUser
	e.h.lookupUser = func(name string) (*state.User, error) {
		if name == "" || name == "tester" {
			return tester, nil
		}
		return real(name)
	}
	return e, home
}

func (e *testEnv) path(rel string) string { return filepath.Join(e.dir, rel) }

// url builds /files?<query> from alternating key/value strings.
func (e *testEnv) url(kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	return e.srv.URL + "/files?" + q.Encode()
}

type response struct {
	status int
	header http.Header
	body   string
}

// do sends a request and reads the whole response. Transparent gzip is off so the
// tests see exactly what the server sent.
func (e *testEnv) do(method, u string, body io.Reader, header map[string]string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		e.t.Fatalf("new request: %v", err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("read body: %v", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (e *testEnv) get(u string, header map[string]string) response {
	e.t.Helper()
	return e.do(http.MethodGet, u, nil, header)
}

// postRaw uploads data as application/octet-stream.
func (e *testEnv) postRaw(u string, data string, header map[string]string) response {
	e.t.Helper()
	h := map[string]string{"Content-Type": "application/octet-stream"}
	for k, v := range header {
		h[k] = v
	}
	return e.do(http.MethodPost, u, strings.NewReader(data), h)
}

// formPart is one multipart part; noFilename mimics FormData.append("file", "text").
type formPart struct {
	field, filename, data string
	noFilename            bool
}

func multipartBody(t *testing.T, parts ...formPart) (string, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		hdr := make(map[string][]string)
		cd := `form-data; name="` + p.field + `"`
		if !p.noFilename {
			cd += `; filename="` + p.filename + `"`
		}
		hdr["Content-Disposition"] = []string{cd}
		hdr["Content-Type"] = []string{"application/octet-stream"}
		w, err := mw.CreatePart(hdr)
		if err != nil {
			t.Fatalf("create part: %v", err)
		}
		_, _ = io.WriteString(w, p.data)
	}
	if err := mw.Close(); err != nil {
		t.Fatalf("close multipart: %v", err)
	}
	return mw.FormDataContentType(), &buf
}

func (e *testEnv) postForm(u string, header map[string]string, parts ...formPart) response {
	e.t.Helper()
	ct, body := multipartBody(e.t, parts...)
	h := map[string]string{"Content-Type": ct}
	for k, v := range header {
		h[k] = v
	}
	return e.do(http.MethodPost, u, body, h)
}

func expectStatus(t *testing.T, r response, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d; body %s", r.status, want, r.body)
	}
}

// expectError checks status and the exact JSON error body.
func expectError(t *testing.T, r response, status int, msg string) {
	t.Helper()
	expectStatus(t, r, status)
	want := `{"code":` + strconv.Itoa(status) + `,"message":` + strconv.Quote(msg) + `}`
	if strings.TrimSpace(r.body) != want {
		t.Fatalf("body %s\nwant %s", strings.TrimSpace(r.body), want)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("error Content-Type %q", ct)
	}
}

func writeFile(t *testing.T, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return string(b)
}

func basic(name string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(name+":"))
}

func TestSignatureVectors(t *testing.T) {
	exp := int64(1767225600)
	cases := []struct {
		name                          string
		path, op, user, token, expect string
		exp                           *int64
	}{
		{"spec upload with expiration", "/home/user/report.csv", OperationWrite, "", "wrenn-demo-token-123",
			"v1_nhvD2aAjbaBehQEkiL18MABSola2zFgqvbX/eHLeA10", &exp},
		{"spec read as root", "/home/user/report.csv", OperationRead, "root", "wrenn-demo-token-123",
			"v1_3876YwZcAXs3dUdo5e50rM7sUfmBGjVgguIO2XyKILU", nil},
		{"SDK secure.test.ts vector", "hello.txt", OperationRead, "user", "0tQG31xiMp0IOQfaz9dcwi72L1CPo8e0",
			"v1_gUtH/s9YCJWgCizjfUxuWfhFE4QSydOWEIIvfLwDr6E", nil},
	}
	for _, c := range cases {
		if got := Signature(c.path, c.op, c.user, c.token, c.exp); got != c.expect {
			t.Errorf("%s: got %s, want %s", c.name, got, c.expect)
		}
	}
	// The spec's URL encodes the signature with / as %2F.
	q := url.Values{"path": {"/home/user/report.csv"}, "signature": {cases[0].expect}, "signature_expiration": {"1767225600"}}
	want := "path=%2Fhome%2Fuser%2Freport.csv&signature=v1_nhvD2aAjbaBehQEkiL18MABSola2zFgqvbX%2FeHLeA10&signature_expiration=1767225600"
	if q.Encode() != want {
		t.Errorf("encoded query %s, want %s", q.Encode(), want)
	}
}

func TestMethodNotAllowed(t *testing.T) {
	e := newEnv(t)
	for _, m := range []string{http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodHead} {
		r := e.do(m, e.url("path", e.path("x")), nil, nil)
		expectStatus(t, r, http.StatusMethodNotAllowed)
		if allow := r.header.Get("Allow"); allow != "GET, POST" {
			t.Errorf("%s: Allow %q", m, allow)
		}
	}
}

func TestAuthorization(t *testing.T) {
	e := newEnv(t)
	file := e.path("secret.txt")
	writeFile(t, file, "hello world")

	// No token: nothing is checked, a bogus signature included.
	r := e.get(e.url("path", file, "signature", "v1_bogus"), nil)
	expectStatus(t, r, http.StatusOK)

	const token = "tok-123"
	e.st.SetToken(token)
	future := time.Now().Add(time.Hour).Unix()
	past := time.Now().Add(-time.Hour).Unix()
	sig := func(op, user string, exp *int64) string { return Signature(file, op, user, token, exp) }
	fs := strconv.FormatInt(future, 10)
	ps := strconv.FormatInt(past, 10)

	cases := []struct {
		name   string
		url    string
		header map[string]string
		status int
		msg    string
	}{
		{"header match", e.url("path", file), map[string]string{"X-Access-Token": token}, 200, ""},
		{"header match beats bad signature", e.url("path", file, "signature", "v1_x"), map[string]string{"X-Access-Token": token}, 200, ""},
		{"header mismatch", e.url("path", file, "signature", sig("read", "", nil)), map[string]string{"X-Access-Token": "nope"}, 401,
			"access token present in header but does not match"},
		{"missing signature", e.url("path", file), nil, 401, "missing signature query parameter"},
		{"invalid signature", e.url("path", file, "signature", "v1_abc"), nil, 401, "invalid signature"},
		{"empty signature", e.url("path", file, "signature", ""), nil, 401, "invalid signature"},
		{"write signature used for read", e.url("path", file, "signature", sig("write", "", nil)), nil, 401, "invalid signature"},
		{"signature without expiration param", e.url("path", file, "signature", sig("read", "", &future)), nil, 401, "invalid signature"},
		{"valid, no expiration", e.url("path", file, "signature", sig("read", "", nil)), nil, 200, ""},
		{"valid with expiration", e.url("path", file, "signature", sig("read", "", &future), "signature_expiration", fs), nil, 200, ""},
		{"expired", e.url("path", file, "signature", sig("read", "", &past), "signature_expiration", ps), nil, 401, "signature is already expired"},
		{"expired but also wrong: invalid first", e.url("path", file, "signature", "v1_abc", "signature_expiration", ps), nil, 401, "invalid signature"},
		{"valid with username", e.url("path", file, "username", "root", "signature", sig("read", "root", nil)), nil, 200, ""},
		{"username not signed", e.url("path", file, "username", "root", "signature", sig("read", "", nil)), nil, 401, "invalid signature"},
	}
	if os.Getuid() != 0 {
		cases = cases[:len(cases)-2] // the username cases act as root
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.get(c.url, c.header)
			if c.status == 200 {
				expectStatus(t, r, 200)
				if r.body != "hello world" {
					t.Fatalf("body %q", r.body)
				}
				return
			}
			expectError(t, r, c.status, c.msg)
		})
	}

	t.Run("exact expired body", func(t *testing.T) {
		r := e.get(e.url("path", file, "signature", sig("read", "", &past), "signature_expiration", ps), nil)
		if strings.TrimSpace(r.body) != `{"code":401,"message":"signature is already expired"}` {
			t.Fatalf("body %s", r.body)
		}
	})
	t.Run("bad expiration format", func(t *testing.T) {
		r := e.get(e.url("path", file, "signature", sig("read", "", nil), "signature_expiration", "soon"), nil)
		expectStatus(t, r, http.StatusBadRequest)
	})
	t.Run("signed upload", func(t *testing.T) {
		target := e.path("signed-up.txt")
		exp := future
		u := e.url("path", target, "signature", Signature(target, OperationWrite, "", token, &exp), "signature_expiration", fs)
		r := e.postForm(u, nil, formPart{field: "file", data: "file content", noFilename: true})
		expectStatus(t, r, 200)
		if got := readFile(t, target); got != "file content" {
			t.Fatalf("content %q", got)
		}
		// The same URL does not authorize a download.
		expectError(t, e.get(u, nil), 401, "invalid signature")
	})
	t.Run("unsigned upload rejected, nothing written", func(t *testing.T) {
		target := e.path("unsigned.txt")
		r := e.postRaw(e.url("path", target), "x", nil)
		expectError(t, r, 401, "missing signature query parameter")
		if _, err := os.Stat(target); !os.IsNotExist(err) {
			t.Fatalf("file exists after rejected upload: %v", err)
		}
	})
}

func TestUserSelection(t *testing.T) {
	e, home := newHomeEnv(t)
	writeFile(t, filepath.Join(home, "mine.txt"), "tester's")

	// Default user: relative path resolves in the (fake) default user's home.
	r := e.get(e.url("path", "mine.txt"), nil)
	expectStatus(t, r, 200)
	if r.body != "tester's" {
		t.Fatalf("body %q", r.body)
	}
	// Explicit username and Basic select the same user.
	expectStatus(t, e.get(e.url("path", "mine.txt", "username", "tester"), nil), 200)
	expectStatus(t, e.get(e.url("path", "mine.txt"), map[string]string{"Authorization": basic("tester")}), 200)

	const ghost = "no-such-user-wrenn"
	want := "error looking up user '" + ghost + "': unknown user: invalid username: '" + ghost + "'"
	expectError(t, e.get(e.url("path", "mine.txt", "username", ghost), nil), 401, want)
	expectError(t, e.get(e.url("path", "mine.txt"), map[string]string{"Authorization": basic(ghost)}), 401, want)
	r = e.postRaw(e.url("path", "ghost.txt", "username", ghost), "x", nil)
	expectError(t, r, 401, want)
	if _, err := os.Stat(filepath.Join(home, "ghost.txt")); !os.IsNotExist(err) {
		t.Fatal("upload by unknown user wrote a file")
	}
	// The query parameter wins over Basic.
	r = e.get(e.url("path", "mine.txt", "username", ghost), map[string]string{"Authorization": basic("tester")})
	expectStatus(t, r, 401)
	// A malformed Basic header is an authentication failure, not a crash.
	r = e.get(e.url("path", "mine.txt"), map[string]string{"Authorization": "Basic !!!"})
	expectStatus(t, r, 401)
}

func TestUnknownDefaultUser(t *testing.T) {
	e := newEnv(t)
	e.st.SetDefaultUser("no-such-default-wrenn")
	r := e.get(e.url("path", e.path("x")), nil)
	expectError(t, r, 401, "error looking up user 'no-such-default-wrenn': unknown user: invalid username: 'no-such-default-wrenn'")
}

func TestRelativeAndTildePaths(t *testing.T) {
	e, home := newHomeEnv(t)

	r := e.postForm(e.url("path", "docs/a.txt"), nil, formPart{field: "file", data: "A", noFilename: true})
	expectStatus(t, r, 200)
	wantBody := `[{"name":"a.txt","path":"` + filepath.Join(home, "docs/a.txt") + `","type":"file"}]`
	if strings.TrimSpace(r.body) != wantBody {
		t.Fatalf("body %s\nwant %s", r.body, wantBody)
	}
	if readFile(t, filepath.Join(home, "docs/a.txt")) != "A" {
		t.Fatal("relative upload did not land in home")
	}
	r = e.postRaw(e.url("path", "~/b.txt"), "B", nil)
	expectStatus(t, r, 200)
	if readFile(t, filepath.Join(home, "b.txt")) != "B" {
		t.Fatal("~ upload did not land in home")
	}
	if r := e.get(e.url("path", "~/docs/a.txt"), nil); r.body != "A" {
		t.Fatalf("~ download: %d %q", r.status, r.body)
	}
	// Multipart filenames are paths too, relative to home.
	r = e.postForm(e.url(), nil, formPart{field: "file", filename: "x/y/z.txt", data: "Z"})
	expectStatus(t, r, 200)
	if readFile(t, filepath.Join(home, "x/y/z.txt")) != "Z" {
		t.Fatal("multipart relative filename not resolved against home")
	}
	// Empty path is the home directory itself, or the default workdir.
	expectError(t, e.get(e.url("path", ""), nil), 400, "path '"+home+"' is a directory")
	expectError(t, e.get(e.url(), nil), 400, "path '"+home+"' is a directory")
	wd := filepath.Join(home, "work")
	if err := os.Mkdir(wd, 0o755); err != nil {
		t.Fatal(err)
	}
	e.st.SetDefaultWorkdir(wd)
	expectError(t, e.get(e.url(), nil), 400, "path '"+wd+"' is a directory")
	// Relative paths use home even with a workdir set.
	if r := e.get(e.url("path", "b.txt"), nil); r.body != "B" {
		t.Fatalf("relative path with workdir: %d %q", r.status, r.body)
	}
	r = e.get(e.url("path", "~other/x"), nil)
	expectStatus(t, r, 400)
	if !strings.Contains(r.body, "error expanding and resolving path '~other/x': ") {
		t.Fatalf("body %s", r.body)
	}
	r = e.postRaw(e.url("path", "~other/x"), "x", nil)
	expectStatus(t, r, 400)
}

// nonRootUser returns an existing unprivileged account, or nil.
func nonRootUser(t *testing.T) *state.User {
	for _, name := range []string{"nobody", "daemon", "user"} {
		if u, err := state.LookupUser(name); err == nil && u.UID != 0 {
			return u
		}
	}
	return nil
}

func TestUploadAsOtherUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to chown to another user")
	}
	other := nonRootUser(t)
	if other == nil {
		t.Skip("no unprivileged user on this host, and the test must not create one")
	}
	e := newEnv(t)
	check := func(p string, wantUID uint32) {
		t.Helper()
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if sys.Uid != wantUID || sys.Gid != other.GID {
			t.Fatalf("%s owned by %d:%d, want %d:%d", p, sys.Uid, sys.Gid, wantUID, other.GID)
		}
	}
	target := e.path("new/dir/owned.txt")
	r := e.postRaw(e.url("path", target, "username", other.Name), "data", nil)
	expectStatus(t, r, 200)
	check(target, other.UID)
	check(e.path("new/dir"), other.UID)
	check(e.path("new"), other.UID)

	// Basic auth selects the user as well; an overwrite takes the uploader's ownership.
	target2 := e.path("basic.txt")
	writeFile(t, target2, "root's")
	r = e.postForm(e.url("path", target2), map[string]string{"Authorization": basic(other.Name)},
		formPart{field: "file", data: "theirs", noFilename: true})
	expectStatus(t, r, 200)
	check(target2, other.UID)
	if readFile(t, target2) != "theirs" {
		t.Fatal("content not replaced")
	}
}
