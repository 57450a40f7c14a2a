package dashboard_test

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/wrennhq/wrenn/internal/server/dashboard"
	"github.com/wrennhq/wrenn/web"
)

const bootstrap = "\n\t\t\t\tconsole.log('start');\n\t\t\t"

var built = fstest.MapFS{
	"index.html":                        {Data: []byte("<!doctype html><html><head></head><body><div><script>" + bootstrap + "</script></div></body></html>")},
	"favicon.svg":                       {Data: []byte("<svg/>")},
	"_app/version.json":                 {Data: []byte(`{"version":"1"}`)},
	"_app/immutable/entry/start.abc.js": {Data: []byte("export {}")},
	"_app/immutable/assets/0.abc.css":   {Data: []byte("body{}")},
	"_app/immutable/chunks/big.abc.js":  {Data: []byte(strings.Repeat("export const x = 'some script text';\n", 200))},
}

// api stands for the control plane's router: it names itself in a header.
var api = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Served-By", "api")
	w.WriteHeader(http.StatusTeapot)
})

func get(t *testing.T, h http.Handler, method, target string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

var browser = map[string]string{"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}

func TestPagesFallBackToIndex(t *testing.T) {
	h := dashboard.New(built, api)
	for _, p := range []string{"/", "/login", "/sandboxes", "/sandboxes/sbx-1", "/no/such/page"} {
		res := get(t, h, "GET", p, browser)
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 || res.Header.Get("X-Served-By") != "" || !strings.Contains(string(body), "console.log('start')") {
			t.Errorf("GET %s: %d %q, want index.html", p, res.StatusCode, body)
		}
		if got := res.Header.Get("Cache-Control"); got != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q, want no-cache", p, got)
		}
		if res.Header.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Errorf("GET %s: Content-Type %q", p, res.Header.Get("Content-Type"))
		}
		for k, want := range map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"} {
			if got := res.Header.Get(k); got != want {
				t.Errorf("GET %s: %s %q, want %q", p, k, got, want)
			}
		}
	}
}

func TestCSPAllowsOnlyTheBootstrapScript(t *testing.T) {
	h := dashboard.New(built, api)
	res := get(t, h, "GET", "/sandboxes", browser)
	csp := res.Header.Get("Content-Security-Policy")
	sum := sha256.Sum256([]byte(bootstrap))
	hash := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	for _, want := range []string{
		"default-src 'self'", "script-src 'self' " + hash + ";", "connect-src 'self'",
		"frame-ancestors 'none'", "base-uri 'self'", "object-src 'none'",
	} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-eval") || strings.Contains(csp, "script-src 'self' 'unsafe-inline'") || strings.Contains(csp, "http") {
		t.Errorf("CSP %q allows more than this origin's scripts", csp)
	}
}

func TestAssetsCache(t *testing.T) {
	h := dashboard.New(built, api)
	for p, want := range map[string]struct{ cache, ctype string }{
		"/_app/immutable/entry/start.abc.js": {"public, max-age=31536000, immutable", "text/javascript; charset=utf-8"},
		"/_app/immutable/assets/0.abc.css":   {"public, max-age=31536000, immutable", "text/css; charset=utf-8"},
		"/_app/version.json":                 {"no-cache", "application/json"},
		"/favicon.svg":                       {"no-cache", "image/svg+xml"},
	} {
		res := get(t, h, "GET", p, nil)
		if res.StatusCode != 200 || res.Header.Get("Cache-Control") != want.cache || res.Header.Get("Content-Type") != want.ctype {
			t.Errorf("GET %s: %d, Cache-Control %q, Content-Type %q; want %+v", p, res.StatusCode,
				res.Header.Get("Cache-Control"), res.Header.Get("Content-Type"), want)
		}
		etag := res.Header.Get("ETag")
		if res := get(t, h, "GET", p, map[string]string{"If-None-Match": etag}); etag == "" || res.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with If-None-Match %s: %d, want 304", p, etag, res.StatusCode)
		}
	}
	// A hashed file of another build is missing, not the page (which would run as a script).
	if res := get(t, h, "GET", "/_app/immutable/entry/start.old.js", browser); res.StatusCode != 404 {
		t.Errorf("GET a missing asset: %d, want 404", res.StatusCode)
	}
}

