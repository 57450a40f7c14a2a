package files

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FuzzUpload sends hostile bodies, content types and paths to POST /files. Paths are
// kept inside a throwaway home (the fuzz process is root on the test machine), and
// within it the handler must: answer 200 or a 4xx/507 with a message, write nothing
// but the file asked for (no leftover temporary file, on success or failure), and
// store a raw body byte for byte.
func FuzzUpload(f *testing.F) {
	form := "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"../../x\"\r\n\r\nhello\r\n--b--\r\n"
	twice := "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\n1\r\n" +
		"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\n2\r\n--b--\r\n"
	for _, s := range []struct {
		path, ctype string
		body        []byte
	}{
		{"a.txt", "application/octet-stream", []byte("hello")},
		{"d/e/f.bin", "application/octet-stream", nil},
		{"a", "multipart/form-data; boundary=b", []byte(form)},
		{"a", "multipart/form-data; boundary=b", []byte(twice)},
		{"a", "multipart/form-data; boundary=b", []byte("--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nhello")},
		{"a", "multipart/form-data", []byte(form)},
		{"a", "text/plain", []byte("x")},
		{"x/../y", "application/octet-stream", []byte("y")},
		{"dir/", "application/octet-stream", []byte("y")},
	} {
		f.Add(s.path, s.ctype, s.body, false)
	}
	f.Add("z.gz", "application/octet-stream", []byte("\x1f\x8b\x08\x00garbage"), true)
	f.Fuzz(func(t *testing.T, path, ctype string, body []byte, gzipped bool) {
		if path == "" || filepath.IsAbs(path) || strings.HasPrefix(path, "~") {
			return // outside the throwaway home: not this test's to write
		}
		if strings.ContainsFunc(ctype, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
			return // not sendable as a header value
		}
		e, home := newHomeEnv(t)
		target := filepath.Join(home, path)
		if rel, err := filepath.Rel(home, target); err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
			return
		}
		header := map[string]string{"Content-Type": ctype}
		if gzipped {
			header["Content-Encoding"] = "gzip"
		}
		resp := e.do(http.MethodPost, e.url("path", path), bytes.NewReader(body), header)
		switch {
		case resp.status == http.StatusOK:
		case resp.status >= 400 && resp.status < 500, resp.status == http.StatusInsufficientStorage:
			var msg struct{ Message string }
			if json.Unmarshal([]byte(resp.body), &msg) != nil || msg.Message == "" {
				t.Fatalf("%d without a message: %q", resp.status, resp.body)
			}
		default:
			t.Fatalf("upload of %q (%s): %d %s", path, ctype, resp.status, resp.body)
		}
		var files []string
		err := filepath.WalkDir(home, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() {
				files = append(files, p)
			} else if p != home && !strings.HasPrefix(target, p+"/") {
				t.Errorf("directory %s made for an upload to %s", p, target)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(files) > 1 || len(files) == 1 && files[0] != target {
			t.Fatalf("upload to %s (status %d) left %v", target, resp.status, files)
		}
		if resp.status == http.StatusOK {
			// A form without a "file" part answers [] and writes nothing.
			var entries []entryInfo
			if err := json.Unmarshal([]byte(resp.body), &entries); err != nil {
				t.Fatalf("200 with %q: %v", resp.body, err)
			}
			// JSON carries a name that is not UTF-8 with a U+FFFD for each bad byte.
			var shown string
			if raw, err := json.Marshal(target); err != nil || json.Unmarshal(raw, &shown) != nil {
				t.Fatalf("%q through JSON: %v", target, err)
			}
			for _, en := range entries {
				if en.Path != shown {
					t.Fatalf("upload to %s answered %s", target, en.Path)
				}
			}
			if (len(entries) > 0) != slices.Contains(files, target) {
				t.Fatalf("200 for %s with %d entries, files %v", target, len(entries), files)
			}
		}
		if resp.status == http.StatusOK && !gzipped && strings.HasPrefix(ctype, "application/octet-stream") {
			if got := readFile(t, target); got != string(body) {
				t.Fatalf("stored %d bytes, sent %d", len(got), len(body))
			}
		}
	})
}

// FuzzSignedURL: with an access token set, a request without the header passes only
// with the signature E2B's SDKs compute for exactly this path, operation, user and
// expiration; anything else is a 401 (or a 400 for a malformed expiration).
func FuzzSignedURL(f *testing.F) {
	const token = "secret-token"
	exp := int64(4102444800) // 2100-01-01
	f.Add("a.txt", "", Signature("a.txt", OperationRead, "", token, nil), "", true)
	f.Add("a.txt", "", Signature("a.txt", OperationRead, "", token, &exp), strconv.FormatInt(exp, 10), true)
	f.Add("a.txt", "", Signature("a.txt", OperationRead, "", token, nil), "1", true)
	f.Add("a.txt", "tester", Signature("a.txt", OperationRead, "", token, nil), "", true)
	f.Add("a.txt", "", "v1_", "x", true)
	f.Add("a.txt", "", "", "", false)
	f.Fuzz(func(t *testing.T, path, username, signature, expiration string, hasSignature bool) {
		e, _ := newHomeEnv(t)
		e.st.SetToken(token)
		kv := []string{"path", path}
		if username != "" {
			kv = append(kv, "username", username)
		}
		if hasSignature {
			kv = append(kv, "signature", signature)
		}
		if expiration != "" {
			kv = append(kv, "signature_expiration", expiration)
		}
		resp := e.get(e.url(kv...), nil)
		var expires *int64
		valid := hasSignature
		if expiration != "" {
			n, err := strconv.ParseInt(expiration, 10, 64)
			valid = valid && err == nil
			expires = &n
		}
		valid = valid && signature == Signature(path, OperationRead, username, token, expires) && (expires == nil || *expires > e.h.now().Unix())
		if !valid && resp.status != http.StatusUnauthorized && resp.status != http.StatusBadRequest {
			t.Fatalf("a bad signature got %d %s", resp.status, resp.body)
		}
		if valid && (resp.status == http.StatusUnauthorized || resp.status >= 500) {
			t.Fatalf("a good signature got %d %s", resp.status, resp.body)
		}
	})
}
