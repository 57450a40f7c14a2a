package proxy

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"

	"github.com/wrennhq/wrenn/internal/hostproto"
)

type oneGuest struct{ addr netip.Addr }

func (g oneGuest) ProxyTarget(string) (netip.Addr, <-chan struct{}, error) {
	return g.addr, make(chan struct{}), nil
}

// A registered agent is reached over TLS from the control plane; the guest must still
// see the end client's address and scheme, which the control plane forwards.
func TestForwardedHeadersComeFromTheControlPlane(t *testing.T) {
	guest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("X-Forwarded-For")+" "+r.Header.Get("X-Forwarded-Proto")+" "+r.Header.Get("X-Forwarded-Host"))
	}))
	defer guest.Close()
	port := guest.Listener.Addr().(*net.TCPAddr).Port
	h := New(oneGuest{netip.MustParseAddr("127.0.0.1")}, func(c string) bool { return c == "secret" }, slog.New(slog.DiscardHandler))

	req := httptest.NewRequest("GET", hostproto.ProxyPrefix+"sb0123456789abcdefgh/"+strconv.Itoa(port)+"/x", nil)
	req.TLS = &tls.ConnectionState{} // the control plane → agent hop is TLS
	req.RemoteAddr = "10.0.0.5:4000" // the control plane
	req.Header.Set(hostproto.ProxyAuthHeader, "secret")
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	req.Header.Set("X-Forwarded-Proto", "http")
	req.Header.Set("X-Forwarded-Host", "8000-sb0123456789abcdefgh.example.com")
	rec := httptest.NewRecorder()
	Routes(http.NotFoundHandler(), h).ServeHTTP(rec, req)
	if got, want := rec.Body.String(), "203.0.113.7 http 8000-sb0123456789abcdefgh.example.com"; rec.Code != 200 || got != want {
		t.Errorf("guest saw %d %q, want %q", rec.Code, got, want)
	}
}
