package e2b_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/openapitest"
	"github.com/wrennhq/wrenn/internal/server/servertest"
)

func TestMain(m *testing.M) { os.Exit(servertest.Run(m)) }

// e2bDocument is E2B's own OpenAPI document, kept unmodified beside the checkout
// (../shared/specs/upstream); "" when this checkout has no shared/ beside it.
func e2bDocument(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "..", "..", "..", "shared", "specs", "upstream", "e2b-openapi.yml")
	if _, err := os.Stat(p); err != nil {
		t.Logf("E2B's OpenAPI document is not at %s (a clone without shared/ beside it): answers are not validated against it", p)
		return ""
	}
	return p
}

// caller sends E2B API requests as the SDKs do (X-API-KEY), every exchange checked
// against E2B's document when it is there.
type caller struct {
	t    *testing.T
	base string
	key  string
	http *http.Client
}

func newCaller(t *testing.T, base, key string) *caller {
	var rt http.RoundTripper = http.DefaultTransport
	if doc := e2bDocument(t); doc != "" {
		// The SDKs create and connect at /v2 paths newer than the document, which has
		// the same operations at the root.
		rt = openapitest.TransportFor(t, doc, nil, openapitest.Options{
			Aliases: []openapitest.Alias{
				{Served: `^/v2/sandboxes/([^/]+)/connect$`, Documented: "/sandboxes/$1/connect"},
				{Served: `^/v2/sandboxes$`, Documented: "/sandboxes", Methods: []string{"POST"}},
			},
			// E2B's document lists few of the errors E2B answers (an unknown template's
			// 404, a bad timeout's 400): do checks those bodies instead.
			UndocumentedErrors: true,
		})
	}
	return &caller{t: t, base: base, key: key, http: &http.Client{Transport: rt, Timeout: 60 * time.Second}}
}

// do sends a request and returns the status, headers and decoded JSON body (nil if
// none).
func (c *caller) do(method, path, body string) (int, http.Header, any) {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.Header.Set("X-API-KEY", c.key) // as the SDKs spell it; names are case-insensitive
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var v any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &v); err != nil {
			c.t.Fatalf("%s %s → %d: not JSON: %q", method, path, resp.StatusCode, raw)
		}
	}
	// Every error is E2B's {"code": <status>, "message": …}.
	if resp.StatusCode >= 400 {
		m, _ := v.(map[string]any)
		if code, _ := m["code"].(float64); int(code) != resp.StatusCode || m["message"] == "" {
			c.t.Errorf("%s %s → %d with error body %s, want code %d and a message", method, path, resp.StatusCode, raw, resp.StatusCode)
		}
	}
	return resp.StatusCode, resp.Header, v
}

// obj is a JSON object answer.
func obj(t *testing.T, v any) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("want a JSON object, got %#v", v)
	}
	return m
}

// create makes a sandbox through E2B's create and returns its answer.
func (c *caller) create(body string) map[string]any {
	c.t.Helper()
	status, _, v := c.do("POST", "/v2/sandboxes", body)
	if status != 201 {
		c.t.Fatalf("create %s: %d %v", body, status, v)
	}
	sb := obj(c.t, v)
	id := sb["sandboxID"].(string)
	c.t.Cleanup(func() { c.do("DELETE", "/sandboxes/"+id, "") })
	return sb
}

func (c *caller) info(id string) map[string]any {
	c.t.Helper()
	status, _, v := c.do("GET", "/sandboxes/"+id, "")
	if status != 200 {
		c.t.Fatalf("get %s: %d %v", id, status, v)
	}
	return obj(c.t, v)
}

func timeOf(t *testing.T, v any) time.Time {
	t.Helper()
	s, _ := v.(string)
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("not a date-time: %#v", v)
	}
	return tm
}

// ids lists the sandboxIDs of a listing.
func ids(t *testing.T, v any) []string {
	t.Helper()
	list, ok := v.([]any)
	if !ok {
		t.Fatalf("want a JSON array, got %#v", v)
	}
	out := []string{}
	for _, s := range list {
		out = append(out, obj(t, s)["sandboxID"].(string))
	}
	return out
}
