package apidocs_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
	"github.com/wrennhq/wrenn/api"
	serverapi "github.com/wrennhq/wrenn/internal/server/api"
	"github.com/wrennhq/wrenn/internal/server/apidocs"
)

func model(t *testing.T) (libopenapi.Document, *v3.Document) {
	t.Helper()
	doc, err := libopenapi.NewDocument(api.OpenAPI())
	if err != nil {
		t.Fatalf("parse api/openapi.yaml: %v", err)
	}
	m, err := doc.BuildV3Model()
	if err != nil {
		t.Fatalf("build the OpenAPI 3 model of api/openapi.yaml: %v", err)
	}
	return doc, &m.Model
}

func TestDocumentIsValidOpenAPI31(t *testing.T) {
	doc, _ := model(t)
	if v := doc.GetSpecInfo().Version; v != "3.1.0" {
		t.Errorf("openapi version %q, want 3.1.0", v)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatalf("validator: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		for _, e := range verrs {
			t.Errorf("%s", e.Error())
			for _, s := range e.SchemaValidationErrors {
				t.Errorf("  %s", s.Error())
			}
		}
	}
}

// routeOps is every "METHOD /path" the control plane's router registers, with chi's
// {name:regexp} parameters reduced to OpenAPI's {name}.
func routeOps(t *testing.T) []string {
	t.Helper()
	// New only stores the services; no handler runs while walking the routes.
	routes, ok := serverapi.New(serverapi.Services{}, time.Minute, nil).(chi.Routes)
	if !ok {
		t.Fatal("api.New no longer returns a chi router; adapt this test")
	}
	param := regexp.MustCompile(`\{([^}:]+):[^}]*\}`)
	var ops []string
	err := chi.Walk(routes, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		route = param.ReplaceAllString(route, "{$1}")
		if len(route) > 1 {
			route = strings.TrimSuffix(route, "/")
		}
		ops = append(ops, method+" "+route)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(ops)
	return ops
}

func documentedOps(m *v3.Document) map[string]bool {
	ops := map[string]bool{}
	for p, item := range m.Paths.PathItems.FromOldest() {
		for method := range item.GetOperations().KeysFromOldest() {
			ops[strings.ToUpper(method)+" "+p] = true
		}
	}
	return ops
}

func TestEveryRouteIsDocumented(t *testing.T) {
	_, m := model(t)
	documented := documentedOps(m)
	routes := routeOps(t)
	if len(routes) < 10 {
		t.Fatalf("walking the router found only %v", routes)
	}
	registered := map[string]bool{}
	for _, op := range routes {
		registered[op] = true
		if op == "GET /docs/*" { // Swagger UI's own files, not part of the contract
			continue
		}
		// E2B's routes: their contract is E2B's own document, which the e2b package's
		// tests validate them against.
		if _, path, _ := strings.Cut(op, " "); strings.HasPrefix(path, "/sandboxes") || strings.HasPrefix(path, "/v2/") || path == "/snapshots" || path == "/health" {
			continue
		}
		if !documented[op] {
			t.Errorf("%s is served but not in api/openapi.yaml", op)
		}
	}
	// The other way round: everything documented is served.
	for op := range documented {
		if !registered[op] {
			t.Errorf("%s is in api/openapi.yaml but no route serves it", op)
		}
	}
}

func TestOperationsAreComplete(t *testing.T) {
	_, m := model(t)
	ids := map[string]string{}
	for p, item := range m.Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			name := strings.ToUpper(method) + " " + p
			if op.OperationId == "" {
				t.Errorf("%s has no operationId", name)
			} else if other, dup := ids[op.OperationId]; dup {
				t.Errorf("%s and %s share operationId %s", name, other, op.OperationId)
			}
			ids[op.OperationId] = name
			if op.Responses == nil || op.Responses.Codes.Len() == 0 {
				t.Errorf("%s documents no responses", name)
				continue
			}
			// Authenticated operations must document 401 and 500; /v1 errors use the shared schema.
			if op.Security == nil || len(op.Security) > 0 {
				for _, code := range []string{"401", "500"} {
					if op.Responses.Codes.GetOrZero(code) == nil {
						t.Errorf("%s: authenticated but does not document %s", name, code)
					}
				}
			}
			if !strings.HasPrefix(p, "/v1/") {
				continue
			}
			for code, resp := range op.Responses.Codes.FromOldest() {
				if code[0] != '4' && code[0] != '5' {
					continue
				}
				mt := resp.Content.GetOrZero("application/json")
				if mt == nil {
					if op.OperationId != "execStream" { // the WebSocket layer's own refusals are text
						t.Errorf("%s %s: not the JSON error shape", name, code)
					}
					continue
				}
				if ref := mt.Schema.GetReference(); ref != "#/components/schemas/Error" {
					t.Errorf("%s %s: schema %q, want the shared Error", name, code, ref)
				}
			}
		}
	}
}

