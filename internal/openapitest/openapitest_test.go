package openapitest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// recorder stands in for a test: it keeps what Transport reports instead of failing.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) reports() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...)
}

// fake answers every request with status, content type and body, after calling inspect
// (if any) with the request as the server saw it.
func fake(t *testing.T, status int, contentType, body string, inspect func(*http.Request)) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if inspect != nil {
			inspect(r)
		}
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

type exchange struct {
	method, path, contentType, body string
	header                          map[string]string
}

// do sends one request through Transport and returns what the caller got and what
// Transport reported.
func do(t *testing.T, srv *httptest.Server, x exchange) (*http.Response, string, []string) {
	t.Helper()
	rec := &recorder{TB: t}
	client := &http.Client{Transport: Transport(rec, nil)}
	var body io.Reader
	if x.body != "" {
		body = strings.NewReader(x.body)
	}
	req, err := http.NewRequest(x.method, srv.URL+x.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if x.contentType != "" {
		req.Header.Set("Content-Type", x.contentType)
	}
	for k, v := range x.header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(got), rec.reports()
}

var bearer = map[string]string{"Authorization": "Bearer header.payload.signature"}

const keyList = `{"api_keys":[{"id":"0b9e2f4c-8f0a-4a8e-9a51-3f1f6f8e2d10","name":"ci","prefix":"wrn_0a1b2c",` +
	`"created_by":"6c1f0c55-2a3b-4c4d-8e9f-0a1b2c3d4e5f","created_at":"2025-01-02T03:04:05.123456Z","last_used_at":null}]}`

func wantClean(t *testing.T, reports []string) {
	t.Helper()
	for _, r := range reports {
		t.Errorf("unexpected report: %s", r)
	}
}

func wantReport(t *testing.T, reports []string, substrings ...string) {
	t.Helper()
	if len(reports) == 0 {
		t.Fatalf("no report; want one mentioning %q", substrings)
	}
	all := strings.Join(reports, "\n")
	for _, s := range substrings {
		if !strings.Contains(all, s) {
			t.Errorf("report does not mention %q:\n%s", s, all)
		}
	}
}

func TestCorrectExchangePasses(t *testing.T) {
	srv := fake(t, 200, "application/json", keyList, nil)
	resp, body, reports := do(t, srv, exchange{method: "GET", path: "/v1/api-keys", header: bearer})
	wantClean(t, reports)
	if resp.StatusCode != 200 || body != keyList {
		t.Errorf("the caller got %d %q, want the server's answer intact", resp.StatusCode, body)
	}
	if resp.Request == nil || resp.Request.URL.Path != "/v1/api-keys" {
		t.Errorf("resp.Request = %v", resp.Request)
	}
}

func TestUndocumentedStatus(t *testing.T) {
	srv := fake(t, http.StatusTeapot, "application/json", `{"error":{"code":"teapot","message":"short and stout"}}`, nil)
	_, _, reports := do(t, srv, exchange{method: "GET", path: "/v1/api-keys", header: bearer})
	wantReport(t, reports, "GET /v1/api-keys", "418")
}

func TestResponseMissingRequiredField(t *testing.T) {
	srv := fake(t, 200, "application/json", strings.Replace(keyList, `"prefix":"wrn_0a1b2c",`, "", 1), nil)
	_, _, reports := do(t, srv, exchange{method: "GET", path: "/v1/api-keys", header: bearer})
	wantReport(t, reports, "GET /v1/api-keys", "200", "prefix")
}

func TestResponseWrongType(t *testing.T) {
	srv := fake(t, 200, "application/json", strings.Replace(keyList, `"last_used_at":null`, `"last_used_at":5`, 1), nil)
	_, _, reports := do(t, srv, exchange{method: "GET", path: "/v1/api-keys", header: bearer})
	wantReport(t, reports, "last_used_at")
}

func TestErrorShapeIsChecked(t *testing.T) {
	srv := fake(t, 404, "application/json", `{"message":"not found"}`, nil)
	_, _, reports := do(t, srv, exchange{method: "GET", path: "/v1/sandboxes/sb0123456789abcdefgh", header: bearer})
	wantReport(t, reports, "404", "error")
}

func TestUndocumentedPath(t *testing.T) {
	srv := fake(t, 200, "application/json", `{}`, nil)
	_, _, reports := do(t, srv, exchange{method: "GET", path: "/v1/nope", header: bearer})
	wantReport(t, reports, "GET /v1/nope", "route")
	// An undocumented route is reported even when the server refused it.
	srv = fake(t, 404, "application/json", `{"error":{"code":"not_found","message":"no such route"}}`, nil)
	_, _, reports = do(t, srv, exchange{method: "GET", path: "/v1/nope"})
	wantReport(t, reports, "/v1/nope")
	// So is an undocumented method on a documented path.
	srv = fake(t, 204, "", "", nil)
	_, _, reports = do(t, srv, exchange{method: "PUT", path: "/v1/api-keys", header: bearer})
	wantReport(t, reports, "PUT /v1/api-keys")
}

func TestInvalidRequestTheServerAccepted(t *testing.T) {
	created := `{"id":"0b9e2f4c-8f0a-4a8e-9a51-3f1f6f8e2d10","name":"ci","prefix":"wrn_0a1b2c","created_at":"2025-01-02T03:04:05Z",` +
		`"last_used_at":null,"key":"wrn_0123456789abcdef0123456789abcdef","e2b_key":"e2b_0123456789abcdef0123456789abcdef"}`
	var got string
	srv := fake(t, 201, "application/json", created, func(r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = string(b)
	})
	// Valid: passes, and the server received the body as sent.
	_, _, reports := do(t, srv, exchange{method: "POST", path: "/v1/api-keys", contentType: "application/json", body: `{"name":"ci"}`, header: bearer})
	wantClean(t, reports)
	if got != `{"name":"ci"}` {
		t.Errorf("the server received %q", got)
	}
	// An unknown field (the server refuses those) accepted with 201: reported.
	_, _, reports = do(t, srv, exchange{method: "POST", path: "/v1/api-keys", contentType: "application/json", body: `{"name":"ci","admin":true}`, header: bearer})
	wantReport(t, reports, "request", "admin")
	// No credentials, yet 201: reported.
	_, _, reports = do(t, srv, exchange{method: "POST", path: "/v1/api-keys", contentType: "application/json", body: `{"name":"ci"}`})
	wantReport(t, reports, "request")

	// The same mistakes refused with a documented 4xx are what the tests expect.
	refuse := fake(t, 400, "application/json", `{"error":{"code":"invalid_json","message":"unknown field"}}`, nil)
	_, _, reports = do(t, refuse, exchange{method: "POST", path: "/v1/api-keys", contentType: "application/json", body: `{"name":"ci","admin":true}`, header: bearer})
	wantClean(t, reports)
	unauth := fake(t, 401, "application/json", `{"error":{"code":"unauthorized","message":"no credentials"}}`, nil)
	_, _, reports = do(t, unauth, exchange{method: "POST", path: "/v1/api-keys", contentType: "application/json", body: `{}`})
	wantClean(t, reports)
}

func TestHeadersAreChecked(t *testing.T) {
	tooMany := `{"error":{"code":"too_many_requests","message":"too many failed logins"}}`
	srv := fake(t, 429, "application/json", tooMany, nil)
	_, _, reports := do(t, srv, exchange{method: "POST", path: "/v1/auth/login", contentType: "application/json", body: `{"email":"a@b.c","password":"x"}`})
	wantReport(t, reports, "Retry-After")

	withHeader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "30")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(429)
		_, _ = io.WriteString(w, tooMany)
	}))
	defer withHeader.Close()
	_, _, reports = do(t, withHeader, exchange{method: "POST", path: "/v1/auth/login", contentType: "application/json", body: `{"email":"a@b.c","password":"x"}`})
	wantClean(t, reports)
}

