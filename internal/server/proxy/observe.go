package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
)

// Observer learns of the traffic the proxy carries (promx.ControlPlane counts it for
// Prometheus). It is called on the proxied request's goroutines, once per read and
// write, so it must be cheap and safe for concurrent use.
type Observer interface {
	// ProxyConnStarted and ProxyConnEnded bracket each request proxied to a sandbox
	// (a WebSocket for as long as it stays open); refused requests are not counted.
	ProxyConnStarted()
	ProxyConnEnded()
	// ProxyBytesIn counts bytes from the client to the sandbox, ProxyBytesOut those
	// back: bodies and upgraded streams, not headers.
	ProxyBytesIn(n int)
	ProxyBytesOut(n int)
}

// observe starts counting a proxied request: its body counts as it is read, and the
// returned writer counts the answer. The caller ends it (ProxyConnEnded).
func (p *Proxy) observe(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
	p.obs.ProxyConnStarted()
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &countedBody{ReadCloser: r.Body, obs: p.obs}
	}
	return &countedWriter{ResponseWriter: w, obs: p.obs}
}

// countedBody counts the request body's bytes as the proxy reads them.
type countedBody struct {
	io.ReadCloser
	obs Observer
}

func (b *countedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.obs.ProxyBytesIn(n)
	}
	return n, err
}

// countedWriter counts the answer's bytes. A WebSocket's bytes pass through its
// hijacked connection instead, which Hijack hands out counted; Unwrap keeps the rest
// of the writer (deadlines, Flush) reachable through http.ResponseController.
type countedWriter struct {
	http.ResponseWriter
	obs Observer
}

func (w *countedWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	if n > 0 {
		w.obs.ProxyBytesOut(n)
	}
	return n, err
}

func (w *countedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack is the underlying connection's, counted both ways. (The upgrade's own answer
// goes out through the buffered writer it returns, uncounted, as headers are.)
func (w *countedWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	return &countedConn{Conn: conn, obs: w.obs}, brw, nil
}

// countedConn is a hijacked client connection: what is read from it goes in to the
// sandbox, what is written goes out to the client.
type countedConn struct {
	net.Conn
	obs Observer
}

func (c *countedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.obs.ProxyBytesIn(n)
	}
	return n, err
}

func (c *countedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.obs.ProxyBytesOut(n)
	}
	return n, err
}
