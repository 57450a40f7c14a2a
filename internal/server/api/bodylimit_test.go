package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/wrennhq/wrenn/internal/hostproto"
	"github.com/wrennhq/wrenn/internal/server/servertest"
)

// TestEveryJSONBodyIsBounded: on every /v1 route that reads a JSON body, a body one
// byte over 1 MiB is refused with 413 too_large and a message while it is read, even
// sent chunked (no Content-Length to refuse it by up front); one of exactly 1 MiB is
// read (and refused for what it says, not its size).
func TestEveryJSONBodyIsBounded(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	ann := signup(anon, "bounded@example.com")
	token := ann["token"].(string)
	team := "/v1/teams/" + ann["team_id"].(string)
	const limit = 1 << 20
	// body is a JSON object of exactly n bytes: {"x":"…"}.
	body := func(n int) string { return `{"x":"` + strings.Repeat("a", n-8) + `"}` }
	send := func(method, path, auth, b string) (int, map[string]any) {
		t.Helper()
		// MultiReader hides the length: the request goes chunked.
		req, err := http.NewRequest(method, env.URL+path, io.MultiReader(strings.NewReader(b)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	for _, r := range []struct{ method, path, auth string }{
		{"POST", "/v1/auth/signup", ""},
		{"POST", "/v1/auth/login", ""},
		{"POST", "/v1/auth/session", ""},
		{"POST", "/v1/auth/session/signup", ""},
		{"POST", hostproto.RegisterPath, ""},
		{"POST", hostproto.RefreshPath, ""},
		{"POST", "/v1/api-keys", token},
		{"POST", "/v1/teams", token},
		{"PATCH", team, token},
		{"POST", team + "/members", token},
		{"POST", "/v1/sandboxes", token},
		{"POST", "/v1/snapshots", token},
		{"POST", "/v1/hosts", token},
	} {
		status, out := send(r.method, r.path, r.auth, body(limit+1))
		if status != http.StatusRequestEntityTooLarge || errCode(out) != "too_large" || !strings.Contains(errMessage(out), "larger than 1 MiB") {
			t.Errorf("%s %s with 1 MiB + 1 byte: %d %v, want 413 too_large", r.method, r.path, status, out)
		}
		if status, out := send(r.method, r.path, r.auth, body(limit)); status == http.StatusRequestEntityTooLarge {
			t.Errorf("%s %s with 1 MiB: %d %v, want it read", r.method, r.path, status, out)
		}
	}
}

// TestUploadPathPartIsBounded: a multipart upload's path field one byte over 4096
// is refused with a message, not cut to another path; the file part itself streams
// and has no size limit of its own (the guest's disk is its limit).
func TestUploadPathPartIsBounded(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	ann := signup(anon, "upload@example.com")
	annC := anon.bearer(ann["token"].(string))
	status, sb := annC.do("POST", "/v1/sandboxes", `{"template":"base"}`)
	if status != 201 {
		t.Fatalf("create: %d %v", status, sb)
	}
	id := sb["id"].(string)
	upload := func(path string) (int, string) {
		var form bytes.Buffer
		mw := multipart.NewWriter(&form)
		_ = mw.WriteField("path", path)
		fw, _ := mw.CreateFormFile("file", "f")
		_, _ = fw.Write([]byte("data"))
		_ = mw.Close()
		req, err := http.NewRequest("POST", env.URL+"/v1/sandboxes/"+id+"/files/write", &form)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", mw.FormDataContentType())
		req.Header.Set("Authorization", "Bearer "+ann["token"].(string))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	long := "/home/user/" + strings.Repeat("d/", (4097-11)/2) + "x"
	long = long[:4097]
	if status, raw := upload(long); status != 400 || !strings.Contains(raw, "longer than 4096 bytes") {
		t.Errorf("a 4097-byte path: %d %s, want 400 saying so", status, raw)
	}
	if status, raw := upload("/home/user/ok"); status != 200 {
		t.Errorf("a short path: %d %s", status, raw)
	}
}
