// Package dashboard serves the web dashboard (the SvelteKit app in web/, embedded by
// package web) beside the control plane's API: its files at their paths, and its
// index.html for every other page a browser opens, so the app's client-side router
// takes the path. /v1/*, /healthz, /health, /openapi.yaml, /docs and /metrics stay the
// API's, and so does any request that carries API credentials or does not ask for HTML
// (E2B's routes /sandboxes and /sandboxes/{id} share paths with the app's pages).
package dashboard

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"
)

// immutableCache is for files whose names carry a content hash (/_app/immutable/*).
const immutableCache = "public, max-age=31536000, immutable"

// cspBase is the pages' policy; scriptHashes (SvelteKit's inline bootstrap, hashed from
// the built index.html) are added to script-src. Everything is of this origin: fonts and
// assets are bundled, and 'self' in connect-src also allows WebSockets to this host
// (ws/wss, CSP level 3). Inline styles: Svelte's style directives and xterm.js set them.
const cspBase = "default-src 'self'; script-src 'self'%s; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; " +
	"base-uri 'self'; form-action 'self'; frame-ancestors 'none'"

// notBuilt is what a binary built without the dashboard serves at its pages.
const notBuilt = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Wrenn: dashboard not built</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto; padding: 0 1rem">
<h1>Dashboard not built</h1>
<p>This wrenn binary was built without its web dashboard. Run <code>make build</code>
(it needs Node.js 20.19 or later and npm) and restart the server.</p>
<p>The API is served as usual: <a href="/docs">/docs</a>.</p>
</body></html>
`

// reserved paths are the API's whatever the request looks like.
var reserved = []string{"/v1", "/healthz", "/health", "/openapi.yaml", "/docs", "/metrics"}

type file struct {
	body  []byte
	gz    *gzipped // nil: not a kind worth compressing
	etag  string
	ctype string
	cache string
}

// gzipped is a file's gzip form, made when first asked for (not at start: the server's
// start would pay ~0.1 s for files a browser may never load) and kept: files never change.
type gzipped struct {
	once sync.Once
	src  []byte
	b    []byte // nil: compressing saved too little
}

func (g *gzipped) bytes() []byte {
	g.once.Do(func() {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		_, _ = zw.Write(g.src)
		_ = zw.Close()
		if buf.Len() < len(g.src)*9/10 {
			g.b = buf.Bytes()
		}
		g.src = nil
	})
	return g.b
}

// compressible returns the lazily gzipped form of text (scripts, styles, SVG, JSON,
// HTML) worth compressing, nil for anything else.
func compressible(ctype string, b []byte) *gzipped {
	if len(b) < 512 || !(strings.HasPrefix(ctype, "text/") || strings.Contains(ctype, "json") || strings.Contains(ctype, "svg")) {
		return nil
	}
	return &gzipped{src: b}
}

// serveFile answers with f, gzipped when the client takes gzip.
func serveFile(w http.ResponseWriter, r *http.Request, f file) {
	hd := w.Header()
	hd.Set("Content-Type", f.ctype)
	body, etag := f.body, f.etag
	if f.gz != nil {
		hd.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r) {
			if gz := f.gz.bytes(); gz != nil {
				body, etag = gz, strings.TrimSuffix(f.etag, `"`)+`-gz"`
				hd.Set("Content-Encoding", "gzip")
			}
		}
	}
	hd.Set("ETag", etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// acceptsGzip reports whether r's Accept-Encoding takes gzip (not refused with q=0).
func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(name), "gzip") {
			q := strings.ReplaceAll(params, " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}

// Handler serves the dashboard in front of api.
type Handler struct {
	api   http.Handler
	files map[string]file // by URL path
	index *file           // nil: not built
	csp   string
}

// New returns a handler serving the dashboard in files (package web's Build) and
// handing everything else to api. Files without an index.html (a build that never ran)
// serve a page saying so.
func New(files fs.FS, api http.Handler) *Handler {
	h := &Handler{api: api, files: map[string]file{}}
	index, err := fs.ReadFile(files, "index.html")
	if err != nil {
		h.csp = cspFor(nil)
		return h
	}
	sum := sha256.Sum256(index)
	ct := "text/html; charset=utf-8"
	h.index = &file{body: index, gz: compressible(ct, index), etag: `"` + hex.EncodeToString(sum[:16]) + `"`, ctype: ct, cache: "no-cache"}
	h.csp = cspFor(index)
	_ = fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || p == "index.html" || p == ".gitkeep" {
			return err
		}
		b, err := fs.ReadFile(files, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		f := file{body: b, etag: `"` + hex.EncodeToString(sum[:16]) + `"`, cache: "no-cache"}
		if strings.HasPrefix(p, "_app/immutable/") {
			f.cache = immutableCache
		}
		f.ctype = contentType(p)
		f.gz = compressible(f.ctype, b)
		h.files["/"+p] = f
		return nil
	})
	return h
}

// Built reports whether the dashboard was built into the binary.
func (h *Handler) Built() bool { return h.index != nil }

// CSP is the Content-Security-Policy header the pages are served with.
func (h *Handler) CSP() string { return h.csp }

// contentTypes are fixed here rather than read from the system's mime.types.
var contentTypes = map[string]string{
	".js":    "text/javascript; charset=utf-8",
	".css":   "text/css; charset=utf-8",
	".json":  "application/json",
	".svg":   "image/svg+xml",
	".png":   "image/png",
	".woff2": "font/woff2",
	".txt":   "text/plain; charset=utf-8",
	".html":  "text/html; charset=utf-8",
}

func contentType(p string) string {
	if ct, ok := contentTypes[path.Ext(p)]; ok {
		return ct
	}
	if ct := mime.TypeByExtension(path.Ext(p)); ct != "" {
		return ct
	}
	return "application/octet-stream"
}

var inlineScript = regexp.MustCompile(`(?s)<script>(.*?)</script>`)

// cspFor returns the policy for page: script-src allows the page's inline scripts (the
// bootstrap SvelteKit writes into index.html) by their sha256, and no other.
func cspFor(page []byte) string {
	var hashes strings.Builder
	for _, m := range inlineScript.FindAllSubmatch(page, -1) {
		sum := sha256.Sum256(m[1])
		hashes.WriteString(" 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'")
	}
	return strings.Replace(cspBase, "%s", hashes.String(), 1)
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.api.ServeHTTP(w, r)
		return
	}
	p := r.URL.Path
	if isReserved(p) {
		h.api.ServeHTTP(w, r)
		return
	}
	if f, ok := h.files[p]; ok {
		hd := w.Header()
		hd.Set("Cache-Control", f.cache)
		hd.Set("X-Content-Type-Options", "nosniff")
		serveFile(w, r, f)
		return
	}
	if strings.HasPrefix(p, "/_app/") {
		// A file of another build (a tab open across an upgrade): not the page.
		hd := w.Header()
		hd.Set("Cache-Control", "no-cache")
		hd.Set("X-Content-Type-Options", "nosniff")
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	if !isPage(r) {
		h.api.ServeHTTP(w, r)
		return
	}
	h.servePage(w, r)
}

// isReserved reports whether p is the API's alone.
func isReserved(p string) bool {
	for _, x := range reserved {
		if p == x || strings.HasPrefix(p, x+"/") {
			return true
		}
	}
	return false
}

// isPage reports whether r is a browser asking for a page: it accepts HTML and carries
// none of the API's credentials (the E2B SDKs send X-API-Key and ask for JSON).
func isPage(r *http.Request) bool {
	if r.Header.Get("Authorization") != "" || r.Header.Get("X-API-Key") != "" {
		return false
	}
	if r.URL.Path == "/" {
		return true
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

func (h *Handler) servePage(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-cache")
	hd.Set("Content-Security-Policy", h.csp)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("X-Frame-Options", "DENY")
	if h.index == nil {
		// Not cached (no-cache above): the next binary may have it.
		hd.Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		if r.Method == http.MethodGet {
			_, _ = io.WriteString(w, notBuilt)
		}
		return
	}
	serveFile(w, r, *h.index)
}
