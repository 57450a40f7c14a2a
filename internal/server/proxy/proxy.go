// Package proxy is the control plane's sandbox port proxy: requests for
// {port}-{sandbox_id}.{domain} (or carrying E2b-Sandbox-Id and E2b-Sandbox-Port) go
// to the owning host's agent (/proxy/{id}/{port}/…), streamed both ways, with
// WebSocket upgrades; answers follow E2B's client proxy (specs/e2b-rest-api.md §4).
package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wrennhq/wrenn/internal/envd/envdapi"
	"github.com/wrennhq/wrenn/internal/hostproto"
	"github.com/wrennhq/wrenn/internal/httpbuf"
	"github.com/wrennhq/wrenn/internal/httplimit"
	"github.com/wrennhq/wrenn/internal/ident"
	"github.com/wrennhq/wrenn/internal/server/core"
	"github.com/wrennhq/wrenn/internal/server/sandboxes"
)

// Headers of header routing (E2B_SANDBOX_URL deployments).
const (
	SandboxIDHeader   = "E2b-Sandbox-Id"
	SandboxPortHeader = "E2b-Sandbox-Port"
)

// envdInternal are envd paths only the control plane and agent may call.
var envdInternal = map[string]bool{
	"/init": true, "/freeze": true, "/unfreeze": true, "/collapse": true,
	"/fsfreeze": true, "/fsthaw": true, "/upgrade": true,
}

// DefaultConnLimit bounds the concurrent proxied requests (and WebSockets) per sandbox
// on one control plane, so one sandbox cannot take every connection.
const DefaultConnLimit = 1000

// Proxy routes sandbox traffic; everything else goes to the next handler (the API).
type Proxy struct {
	svc     *sandboxes.Service
	buffers *httpbuf.Pool
	domain  string // e.g. "wrenn.example"; "" = header routing only
	log     *slog.Logger
	limit   int
	idle    time.Duration // httplimit.Streamed's, for proxied bodies and answers
	obs     Observer      // nil: none

	mu    sync.Mutex
	conns map[string]int // open proxied requests by sandbox
}

// New returns the proxy for domain.
func New(svc *sandboxes.Service, domain string, log *slog.Logger) *Proxy {
	return &Proxy{svc: svc, domain: strings.ToLower(strings.Trim(domain, ".")), log: log, buffers: httpbuf.New(),
		limit: DefaultConnLimit, idle: httplimit.ControlPlane.StreamIdle, conns: map[string]int{}}
}

// SetStreamIdle changes how long a proxied body or answer may pause before the client
// is cut off (a proxied request streams, so the API's whole-request deadline and size
// limit do not apply); call it before serving.
func (p *Proxy) SetStreamIdle(d time.Duration) { p.idle = d }

// SetConnLimit changes the per-sandbox limit of concurrent proxied requests; call it
// before serving.
func (p *Proxy) SetConnLimit(n int) { p.limit = n }

// SetObserver has o told of the traffic proxied (metrics); call it before serving.
func (p *Proxy) SetObserver(o Observer) { p.obs = o }

// acquire counts a proxied request of a sandbox, or refuses it over the limit.
func (p *Proxy) acquire(id string) (release func(), ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns[id] >= p.limit {
		return nil, false
	}
	p.conns[id]++
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.conns[id]--; p.conns[id] == 0 {
			delete(p.conns, id)
		}
	}, true
}

// Wrap sends sandbox traffic to the proxy and the rest to next.
func (p *Proxy) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route, ok := p.match(r)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		if route.err != "" {
			http.Error(w, route.err, http.StatusBadRequest)
			return
		}
		p.serve(w, r, route.id, route.port)
	})
}

type route struct {
	id   string
	port int
	err  string // a 400's text
}

