package netslot

import (
	"net/netip"
	"os"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/wrennhq/wrenn/internal/testutil"
)

// Private and other non-public ranges the fake upstream also answers on: each pair is
// the upstream's address and the host end's, a /30 on the upstream veth. Nothing of
// them leaves this machine.
var (
	upPrivate = []netip.Prefix{ // closed by default
		netip.MustParsePrefix("10.99.77.1/30"),
		netip.MustParsePrefix("172.31.77.1/30"),
		netip.MustParsePrefix("192.168.77.1/30"),
		netip.MustParsePrefix("100.64.77.1/30"),
	}
	upOpened = netip.MustParsePrefix("10.99.78.1/30")   // opened by the test's Allow
	upCutOut = netip.MustParsePrefix("10.99.78.129/30") // inside Allow, closed again by Deny
)

// addUpstreamAddrs gives the fake upstream more addresses, each with the host end's
// address in the same /30 (so the host routes there like to a LAN) and a server on it.
func addUpstreamAddrs(t *testing.T, ps ...netip.Prefix) {
	h := nsHandle(t, upNS)
	eth, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	hostEnd, err := netlink.LinkByName(upHostLink)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		must(t, h.AddrAdd(eth, addr(p)))
		must(t, netlink.AddrAdd(hostEnd, addr(netip.PrefixFrom(p.Addr().Next(), p.Bits()))))
		serve(t, upNS, netip.AddrPortFrom(p.Addr(), upPort), "up")
	}
}

// Internet access is the public internet only: a guest with it reaches the stand-in
// for a public host and what the operator opened, and none of the private ranges the
// host reaches — stopped by the namespace's rules and, with those gone, by the host's.
// A changed policy applies to the host at once and to a slot's namespace when adopted.
func TestEgressPolicy(t *testing.T) {
	testutil.RequireRoot(t, rootFor)
	const ia, ib = 64505, 64506
	t.Cleanup(func() { checkNoLeftovers(t, ia, ib) })
	// With host forwarding off, Wrenn turns it on behind its forwarding guard, which a
	// rebuild of the host table must keep: switch it off for the test where possible.
	wantGuard := false
	if on, err := forwardingOn(); err == nil && on && !otherSlotsExist() {
		must(t, os.WriteFile(ipForwardPath, []byte("0"), 0o644))
		t.Cleanup(func() { _ = os.WriteFile(ipForwardPath, []byte("1"), 0o644) })
		wantGuard = true
	}
	setupGuard(t)
	setupUpstream(t)
	addUpstreamAddrs(t, append([]netip.Prefix{upOpened, upCutOut}, upPrivate...)...)

	c := upstreamConfig()
	c.Allow = append(c.Allow, netip.MustParsePrefix("10.99.78.0/24"))
	c.Deny = []netip.Prefix{netip.MustParsePrefix("10.99.78.128/25")}
	a := newFakeGuest(t, c, ia)
	b := newFakeGuest(t, c, ib)
	for _, g := range []fakeGuest{a, b} {
		must(t, g.SetInternet(true))
	}
	subvert(t, b) // b's traffic meets only the host table

	closed := []netip.AddrPort{netip.AddrPortFrom(upCutOut.Addr(), upPort)}
	for _, p := range upPrivate {
		closed = append(closed, netip.AddrPortFrom(p.Addr(), upPort))
	}
	// Positive controls: every closed address answers the host, and both guests reach
	// the public stand-in and the opened range.
	for _, to := range closed {
		expectReach(t, "", to, "up")
	}
	for _, g := range []fakeGuest{a, b} {
		expectReach(t, g.ns, netip.AddrPortFrom(upAddr.Addr(), upPort), "up")
		expectReach(t, g.ns, netip.AddrPortFrom(upOpened.Addr(), upPort), "up")
	}

	nsDeny0 := ruleCounter(t, a.NetNS, nftables.TableFamilyIPv4, tableName, policyChain, tagNSDeny)
	hostDeny0 := hostForwardDrops(t)[tagHostDeny]
	var probes []probe
	for _, to := range closed {
		probes = append(probes, probe{"non-public address from " + a.ns, a.ns, to})
	}
	expectBlocked(t, probes)
	if ruleCounter(t, a.NetNS, nftables.TableFamilyIPv4, tableName, policyChain, tagNSDeny) == nsDeny0 {
		t.Error("the namespace's deny counter did not move: something else stopped slot a")
	}
	if n := hostForwardDrops(t)[tagHostDeny]; n != hostDeny0 {
		t.Errorf("the host's deny counter moved by %d: slot a's namespace let non-public traffic through", n-hostDeny0)
	}
	probes = probes[:0]
	for _, to := range closed {
		probes = append(probes, probe{"non-public address from the subverted " + b.ns, b.ns, to})
	}
	expectBlocked(t, probes)
	if hostForwardDrops(t)[tagHostDeny] == hostDeny0 {
		t.Error("the host's deny counter did not move: something else stopped the subverted slot")
	}

	// The operator closes the opened range again. The host table follows at once and
	// keeps both slots' internet; slot a's namespace follows when the slot is adopted.
	guarded := func() bool {
		conn, err := nftables.New()
		must(t, err)
		g, err := hasGuard(conn)
		must(t, err)
		return g
	}
	guard0 := guarded()
	if wantGuard && !guard0 {
		t.Error("forwarding was off, yet Wrenn's forwarding guard is missing")
	}
	c2 := upstreamConfig()
	must(t, ensureHost(c2))
	if guarded() != guard0 {
		t.Errorf("the forwarding guard was there: %v, after the rebuild: %v", guard0, !guard0)
	}
	opened := netip.AddrPortFrom(upOpened.Addr(), upPort)
	expectBlocked(t, []probe{{"closed range from the subverted slot", b.ns, opened}})
	expectReach(t, b.ns, netip.AddrPortFrom(upAddr.Addr(), upPort), "up")
	if _, err := c2.Adopt(ia); err != nil {
		t.Fatal(err)
	}
	nsDeny0 = ruleCounter(t, a.NetNS, nftables.TableFamilyIPv4, tableName, policyChain, tagNSDeny)
	expectBlocked(t, []probe{{"closed range from the adopted slot", a.ns, opened}})
	if ruleCounter(t, a.NetNS, nftables.TableFamilyIPv4, tableName, policyChain, tagNSDeny) == nsDeny0 {
		t.Error("the adopted slot's namespace did not take the new policy")
	}
	expectReach(t, a.ns, netip.AddrPortFrom(upAddr.Addr(), upPort), "up")
	checkGuard(t)
}

// A host table of an older Wrenn, or of another egress policy, has the same ranges and
// is rebuilt; only other ranges make ensureHost refuse.
func TestRangesOfFingerprint(t *testing.T) {
	c := withPolicy([]netip.Prefix{netip.MustParsePrefix("10.99.0.0/16")}, nil)
	old := "wrenn-netslot v1 sandbox=10.11.0.0/16 veth=10.12.0.0/15 deny=192.0.2.0/24"
	if rangesOf(old) != c.rangesFingerprint() || rangesOf(c.fingerprint()) != c.rangesFingerprint() {
		t.Errorf("ranges of %q and %q: %q, %q, want %q", old, c.fingerprint(), rangesOf(old), rangesOf(c.fingerprint()), c.rangesFingerprint())
	}
	other := c
	other.VethPrefix = netip.MustParsePrefix("10.14.0.0/15")
	if rangesOf(other.fingerprint()) == c.rangesFingerprint() {
		t.Error("other ranges look the same")
	}
}