func TestAPIKeepsItsRoutes(t *testing.T) {
	h := dashboard.New(built, api)
	cases := []struct {
		method, path string
		hdr          map[string]string
	}{
		{"GET", "/v1/sandboxes", browser},
		{"GET", "/v1", browser},
		{"GET", "/v1/no/such", browser},
		{"GET", "/healthz", browser},
		{"GET", "/health", browser},
		{"GET", "/openapi.yaml", browser},
		{"GET", "/docs", browser},
		{"GET", "/docs/assets/init.js", browser},
		{"GET", "/metrics", browser},
		{"POST", "/sandboxes", browser},
		{"DELETE", "/sandboxes/sbx-1", nil},
		// E2B's routes at the app's paths: the SDKs send a key and ask for JSON.
		{"GET", "/sandboxes", map[string]string{"X-API-Key": "wrn_x", "Accept": "application/json"}},
		{"GET", "/sandboxes/sbx-1", map[string]string{"X-API-Key": "wrn_x"}},
		{"GET", "/sandboxes", map[string]string{"Authorization": "Bearer x", "Accept": "text/html"}},
		{"GET", "/sandboxes", map[string]string{"Accept": "application/json"}},
	}
	for _, c := range cases {
		if res := get(t, h, c.method, c.path, c.hdr); res.Header.Get("X-Served-By") != "api" {
			t.Errorf("%s %s %v: served by the dashboard (%d), want the API", c.method, c.path, c.hdr, res.StatusCode)
		}
	}
}

func TestNotBuilt(t *testing.T) {
	h := dashboard.New(fstest.MapFS{".gitkeep": {}}, api)
	if h.Built() {
		t.Fatal("Built() with no index.html")
	}
	res := get(t, h, "GET", "/sandboxes", browser)
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "make build") {
		t.Errorf("GET a page unbuilt: %d %q, want 503 saying to run make build", res.StatusCode, body)
	}
	if res := get(t, h, "GET", "/v1/sandboxes", browser); res.Header.Get("X-Served-By") != "api" {
		t.Error("the API is not served when the dashboard is not built")
	}
}

var metaCSP = regexp.MustCompile(`<meta http-equiv="content-security-policy" content="[^"]*script-src 'self'((?: 'sha256-[^']+')*)`)

// The embedded build, when there is one: the server's header allows exactly the scripts
// SvelteKit hashed into the page's own policy (kit.csp in web/svelte.config.js).
func TestEmbeddedBuild(t *testing.T) {
	h := dashboard.New(web.Build(), api)
	if !h.Built() {
		t.Skip("dashboard not built (make build builds it)")
	}
	res := get(t, h, "GET", "/", browser)
	body, _ := io.ReadAll(res.Body)
	m := metaCSP.FindSubmatch(body)
	if m == nil || len(m[1]) == 0 {
		t.Fatalf("index.html has no CSP meta with script hashes (kit.csp mode 'hash'):\n%s", body)
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'"+string(m[1])+";") {
		t.Errorf("header CSP %q does not allow exactly the page's hashes%s", csp, m[1])
	}
	if n := strings.Count(string(body), "<script"); n != len(strings.Fields(string(m[1]))) {
		t.Errorf("index.html has %d scripts, %d hashes", n, len(strings.Fields(string(m[1]))))
	}
	if strings.Contains(string(body), "http://") || strings.Contains(string(body), "https://") {
		t.Errorf("index.html names another origin:\n%s", body)
	}
}

// Text files are sent gzipped to clients that take it (Go's http.Client asks for it
// itself; a browser always does), as they are otherwise.
func TestGzip(t *testing.T) {
	h := dashboard.New(built, api)
	const p = "/_app/immutable/chunks/big.abc.js"
	want := built["_app/immutable/chunks/big.abc.js"].Data
	res := get(t, h, "GET", p, map[string]string{"Accept-Encoding": "gzip, deflate, br"})
	zb, _ := io.ReadAll(res.Body)
	if res.Header.Get("Content-Encoding") != "gzip" || res.Header.Get("Vary") != "Accept-Encoding" || len(zb) >= len(want)/2 {
		t.Fatalf("GET %s taking gzip: Content-Encoding %q, Vary %q, %d bytes of %d", p,
			res.Header.Get("Content-Encoding"), res.Header.Get("Vary"), len(zb), len(want))
	}
	zr, err := gzip.NewReader(bytes.NewReader(zb))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(zr); !bytes.Equal(got, want) {
		t.Error("the gzipped body is not the file")
	}
	if res.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" {
		t.Errorf("gzipped: Cache-Control %q", res.Header.Get("Cache-Control"))
	}
	for _, ae := range []string{"", "identity", "gzip;q=0"} {
		res := get(t, h, "GET", p, map[string]string{"Accept-Encoding": ae})
		b, _ := io.ReadAll(res.Body)
		if res.Header.Get("Content-Encoding") != "" || !bytes.Equal(b, want) {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, %d bytes; want the file as is", ae, res.Header.Get("Content-Encoding"), len(b))
		}
	}
	// Small files are not worth it.
	if res := get(t, h, "GET", "/favicon.svg", map[string]string{"Accept-Encoding": "gzip"}); res.Header.Get("Content-Encoding") != "" {
		t.Error("a 6-byte file was gzipped")
	}
}