// match tells sandbox traffic from API calls: header routing when the Host is
// localhost, an IP or sandbox.<domain> and an E2b-Sandbox-* header is present;
// host routing for <port>-<id>.<domain>.
func (p *Proxy) match(r *http.Request) (route, bool) {
	host := strings.ToLower(r.Host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	hid, hport := r.Header.Get(SandboxIDHeader), r.Header.Get(SandboxPortHeader)
	headerHost := host == "localhost" || net.ParseIP(host) != nil || (p.domain != "" && host == "sandbox."+p.domain)
	if headerHost && (hid != "" || hport != "") {
		if hid == "" || hport == "" {
			return route{err: "missing header: both " + SandboxIDHeader + " and " + SandboxPortHeader + " are required"}, true
		}
		return parse(hport, hid), true
	}
	if p.domain == "" {
		return route{}, false
	}
	label, rest, ok := strings.Cut(host, ".")
	if !ok || rest != p.domain || !strings.Contains(label, "-") {
		return route{}, false
	}
	// E2B's legacy SDKs name a sandbox "{id}-{clientID}"; as on the REST routes, that
	// one suffix is dropped and anything more is refused, so no other name reaches
	// the sandbox.
	parts := strings.Split(label, "-")
	if len(parts) > 3 {
		return route{err: "Invalid sandbox ID"}, true
	}
	return parse(parts[0], parts[1]), true
}

func parse(port, id string) route {
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return route{err: "Invalid sandbox port"}
	}
	if !ident.ValidSandboxID(id) {
		return route{err: "Invalid sandbox ID"}
	}
	return route{id: id, port: n}
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request, id string, port int) {
	if port == envdapi.Port {
		if clean := path.Clean("/" + r.URL.Path); envdInternal[clean] {
			p.reply(w, r, http.StatusNotFound, map[string]any{
				"message": "This path is reserved for the control plane and cannot be reached through the proxy", "path": clean, "code": 404})
			return
		}
	}
	ep, err := p.svc.ProxyRoute(r.Context(), id, port, sandboxes.ProxyCredentials{
		APIKey: r.Header.Get("X-API-Key"), TrafficToken: r.Header.Get(sandboxes.TrafficTokenHeader),
	})
	var denied *sandboxes.ProxyDeniedError
	switch {
	case errors.As(err, &denied):
		p.reply(w, r, http.StatusForbidden, map[string]any{"sandboxId": id, "message": denied.Message, "code": 403})
		return
	case errors.Is(err, sandboxes.ErrPaused):
		// 502 as for a sandbox that is not there, as E2B's proxy answers a paused
		// sandbox without auto-resume: the e2b SDKs read it as "not running"
		// (isRunning() false) rather than as an error. The message says what to do.
		p.reply(w, r, http.StatusBadGateway, map[string]any{"sandboxId": id,
			"message": "The sandbox is paused; resume it first (POST /v1/sandboxes/" + id + "/resume)", "code": 502})
		return
	case errors.Is(err, core.ErrNotFound):
		p.reply(w, r, http.StatusBadGateway, map[string]any{"sandboxId": id, "message": "The sandbox was not found", "code": 502})
		return
	case err != nil:
		p.log.Error("proxy route", "sandbox", id, "err", err)
		p.reply(w, r, http.StatusBadGateway, map[string]any{"sandboxId": id, "message": "The sandbox's host is not reachable", "code": 502})
		return
	}
	release, ok := p.acquire(id)
	if !ok {
		p.reply(w, r, http.StatusTooManyRequests, map[string]any{"sandboxId": id,
			"message": fmt.Sprintf("The sandbox has too many concurrent incoming connections (limit: %d)", p.limit), "connectionLimit": p.limit, "code": 429})
		return
	}
	defer release()
	if p.obs != nil {
		w = p.observe(w, r)
		defer p.obs.ProxyConnEnded()
	}
	base, err := url.Parse(ep.BaseURL)
	if err != nil {
		p.log.Error("proxy: host endpoint", "sandbox", id, "err", err)
		p.reply(w, r, http.StatusBadGateway, map[string]any{"sandboxId": id, "message": "The sandbox's host is not reachable", "code": 502})
		return
	}
	transport := ep.HTTP1
	if r.ProtoMajor == 2 {
		transport = ep.HTTP2
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = base.Scheme, base.Host
			prefix := fmt.Sprintf("%s%s/%d", hostproto.ProxyPrefix, id, port)
			escaped := resolveDotSegments(r.URL.EscapedPath())
			pr.Out.URL.Path, pr.Out.URL.RawPath = prefix+escaped, ""
			if unescaped, err := url.PathUnescape(escaped); err == nil {
				pr.Out.URL.Path, pr.Out.URL.RawPath = prefix+unescaped, prefix+escaped
			}
			pr.Out.Host = r.Host
			// Wrenn's credentials never reach the sandbox: code in it may be untrusted.
			pr.Out.Header.Del("X-API-Key")
			pr.Out.Header.Del(sandboxes.TrafficTokenHeader)
			dropControlPlaneCookies(pr.Out.Header)
			pr.Out.Header.Set(hostproto.ProxyAuthHeader, ep.Secret)
			pr.SetXForwarded()
		},
		Transport:     transport,
		BufferPool:    p.buffers,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the client left
			}
			p.log.Warn("proxy to agent", "sandbox", id, "port", port, "err", err)
			p.reply(w, r, http.StatusBadGateway, map[string]any{"sandboxId": id, "message": "The sandbox's host is not reachable", "code": 502})
		},
	}
	httplimit.Streamed(p.idle, rp).ServeHTTP(w, r)
}

