// Package proxy serves the host agent's /proxy/{sandbox_id}/{port}/* route: HTTP (and
// WebSocket upgrades, and HTTP/2 without TLS) passed to a port of a sandbox's guest,
// streamed both ways without buffering, over pooled connections, and cut when the
// sandbox stops. Only the control plane may call it.
package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/wrennhq/wrenn/internal/hostproto"
	"github.com/wrennhq/wrenn/internal/httpbuf"
	"github.com/wrennhq/wrenn/internal/ident"
)

// Target finds a running sandbox's guest address and the channel closed when its
// proxied connections must end (the agent's sandbox manager).
type Target interface {
	ProxyTarget(id string) (netip.Addr, <-chan struct{}, error)
}

// Handler is the proxy.
type Handler struct {
	target  Target
	allowed func(credential string) bool
	log     *slog.Logger
	http1   *http.Transport
	h2c     *http.Transport
	buffers *httpbuf.Pool
}

// New returns the proxy; allowed checks the control plane's credential.
func New(target Target, allowed func(string) bool, log *slog.Logger) *Handler {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	base := func() *http.Transport {
		return &http.Transport{
			DialContext:         dialer.DialContext,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
			// Responses may take as long as the service likes (long polls, streams).
			ResponseHeaderTimeout: 0,
			DisableCompression:    true, // pass bodies through as they are
		}
	}
	h2c := base()
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	h2c.Protocols = &p
	return &Handler{target: target, allowed: allowed, log: log, http1: base(), h2c: h2c, buffers: httpbuf.New()}
}

// Routes serves the proxy route with px and everything else with api. The proxy route
// must bypass http.ServeMux: the mux answers a path with dot segments or a double
// slash with a redirect to its cleaned form, which would show the client this route
// and never reach the guest; guest paths are the guest's to interpret.
func Routes(api, px http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, hostproto.ProxyPrefix) {
			px.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.allowed(r.Header.Get(hostproto.ProxyAuthHeader)) {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "missing or wrong agent credentials", "code": 401})
		return
	}
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), hostproto.ProxyPrefix)
	if !ok {
		http.NotFound(w, r)
		return
	}
	id, rest, _ := strings.Cut(rest, "/")
	portText, rest, _ := strings.Cut(rest, "/")
	port, err := strconv.Atoi(portText)
	switch {
	case !ident.ValidSandboxID(id):
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": "Invalid sandbox ID", "code": 400})
		return
	case err != nil || port < 1 || port > 65535:
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": "Invalid sandbox port", "code": 400})
		return
	}
	addr, done, err := h.target.ProxyTarget(id)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]any{"sandboxId": id, "message": "The sandbox was not found", "code": 502})
		return
	}
	// The request (and an upgraded connection) ends with the sandbox.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-done:
			cancel()
		case <-ctx.Done():
		}
	}()
	upstream := netip.AddrPortFrom(addr, uint16(port)).String()
	transport := h.http1
	if r.ProtoMajor == 2 {
		transport = h.h2c // e.g. gRPC needs HTTP/2 end to end
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = upstream
			pr.Out.URL.Path, pr.Out.URL.RawPath = "/"+rest, ""
			if unescaped, err := url.PathUnescape("/" + rest); err == nil {
				pr.Out.URL.Path, pr.Out.URL.RawPath = unescaped, "/"+rest
			}
			pr.Out.Host = r.Host // services see the name the client used
			pr.Out.Header.Del(hostproto.ProxyAuthHeader)
			// The caller is the control plane (it holds the credential checked above), so
			// its X-Forwarded-* describe the real client: pass them on. Set afresh here
			// they would name the control plane as the client and this hop's scheme.
			for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
				if v := pr.In.Header.Values(h); len(v) > 0 {
					pr.Out.Header[h] = v
				}
			}
		},
		Transport:     transport,
		BufferPool:    h.buffers,
		FlushInterval: -1, // stream: every write reaches the client at once
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if ctx.Err() != nil && r.Context().Err() == nil {
				return // the sandbox stopped mid-request; the connection is cut
			}
			var op *net.OpError
			if errors.As(err, &op) && op.Op == "dial" {
				writeJSON(w, http.StatusBadGateway, map[string]any{"sandboxId": id, "message": "The sandbox is running but port is not open", "port": port, "code": 502})
				return
			}
			if r.Context().Err() == nil {
				h.log.Warn("proxy to guest", "sandbox", id, "port", port, "err", err)
			}
			writeJSON(w, http.StatusBadGateway, map[string]any{"sandboxId": id, "message": "The sandbox's service did not answer", "port": port, "code": 502})
		},
	}
	rp.ServeHTTP(w, r.WithContext(ctx))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
