package netslot

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/wrennhq/wrenn/internal/testutil"
)

func TestLimit(t *testing.T) {
	for _, tc := range []struct {
		sandbox, veth string
		want          int
	}{
		{"10.11.0.0/16", "10.12.0.0/15", MaxIndex},
		{"10.11.0.0/15", "10.12.0.0/14", MaxIndex},
		{"10.11.5.0/24", "10.12.0.0/23", 254},
		{"10.11.5.0/24", "10.12.0.0/24", 127}, // too small a veth range: Validate refuses it
	} {
		c := Config{SandboxPrefix: netip.MustParsePrefix(tc.sandbox), VethPrefix: netip.MustParsePrefix(tc.veth)}
		if got := c.Limit(); got != tc.want {
			t.Errorf("%s + %s: limit %d, want %d", tc.sandbox, tc.veth, got, tc.want)
		}
	}
}

func TestValidateStatic(t *testing.T) {
	if err := DefaultConfig().validateStatic(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	small := Config{SandboxPrefix: netip.MustParsePrefix("10.99.1.0/24"), VethPrefix: netip.MustParsePrefix("10.98.0.0/23")}
	if err := small.validateStatic(); err != nil {
		t.Errorf("a /24 with a /23 veth range (254 slots): %v", err)
	}
	p := netip.MustParsePrefix
	for _, tc := range []struct {
		name    string
		c       Config
		wantErr string
	}{
		{"ipv6", Config{SandboxPrefix: p("fd00::/64"), VethPrefix: p("10.12.0.0/15")}, "not an IPv4"},
		{"unset", Config{VethPrefix: p("10.12.0.0/15")}, "not an IPv4"},
		{"host bits", Config{SandboxPrefix: p("10.11.3.0/16"), VethPrefix: p("10.12.0.0/15")}, "use 10.11.0.0/16"},
		{"tiny", Config{SandboxPrefix: p("10.11.0.0/31"), VethPrefix: p("10.12.0.0/15")}, "too small"},
		{"link-local", Config{SandboxPrefix: p("169.254.0.0/16"), VethPrefix: p("10.12.0.0/15")}, "link-local"},
		{"loopback", Config{SandboxPrefix: p("10.11.0.0/16"), VethPrefix: p("127.0.0.0/15")}, "loopback"},
		{"overlap each other", Config{SandboxPrefix: p("10.12.0.0/16"), VethPrefix: p("10.12.0.0/15")}, "overlap"},
		{"veth too small", Config{SandboxPrefix: p("10.11.0.0/16"), VethPrefix: p("10.12.0.0/16")}, "use a /15 veth range"},
		{"bad deny", Config{SandboxPrefix: p("10.11.0.0/16"), VethPrefix: p("10.12.0.0/15"), Deny: []netip.Prefix{{}}}, "deny entry"},
		{"ipv6 deny", withPolicy(nil, []netip.Prefix{p("fd00::/8")}), "only IPv4"},
		{"ipv6 allow", withPolicy([]netip.Prefix{p("fd00::/8")}, nil), "only IPv4"},
		{"allow host bits", withPolicy([]netip.Prefix{p("10.1.2.3/8")}, nil), "use 10.0.0.0/8"},
		{"allow link-local", withPolicy([]netip.Prefix{p("169.254.169.254/32")}, nil), "never reach"},
		{"allow the sandbox range", withPolicy([]netip.Prefix{p("10.0.0.0/8")}, nil), "never reach"},
		{"allow public space", withPolicy([]netip.Prefix{p("8.8.8.0/24")}, nil), "public address space"},
	} {
		err := tc.c.validateStatic()
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.wantErr)
		}
	}
}

