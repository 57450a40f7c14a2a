// Package httplimit bounds how long and how much a client may take to send a request
// or to take its answer, so a slow or stalled client cannot hold a connection (and its
// goroutine) forever: the http.Server every Wrenn listener is built with, and streamed
// routes whose deadlines move with their progress instead of ending at a fixed time.
package httplimit

import (
	"io"
	"net/http"
	"time"
)

// Limits of one listener.
type Limits struct {
	// ReadHeader bounds reading the request line and header; MaxHeaderBytes their size.
	ReadHeader     time.Duration
	MaxHeaderBytes int
	// Idle bounds a keep-alive connection's wait for its next request.
	Idle time.Duration
	// Body bounds reading a whole request of an ordinary route, header included; a
	// client that declares a body and stalls is cut off then.
	Body time.Duration
	// StreamIdle bounds a pause of a streamed route (Streamed): no byte of the body
	// arrives, or the client takes no byte of the answer, for this long.
	StreamIdle time.Duration
}

// ControlPlane are `wrenn server`'s limits. Its clients are SDKs and browsers, some
// behind a reverse proxy: Idle outlasts Caddy's and Go's 90 s-2 min keep-alive, so the
// client side closes idle connections first and never sends into a closing one.
var ControlPlane = Limits{
	ReadHeader: 10 * time.Second, MaxHeaderBytes: 64 << 10, Idle: 3 * time.Minute,
	Body: 30 * time.Second, StreamIdle: 2 * time.Minute,
}

// Agent are `wrenn agent`'s limits. Its streams relay a control plane's client, which
// the control plane cuts off after its own StreamIdle: the agent waits longer, so the
// side facing the client decides and the agent still ends a stream nobody feeds.
var Agent = Limits{
	ReadHeader: 10 * time.Second, MaxHeaderBytes: 64 << 10, Idle: 3 * time.Minute,
	Body: 30 * time.Second, StreamIdle: 10 * time.Minute,
}

// Server is an http.Server for h with l applied; streamed routes must be wrapped in
// Streamed, or Body ends them.
func (l Limits) Server(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeader,
		ReadTimeout:       l.Body,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		IdleTimeout:       l.Idle,
	}
}

// Streamed serves next with deadlines that move with progress: each read of the body
// and each write of the answer allows idle more, so an upload or download of any size
// works while it moves and a stalled client is cut off idle after its last byte. A
// request upgraded to another protocol (WebSocket) leaves these deadlines behind with
// the connection.
func Streamed(idle time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &streamBody{ReadCloser: r.Body, rc: rc, idle: idle}
		}
		sw := &streamWriter{ResponseWriter: w, rc: rc, idle: idle}
		// On HTTP/1 a write deadline outlives the request: the next request on the
		// connection (a long exec, say) must not inherit it.
		defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()
		next.ServeHTTP(sw, r)
	})
}

// streamBody moves the read deadline before each read. Errors setting it are ignored:
// a connection that takes no deadlines (a test's recorder) runs under the server's.
type streamBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
}

func (b *streamBody) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	return b.ReadCloser.Read(p)
}

// streamWriter moves the write deadline before each write; Unwrap keeps Flush and
// Hijack (http.ResponseController) reachable for ReverseProxy and WebSockets.
type streamWriter struct {
	http.ResponseWriter
	rc   *http.ResponseController
	idle time.Duration
}

func (w *streamWriter) Write(p []byte) (int, error) {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.idle))
	return w.ResponseWriter.Write(p)
}

func (w *streamWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
