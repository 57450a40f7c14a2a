package api

import (
	"errors"
	"net/http"
	"os"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/wrennhq/wrenn/internal/httplimit"
)

// fileRoute is a route whose body or answer is a file: it streams, so it has no size
// limit and its deadlines move with its progress.
type fileRoute struct {
	method, pattern string // under /v1
	handler         http.HandlerFunc
}

func (s *Server) fileRoutes() []fileRoute {
	return []fileRoute{
		{http.MethodPost, "/sandboxes/{id}/files/write", s.writeFile},
		{http.MethodGet, "/sandboxes/{id}/files/read", s.readFile},
		// The chunked streaming variants: the same streaming handlers (write and read
		// never buffer a whole file), under the seed's names for its clients.
		{http.MethodPost, "/sandboxes/{id}/files/stream/write", s.writeFile},
		{http.MethodGet, "/sandboxes/{id}/files/stream/read", s.readFile},
	}
}

// limitBodies runs before routing and authentication, so a body that cannot be taken
// is refused at once: a declared Content-Length over maxBody is a 413 without reading
// a byte. File routes get deadlines that move with their progress; every other request
// keeps the server's whole-request deadline (httplimit.Limits.Body).
func (s *Server) limitBodies() func(http.Handler) http.Handler {
	files := chi.NewRouter()
	for _, f := range s.fileRoutes() {
		files.Method(f.method, "/v1"+f.pattern, f.handler)
	}
	return func(next http.Handler) http.Handler {
		streamed := httplimit.Streamed(s.streamIdle, next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case files.Match(chi.NewRouteContext(), r.Method, r.URL.Path):
				streamed.ServeHTTP(w, r)
			case r.ContentLength > maxBody && strings.HasPrefix(r.URL.Path, "/v1/"):
				// Refused before it is read. Bodies outside /v1 are E2B's routes', which
				// refuse in E2B's shape as they read them (bounded as well).
				writeError(w, http.StatusRequestEntityTooLarge, "too_large", tooLargeMessage)
			default:
				next.ServeHTTP(w, r)
			}
		})
	}
}

const tooLargeMessage = "request body is larger than 1 MiB"

// bodyTimedOut tells a client that stopped sending its body (the read deadline passed)
// from one that sent a bad body.
func bodyTimedOut(w http.ResponseWriter, err error) bool {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	writeError(w, http.StatusRequestTimeout, "timeout", "the request body stopped arriving before its end")
	return true
}