func TestValidateRoutes(t *testing.T) {
	c := DefaultConfig()
	p := netip.MustParsePrefix
	ok := []hostRoute{
		{Dst: p("0.0.0.0/0"), Dev: "eth0", Desc: "default"},
		{Dst: p("192.0.2.0/24"), Dev: "eth0", Desc: "192.0.2.0/24 dev eth0"},
		{Dst: p("10.11.0.7/32"), Dev: "wrenn-vh7", Desc: "10.11.0.7/32 dev wrenn-vh7"},     // Wrenn's own
		{Dst: p("10.12.0.14/31"), Dev: "wrenn-vh7", Desc: "10.12.0.14/31 dev wrenn-vh7"},   // Wrenn's own
		{Dst: p("10.14.0.0/16"), Dev: "eth1", Desc: "10.14.0.0/16 dev eth1"},               // adjacent, no overlap
		{Dst: p("10.10.255.0/24"), Dev: "eth1", Desc: "10.10.255.0/24 dev eth1"},           // adjacent, no overlap
		{Dst: p("10.11.0.0/16").Masked(), Dev: "wrenn-vh65534", Desc: "wrenn-owned range"}, // Wrenn's own
	}
	if err := c.validateRoutes(ok); err != nil {
		t.Errorf("non-overlapping routes refused: %v", err)
	}
	for _, tc := range []struct {
		r    hostRoute
		want []string
	}{
		{hostRoute{Dst: p("10.11.7.0/24"), Dev: "eth1", Desc: "10.11.7.0/24 dev eth1"}, []string{"sandbox range 10.11.0.0/16", "10.11.7.0/24 dev eth1"}},
		{hostRoute{Dst: p("10.13.0.0/24"), Dev: "vpn0", Desc: "10.13.0.0/24 via 10.1.1.1 dev vpn0"}, []string{"veth range 10.12.0.0/15", "via 10.1.1.1 dev vpn0"}},
		{hostRoute{Dst: p("10.0.0.0/8"), Dev: "eth1", Desc: "10.0.0.0/8 dev eth1"}, []string{"sandbox range", "veth range", "10.0.0.0/8 dev eth1"}},
	} {
		err := c.validateRoutes(append(ok, tc.r))
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("route %s: %v, want an error containing %q", tc.r.Desc, err, w)
			}
		}
	}
}

// TestValidateHost checks the real route listing: the defaults fit this host, and inside
// a test namespace a route onto the sandbox range is refused by name while one on a
// wrenn-vh* link is not.
func TestValidateHost(t *testing.T) {
	testutil.RequireRoot(t, rootFor)
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default ranges on this host: %v", err)
	}
	const ns = "wrenn-test-routes"
	newTestNS(t, ns)
	h := nsHandle(t, ns)
	// Veth pairs, not dummies: this kernel has no dummy driver.
	for _, d := range []struct{ name, addr string }{{"test0", "10.11.7.1/24"}, {"wrenn-vh9", "10.12.0.18/31"}} {
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: d.name}, PeerName: d.name + "p"}); err != nil {
			t.Fatal(err)
		}
		l, err := h.LinkByName(d.name)
		if err != nil {
			t.Fatal(err)
		}
		must(t, h.AddrAdd(l, addr(netip.MustParsePrefix(d.addr))))
		must(t, h.LinkSetUp(l))
	}
	var err error
	if nerr := inNS(ns, func() error { err = DefaultConfig().Validate(); return nil }); nerr != nil {
		t.Fatal(nerr)
	}
	if err == nil || !strings.Contains(err.Error(), "10.11.7.0/24 dev test0") {
		t.Errorf("route onto the sandbox range: %v", err)
	}
	if err != nil && strings.Contains(err.Error(), "wrenn-vh9") {
		t.Errorf("Wrenn's own route counted as a conflict: %v", err)
	}
	t.Logf("refusal reads: %v", err)
}

func withPolicy(allow, deny []netip.Prefix) Config {
	c := DefaultConfig()
	c.Allow, c.Deny = allow, deny
	return c
}

func TestValidatePolicyAccepts(t *testing.T) {
	p := netip.MustParsePrefix
	c := withPolicy([]netip.Prefix{p("192.168.7.0/24"), p("10.200.0.0/16"), p("198.18.0.0/30")}, []netip.Prefix{p("192.168.7.128/25"), p("8.8.8.8/32")})
	if err := c.validateStatic(); err != nil {
		t.Errorf("a valid policy refused: %v", err)
	}
}

// Every range of NonPublic is one of the registry's, written without host bits, and
// each public stand-in below is outside all of them.
func TestNonPublic(t *testing.T) {
	for _, p := range NonPublic {
		if p != p.Masked() || !p.Addr().Is4() {
			t.Errorf("%s: not a masked IPv4 prefix", p)
		}
	}
	for _, a := range []string{"1.1.1.1", "8.8.8.8", "172.32.0.1", "100.128.0.1", "192.169.0.1", "223.255.255.254"} {
		if overlapsAny(netip.PrefixFrom(netip.MustParseAddr(a), 32), NonPublic) {
			t.Errorf("public address %s is in NonPublic", a)
		}
	}
	for _, a := range []string{"10.0.0.1", "172.17.0.1", "192.168.1.1", "100.64.0.1", "127.0.0.53", "169.254.169.254", "0.0.0.0", "224.0.0.1", "255.255.255.255", "198.18.0.1", "203.0.113.9"} {
		if !overlapsAny(netip.PrefixFrom(netip.MustParseAddr(a), 32), NonPublic) {
			t.Errorf("non-public address %s is not in NonPublic", a)
		}
	}
}