// dropControlPlaneCookies removes the control plane's own cookies (the dashboard's
// session and CSRF cookies, the sign-in state: every name wrenn_… or
// __Host-wrenn_…) from a proxied request. A browser sends them only to the control
// plane's own host, never to a sandbox's {port}-{id} host (they carry no Domain),
// but header routing (E2b-Sandbox-Id) reaches sandboxes through the control plane's
// host, and code in a sandbox must never see a session it could act with. The
// proxy authenticates by API key or traffic token only, never by these cookies.
func dropControlPlaneCookies(h http.Header) {
	lines := h.Values("Cookie")
	if len(lines) == 0 {
		return
	}
	var kept []string
	for _, line := range lines {
		for _, c := range strings.Split(line, ";") {
			c = strings.TrimSpace(c)
			name, _, _ := strings.Cut(c, "=")
			if c == "" || strings.HasPrefix(name, "wrenn_") || strings.HasPrefix(name, "__Host-wrenn_") {
				continue
			}
			kept = append(kept, c)
		}
	}
	h.Del("Cookie")
	if len(kept) > 0 {
		h.Set("Cookie", strings.Join(kept, "; "))
	}
}

// reply answers in JSON, or in HTML when the request is a browser navigation.
func (p *Proxy) reply(w http.ResponseWriter, r *http.Request, status int, body map[string]any) {
	if browserNavigation(r) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		msg := html.EscapeString(fmt.Sprint(body["message"]))
		fmt.Fprintf(w, "<!doctype html><title>%d</title><h1>%d</h1><p>%s</p>\n", status, status, msg)
		return
	}
	writeJSON(w, status, body)
}

func browserNavigation(r *http.Request) bool {
	switch {
	case !strings.Contains(r.UserAgent(), "Mozilla/"),
		strings.Contains(r.Header.Get("Accept"), "application/json"),
		r.Header.Get("X-Requested-With") != "":
		return false
	}
	switch r.Header.Get("Sec-Fetch-Mode") {
	case "cors", "no-cors", "same-origin", "websocket":
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// resolveDotSegments removes "." and ".." segments (also percent-encoded ones) from an
// escaped path as a browser does (RFC 3986 §5.2.4), keeping everything else as sent,
// double slashes included. Sandbox traffic is always resolved this way before it goes
// on, so no router behind the proxy redirects it and ".." never climbs out of the
// sandbox's own path.
func resolveDotSegments(escaped string) string {
	if !strings.Contains(escaped, ".") && !strings.Contains(strings.ToLower(escaped), "%2e") {
		return escaped
	}
	segs := strings.Split(escaped, "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch strings.ToLower(s) {
		case ".", "%2e":
		case "..", "%2e%2e", ".%2e", "%2e.":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, s)
			continue
		}
		if last {
			out = append(out, "") // "/a/.." is the directory "/"
		}
	}
	if len(out) == 1 {
		return "/"
	}
	return strings.Join(out, "/")
}
