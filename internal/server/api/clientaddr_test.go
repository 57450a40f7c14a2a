package api

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

// X-Forwarded-For is believed only from a trusted proxy, and only as far back as the
// first address that is not itself a trusted proxy.
func TestClientAddr(t *testing.T) {
	s := &Server{trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8")}}
	for _, tc := range []struct{ peer, xff, want string }{
		{"203.0.113.7:5000", "", "203.0.113.7"},
		{"203.0.113.7:5000", "198.51.100.1", "203.0.113.7"},          // untrusted peer: header ignored
		{"127.0.0.1:5000", "198.51.100.1", "198.51.100.1"},           // Caddy on loopback
		{"127.0.0.1:5000", "1.2.3.4, 198.51.100.1", "198.51.100.1"},  // the client's own entry is not believed
		{"127.0.0.1:5000", "198.51.100.1, 10.1.2.3", "198.51.100.1"}, // through two trusted hops
		{"127.0.0.1:5000", "", "127.0.0.1"},                          // no header: the proxy itself
		{"[::ffff:203.0.113.7]:5000", "", "203.0.113.7"},             // IPv4-mapped
		{"[2001:db8:1:2:3:4:5:6]:5000", "", "2001:db8:1:2::/64"},     // IPv6 by /64
		{"127.0.0.1:5000", "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
	} {
		r := httptest.NewRequest("POST", "/v1/auth/login", nil)
		r.RemoteAddr = tc.peer
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := s.clientAddr(r); got != tc.want {
			t.Errorf("peer %s, X-Forwarded-For %q: %s, want %s", tc.peer, tc.xff, got, tc.want)
		}
	}
	// No trusted proxies (the default): X-Forwarded-For is never believed.
	r := httptest.NewRequest("POST", "/v1/auth/login", nil)
	r.RemoteAddr = "127.0.0.1:5000"
	r.Header.Set("X-Forwarded-For", "198.51.100.1")
	if got := (&Server{}).clientAddr(r); got != "127.0.0.1" {
		t.Errorf("no trusted proxies: %s", got)
	}
}