func get(t *testing.T, h http.Handler, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Result()
}

func body(t *testing.T, r *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestServesTheDocument(t *testing.T) {
	resp := get(t, apidocs.Handler(), "/openapi.yaml")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/yaml" {
		t.Fatalf("GET /openapi.yaml: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !bytes.Equal(body(t, resp), api.OpenAPI()) {
		t.Error("GET /openapi.yaml is not the embedded document")
	}
}

func TestDocsPageStaysOnThisHost(t *testing.T) {
	h := apidocs.Handler()
	resp := get(t, h, "/docs")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /docs: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	page := string(body(t, resp))
	if u := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+`).FindString(page); u != "" {
		t.Errorf("/docs references another host: %s", u)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "http") || strings.Contains(csp, "*") {
		t.Errorf("CSP %q allows other hosts", csp)
	}
	if regexp.MustCompile(`<script>|<script [^>]*>[^<]`).MatchString(page) {
		t.Error("/docs has an inline script; CSP script-src 'self' would block it")
	}
	// Every script and stylesheet the page loads is served, from /docs/assets.
	refs := regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(page, -1)
	var assets int
	for _, m := range refs {
		ref := m[1]
		if ref == "/openapi.yaml" {
			continue
		}
		if !strings.HasPrefix(ref, "/docs/assets/") {
			t.Errorf("/docs loads %s, outside /docs/assets/", ref)
			continue
		}
		assets++
		if r := get(t, h, ref); r.StatusCode != 200 {
			t.Errorf("GET %s: %d", ref, r.StatusCode)
		}
	}
	if assets < 3 {
		t.Errorf("/docs loads %d assets; want Swagger UI's script and styles and the init script", assets)
	}
	if !strings.Contains(page, `data-spec-url="/openapi.yaml"`) {
		t.Error("/docs does not point Swagger UI at /openapi.yaml")
	}
	init := string(body(t, get(t, h, "/docs/assets/init.js")))
	for _, want := range []string{"validatorUrl: null", "queryConfigEnabled: false"} {
		if !strings.Contains(init, want) {
			t.Errorf("init.js lacks %q", want)
		}
	}
	if u := regexp.MustCompile(`https?://`).FindString(init); u != "" {
		t.Errorf("init.js references %s", u)
	}
}

func TestAssets(t *testing.T) {
	h := apidocs.Handler()
	for path, want := range map[string]string{
		"/docs/assets/init.js":                         "text/javascript; charset=utf-8",
		"/docs/assets/docs.css":                        "text/css; charset=utf-8",
		"/docs/assets/swagger-ui/swagger-ui-bundle.js": "text/javascript; charset=utf-8",
		"/docs/assets/swagger-ui/swagger-ui.css":       "text/css; charset=utf-8",
		"/docs/assets/swagger-ui/favicon-32x32.png":    "image/png",
		"/docs/assets/swagger-ui/LICENSE":              "text/plain; charset=utf-8",
	} {
		resp := get(t, h, path)
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
			continue
		}
		if got := resp.Header.Get("Content-Type"); got != want {
			t.Errorf("GET %s: Content-Type %q, want %q", path, got, want)
		}
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=31536000") {
			t.Errorf("GET %s: Cache-Control %q", path, cc)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("ETag") == "" {
			t.Errorf("GET %s: headers %v", path, resp.Header)
		}
		if len(body(t, resp)) == 0 {
			t.Errorf("GET %s: empty", path)
		}
	}
	for _, path := range []string{"/docs/assets/nope.js", "/docs/assets/swagger-ui", "/docs/assets/swagger-ui/", "/docs/assets/", "/docs/index.html"} {
		if resp := get(t, h, path); resp.StatusCode != 404 {
			t.Errorf("GET %s: %d, want 404", path, resp.StatusCode)
		}
	}
	// A conditional request for an unchanged asset is answered without its body.
	resp := get(t, h, "/docs/assets/init.js")
	req := httptest.NewRequest(http.MethodGet, "/docs/assets/init.js", nil)
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified {
		t.Errorf("conditional GET: %d, want 304", rec.Code)
	}
}