func TestStreamedBodiesPassThrough(t *testing.T) {
	const id = "sb0123456789abcdefgh"
	var gotBody string
	var gotChunked bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/sandboxes/" + id + "/files/stream/write":
			b, _ := io.ReadAll(r.Body)
			gotBody = string(b)
			gotChunked = len(r.TransferEncoding) > 0 && r.TransferEncoding[0] == "chunked"
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"path":%q,"size":%d}`, r.URL.Query().Get("path"), len(b))
		case "/v1/sandboxes/" + id + "/files/stream/read":
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = w.Write([]byte{0, 1, 2, 0xff})
		default:
			w.WriteHeader(http.StatusCreated) // undocumented
		}
	}))
	defer srv.Close()

	rec := &recorder{TB: t}
	client := &http.Client{Transport: Transport(rec, nil)}
	// A chunked upload of unknown length arrives as sent, still chunked.
	pr, pw := io.Pipe()
	go func() {
		for i := range 3 {
			fmt.Fprintf(pw, "chunk %d\n", i)
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", srv.URL+"/v1/sandboxes/"+id+"/files/stream/write?path=/tmp/x", pr)
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("X-API-Key", "wrn_0123456789abcdef0123456789abcdef")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if gotBody != "chunk 0\nchunk 1\nchunk 2\n" || !gotChunked {
		t.Errorf("the server got %q (chunked %v)", gotBody, gotChunked)
	}

	req, _ = http.NewRequest("GET", srv.URL+"/v1/sandboxes/"+id+"/files/stream/read?path=/tmp/x", nil)
	req.Header.Set("X-API-Key", "wrn_0123456789abcdef0123456789abcdef")
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "\x00\x01\x02\xff" {
		t.Errorf("the caller read %q", b)
	}
	wantClean(t, rec.reports())

	// The status of a streamed exchange is still checked.
	req, _ = http.NewRequest("POST", srv.URL+"/v1/sandboxes/"+id+"/files/write?path=/x", strings.NewReader("data"))
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("X-API-Key", "wrn_0123456789abcdef0123456789abcdef")
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	wantReport(t, rec.reports(), "201")
}

func TestWebSocketUpgrade(t *testing.T) {
	const path = "/v1/sandboxes/sb0123456789abcdefgh/exec/stream"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "" {
			w.WriteHeader(http.StatusOK) // undocumented for this route
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		_, msg, err := c.Read(r.Context())
		if err != nil {
			return
		}
		_ = c.Write(r.Context(), websocket.MessageText, append([]byte("echo "), msg...))
		_ = c.Close(websocket.StatusNormalClosure, "")
	}))
	defer srv.Close()

	rec := &recorder{TB: t}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hdr := http.Header{}
	hdr.Set("X-API-Key", "wrn_0123456789abcdef0123456789abcdef")
	conn, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+path, &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: Transport(rec, nil)}, HTTPHeader: hdr,
	})
	if err != nil {
		t.Fatalf("dial through Transport: %v", err)
	}
	defer conn.CloseNow()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Errorf("status %d", resp.StatusCode)
	}
	if err := conn.Write(ctx, websocket.MessageText, []byte(`{"cmd":"true"}`)); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := conn.Read(ctx); err != nil || string(msg) != `echo {"cmd":"true"}` {
		t.Errorf("read %q, %v", msg, err)
	}
	wantClean(t, rec.reports())

	srv2 := fake(t, 200, "application/json", `{}`, nil)
	_, _, reports := do(t, srv2, exchange{method: "GET", path: path, header: bearer})
	wantReport(t, reports, "200")
}

func TestConcurrentUse(t *testing.T) {
	srv := fake(t, 200, "application/json", keyList, nil)
	rec := &recorder{TB: t}
	client := &http.Client{Transport: Transport(rec, nil)}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", srv.URL+"/v1/api-keys", nil)
			req.Header.Set("Authorization", bearer["Authorization"])
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != keyList {
				t.Errorf("body %q", b)
			}
		})
	}
	wg.Wait()
	wantClean(t, rec.reports())
}
