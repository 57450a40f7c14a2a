package proxy

import (
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/wrennhq/wrenn/internal/ident"
)

// FuzzMatch feeds hostile Host and E2B header values to the router that tells
// sandbox traffic from API calls. Whatever it routes must name a valid sandbox and
// port, and a host-routed request must have exactly the {port}-{id}.{domain} form:
// a lenient parse would send traffic for one name to another sandbox.
func FuzzMatch(f *testing.F) {
	const domain = "wrenn.test"
	id := "sb0123456789abcdefgh"
	for _, seed := range [][3]string{
		{"3000-" + id + "." + domain, "", ""},
		{"3000-" + id + "-6532622b." + domain, "", ""},
		{"3000-" + id + "-x-y." + domain, "", ""},
		{"03000-" + id + "." + domain, "", ""},
		{"65536-" + id + "." + domain, "", ""},
		{"3000-" + id + "." + domain + ":8080", "", ""},
		{"3000-" + strings.ToUpper(id) + "." + domain, "", ""},
		{"-." + domain, "", ""},
		{"localhost:3000", id, "8080"},
		{"[::1]:80", id, ""},
		{"127.0.0.1", "", "80"},
		{"sandbox." + domain, id, "+80"},
		{"a.b.c." + domain, "", ""},
		{"", "", ""},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	p := &Proxy{domain: domain}
	f.Fuzz(func(t *testing.T, host, hid, hport string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = host
		if hid != "" {
			r.Header.Set(SandboxIDHeader, hid)
		}
		if hport != "" {
			r.Header.Set(SandboxPortHeader, hport)
		}
		rt, ok := p.match(r)
		if !ok || rt.err != "" {
			if ok && rt.err == "" {
				t.Fatal("a refusal without a message")
			}
			return
		}
		if !ident.ValidSandboxID(rt.id) || rt.port < 1 || rt.port > 65535 {
			t.Fatalf("host %q headers %q %q routed to invalid %q:%d", host, hid, hport, rt.id, rt.port)
		}
		if hid != "" && hport != "" && rt.id == hid && strconv.Itoa(rt.port) == hport {
			return // header routing
		}
		// {port}-{id}, or E2B's legacy {port}-{id}-{clientID}.
		label, _, _ := strings.Cut(strings.ToLower(host), ".")
		want := strconv.Itoa(rt.port) + "-" + rt.id
		if suffix, ok := strings.CutPrefix(label, want); !ok || suffix != "" && (suffix[0] != '-' || strings.Contains(suffix[1:], "-")) {
			t.Fatalf("host %q routed to %q:%d; only %q.%s names that", host, rt.id, rt.port, want, domain)
		}
	})
}
