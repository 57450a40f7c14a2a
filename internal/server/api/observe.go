package api

import (
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
)

// RequestObserver learns of every request the router answered (promx.ControlPlane
// turns them into Prometheus metrics). It is called on the request's goroutine once
// the handler returns, so it must be cheap and safe for concurrent use.
type RequestObserver interface {
	// ObserveRequest: route is the pattern that matched (/v1/sandboxes/{id}), never
	// the path, so that ids do not each become a series; "" when no route matched.
	// method is one of the standard methods or "OTHER", for the same reason.
	ObserveRequest(route, method string, status int, took time.Duration)
}

// observe reports every request to o; it is the router's first middleware, so refusals
// before routing (a body over the limit) count too.
func observe(o RequestObserver) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			sw := &statusWriter{ResponseWriter: w}
			next.ServeHTTP(sw, r)
			route := ""
			if rc := chi.RouteContext(r.Context()); rc != nil {
				route = rc.RoutePattern()
			}
			o.ObserveRequest(route, methodLabel(r.Method), sw.code(), time.Since(start))
		})
	}
}

// methodLabel keeps the label's values to a known few: a client may send any token as
// its method.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}

// statusWriter notes the status of the answer. Unwrap keeps what lies beneath
// reachable through http.ResponseController (deadlines, Flush, a WebSocket's Hijack).
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	// 1xx answers other than 101 (Early Hints) precede the real one.
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// code is the status sent; a handler that wrote nothing answered 200.
func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}
