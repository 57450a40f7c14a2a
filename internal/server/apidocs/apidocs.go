// Package apidocs serves the REST contract and its browsable docs: the OpenAPI document
// at /openapi.yaml and Swagger UI at /docs, with every file embedded so the page never
// contacts another host.
package apidocs

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/wrennhq/wrenn/api"
)

// assets holds what /docs loads: Swagger UI (vendored by scripts/vendor-swagger-ui.sh)
// and Wrenn's own init script and styles.
//
//go:embed assets
var assets embed.FS

//go:embed index.html
var indexTemplate string

// docsCSP keeps /docs to this host. Swagger UI sets inline styles, and its stylesheet
// draws icons from data: URLs; scripts are files of this host only.
const docsCSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data: blob:; font-src 'self'; connect-src 'self'; base-uri 'none'; " +
	"form-action 'none'; frame-ancestors 'none'"

// contentTypes by extension; anything else is served as bytes.
var contentTypes = map[string]string{
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".png":  "image/png",
	".html": "text/html; charset=utf-8",
	".map":  "application/json",
	"":      "text/plain; charset=utf-8", // LICENSE, NOTICE, VERSION
}

// asset is one embedded file with its validator.
type asset struct {
	body []byte
	etag string
}

type handler struct {
	mux    *http.ServeMux
	spec   []byte
	index  []byte
	assets map[string]asset // by path under assets/
}

// Handler serves GET /openapi.yaml, GET /docs and GET /docs/assets/*. Asset URLs in the
// page carry a content hash, so assets are cached for a long time.
func Handler() http.Handler {
	h := &handler{mux: http.NewServeMux(), spec: api.OpenAPI(), assets: map[string]asset{}}
	root, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	err = fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(root, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		h.assets[p] = asset{body: b, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
		return nil
	})
	if err != nil {
		panic(fmt.Sprintf("apidocs: read embedded assets: %v", err))
	}
	h.index = h.renderIndex()

	h.mux.HandleFunc("GET /openapi.yaml", h.serveSpec)
	h.mux.HandleFunc("GET /docs", h.serveIndex)
	h.mux.HandleFunc("GET /docs/assets/{path...}", h.serveAsset)
	return h.mux
}

// renderIndex fills the page's asset URLs in, each with its content hash.
func (h *handler) renderIndex() []byte {
	t := template.Must(template.New("index.html").Funcs(template.FuncMap{
		"asset": func(p string) (string, error) {
			a, ok := h.assets[p]
			if !ok {
				return "", fmt.Errorf("no embedded asset %q", p)
			}
			return "/docs/assets/" + p + "?v=" + strings.Trim(a.etag, `"`)[:12], nil
		},
	}).Parse(indexTemplate))
	var b bytes.Buffer
	if err := t.Execute(&b, nil); err != nil {
		panic(fmt.Sprintf("apidocs: render index.html: %v", err))
	}
	return b.Bytes()
}

func (h *handler) serveSpec(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "openapi.yaml", time.Time{}, bytes.NewReader(h.spec))
}

func (h *handler) serveIndex(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Security-Policy", docsCSP)
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(h.index))
}

func (h *handler) serveAsset(w http.ResponseWriter, r *http.Request) {
	a, ok := h.assets[r.PathValue("path")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	ct, ok := contentTypes[path.Ext(r.PathValue("path"))]
	if !ok {
		ct = "application/octet-stream"
	}
	hd := w.Header()
	hd.Set("Content-Type", ct)
	hd.Set("Cache-Control", "public, max-age=31536000, immutable")
	hd.Set("ETag", a.etag)
	hd.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}
