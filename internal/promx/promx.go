package promx

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Path is where metrics are served, on either listener.
const Path = "/metrics"

// namespace starts every Wrenn metric's name.
const namespace = "wrenn"

// maxScrapes bounds the scrapes answered at once: the control plane's collector asks
// PostgreSQL at each, so a flood of scrapes must not become a flood of queries.
const maxScrapes = 4

// NewRegistry is a program's own registry with the Go runtime's and the process's
// collectors (go_*, process_*). It is passed to whatever registers metrics, never
// taken from a global, so tests build as many as they like.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Access is where a program's metrics may be read. The zero Access serves none.
type Access struct {
	// Listen is the address of a listener of its own that serves only Path ("" =
	// none); the caller listens on it (ListenHandler).
	Listen string
	// Token, when set, is the bearer token every scrape must send, on either
	// listener; it also opens Path on the program's main listener (Wrap).
	Token string
}

// Enabled reports whether metrics are served anywhere.
func (a Access) Enabled() bool { return a.Listen != "" || a.Token != "" }

// Handler serves reg's metrics in Prometheus's exposition formats, to callers that
// send a.Token when one is set (401 otherwise). A collector that fails (PostgreSQL
// down) is logged and left out of the answer rather than failing the whole scrape.
func (a Access) Handler(reg *prometheus.Registry, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            errorLog{log},
		ErrorHandling:       promhttp.ContinueOnError,
		Registry:            reg, // promhttp_metric_handler_errors_total
		MaxRequestsInFlight: maxScrapes,
	})
	if a.Token == "" {
		return h
	}
	// Comparing digests keeps the comparison's time independent of the token's length
	// as well as of its bytes.
	want := sha256.Sum256([]byte(a.Token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "metrics need Authorization: Bearer <the metrics token>")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Wrap serves Path in front of next on a program's main listener when a token is
// set; without one, Path is next's like any other path (an unknown route: 404), so
// metrics are never public by default.
func (a Access) Wrap(reg *prometheus.Registry, log *slog.Logger, next http.Handler) http.Handler {
	if a.Token == "" {
		return next
	}
	metrics := a.Handler(reg, log)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == Path {
			metrics.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ListenHandler is the whole of the metrics listener (Listen): Path, and 404 for
// anything else.
func (a Access) ListenHandler(reg *prometheus.Registry, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(Path, a.Handler(reg, log))
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such route: metrics are at "+Path)
	})
	return mux
}

// writeError answers in the control plane's error shape ({"error":{"code","message"}}),
// on the agent's listeners as well: one shape for an operator's tools to read.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]map[string]string{"error": {"code": code, "message": msg}})
}

// errorLog is promhttp's logger on slog.
type errorLog struct{ log *slog.Logger }

func (l errorLog) Println(v ...any) {
	l.log.Warn("metrics scrape", "err", strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
}
