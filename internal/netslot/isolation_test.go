package netslot

// Isolation without a VM: each slot gets a fake guest — a namespace whose eth0 is the
// peer of a veth standing in for tap0, addressed exactly like a guest — and the host gets
// a fake upstream — a namespace behind its own veth at 198.18.0.1 (RFC 2544 benchmark
// space), routed like an uplink. Every address probed is inside a namespace made here or
// is the host's own, and a test-only guard table drops (and counts) any slot packet the
// host would forward anywhere but the fake upstream, so nothing can leave the machine
// even if the rules under test were wrong.

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/wrennhq/wrenn/internal/testutil"
)

const (
	upNS        = "wrenn-test-up"
	upHostLink  = "wrenn-tup-h" // not wrenn-vh*: it plays the uplink
	guardTable  = "wrenn-testguard"
	guestPort   = 8000
	upPort      = 9000
	negTimeout  = 300 * time.Millisecond
	posTimeout  = 2 * time.Second
	guestNSBase = "wrenn-test-guest-"
)

var (
	upAddr     = netip.MustParsePrefix("198.18.0.1/30")
	upHostAddr = netip.MustParsePrefix("198.18.0.2/30")
)

// setupUpstream makes the fake upstream: namespace, veth to the host, a server on
// upAddr:upPort and a counter of every IPv4 packet arriving from the host.
func setupUpstream(t *testing.T) {
	newTestNS(t, upNS)
	h := nsHandle(t, upNS)
	ns, err := netns.GetFromName(upNS)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	_ = netlinkDelByName(upHostLink)
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: upHostLink}, PeerName: "eth0", PeerNamespace: netlink.NsFd(ns)}
	if err := netlink.LinkAdd(v); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlinkDelByName(upHostLink) })
	hostEnd, err := netlink.LinkByName(upHostLink)
	if err != nil {
		t.Fatal(err)
	}
	must(t, netlink.AddrAdd(hostEnd, addr(upHostAddr)))
	must(t, netlink.LinkSetUp(hostEnd))
	eth, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	must(t, h.AddrAdd(eth, addr(upAddr)))
	must(t, h.LinkSetUp(eth))

	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	tb := conn.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "upcount"})
	ch := conn.AddChain(&nftables.Chain{Name: "pre", Table: tb, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw})
	conn.AddRule(&nftables.Rule{Table: tb, Chain: ch, Exprs: cat(iif("eth0"), []expr.Any{&expr.Counter{}}), UserData: comment("arrived")})
	must(t, conn.Flush())
	serve(t, upNS, netip.AddrPortFrom(upAddr.Addr(), upPort), "up")
}

func upstreamArrived(t *testing.T) uint64 {
	return ruleCounter(t, upNS, nftables.TableFamilyIPv4, "upcount", "pre", "arrived")
}

// setupGuard adds the test-only safety net on the host, after Wrenn's own chains: any
// slot packet forwarded to an interface other than the fake upstream is dropped and
// counted. The test asserts the count stays zero: Wrenn's rules alone held.
func setupGuard(t *testing.T) {
	conn, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tb := &nftables.Table{Family: nftables.TableFamilyINet, Name: guardTable}
	conn.DelTable(tb)
	_ = conn.Flush() // a leftover of an interrupted run
	conn.AddTable(tb)
	ch := conn.AddChain(&nftables.Chain{Name: "fwd", Table: tb, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityRef(20)})
	conn.AddRule(&nftables.Rule{Table: tb, Chain: ch, Exprs: cat(iifVeth(), matchIf(expr.MetaKeyOIFNAME, upHostLink, false, expr.CmpOpNeq), counted(drop())), UserData: comment("escaped")})
	must(t, conn.Flush())
	t.Cleanup(func() {
		c, err := nftables.New()
		if err == nil {
			c.DelTable(tb)
			_ = c.Flush()
		}
	})
}

// fakeGuest is a slot whose tap0 leads to a namespace configured like a guest.
type fakeGuest struct {
	*Slot
	ns string
}

func newFakeGuest(t *testing.T, c Config, i int) fakeGuest {
	name := fmt.Sprintf("%s%d", guestNSBase, i)
	newTestNS(t, name)
	s, err := c.create(i, createOpts{guestNS: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Destroy(); err != nil {
			t.Errorf("destroy slot %d: %v", i, err)
		}
	})
	h := nsHandle(t, name)
	eth, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	must(t, h.LinkSetHardwareAddr(eth, GuestMAC))
	must(t, h.AddrAdd(eth, addr(GuestIP)))
	must(t, h.LinkSetUp(eth))
	must(t, h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: TapIP.Addr().AsSlice()}))
	serve(t, name, netip.AddrPortFrom(netip.IPv4Unspecified(), guestPort), "guest")
	return fakeGuest{Slot: s, ns: name}
}

// hostListen listens on the host at addr, preferring port and falling back to a free
// one (the preferred one may be taken by a real service on the wildcard address).
func hostListen(t *testing.T, a netip.Addr, port uint16) netip.AddrPort {
	for _, p := range append([]uint16{port}, 41000, 41001, 41002, 41003, 41004, 41005) {
		ap := netip.AddrPortFrom(a, p)
		if l, err := net.Listen("tcp4", ap.String()); err == nil {
			serveOn(t, l, "host")
			if p != port {
				t.Logf("port %d busy on %s, using %d", port, a, p)
			}
			return ap
		}
	}
	t.Fatalf("no free port on %s", a)
	return netip.AddrPort{}
}

type probe struct {
	name string
	from string // namespace
	to   netip.AddrPort
}

// expectBlocked runs the probes concurrently; each must time out — no answer at all, not
// even a refusal, so the packets were dropped before reaching any stack.
func expectBlocked(t *testing.T, probes []probe) {
	var wg sync.WaitGroup
	for _, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			line, err := dial(p.from, p.to, negTimeout)
			if err == nil {
				t.Errorf("%s: %s reached %s (%q)", p.name, p.from, p.to, line)
			} else if !isTimeout(err) {
				t.Errorf("%s: %s to %s: want a timeout (dropped), got %v", p.name, p.from, p.to, err)
			}
		}()
	}
	wg.Wait()
}

func expectReach(t *testing.T, from string, to netip.AddrPort, want string) string {
	t.Helper()
	line, err := dial(from, to, posTimeout)
	if err != nil || !strings.HasPrefix(line, want) {
		t.Fatalf("%q to %s: %q, %v (want %q)", from, to, line, err, want)
	}
	return line
}

// isolationEnv sets up the guard, the fake upstream, slot a (internet on) and slot b
// (internet off), and host listeners the guests must never reach: the agent and
// control-plane ports on each slot's host veth address and on the "uplink" address,
// plus a loopback-only one (returned separately) to be tried through a veth address.
func isolationEnv(t *testing.T, ia, ib int) (a, b fakeGuest, hostTargets []netip.AddrPort, loop netip.AddrPort) {
	testutil.RequireRoot(t, rootFor)
	c := upstreamConfig()
	t.Cleanup(func() { checkNoLeftovers(t, ia, ib) })
	setupGuard(t)
	setupUpstream(t)
	a = newFakeGuest(t, c, ia)
	b = newFakeGuest(t, c, ib)
	if err := a.SetInternet(true); err != nil {
		t.Fatal(err)
	}
	for _, ad := range []netip.Addr{a.VethHostA, b.VethHostA, upHostAddr.Addr()} {
		hostTargets = append(hostTargets, hostListen(t, ad, 50051), hostListen(t, ad, 8080))
	}
	loop = hostListen(t, netip.MustParseAddr("127.0.0.1"), 50052)
	return a, b, hostTargets, loop
}

// upstreamConfig opens the fake upstream's benchmark range, which is closed to guests by
// default like every non-public range: the test's stand-in for the public internet.
func upstreamConfig() Config {
	c := DefaultConfig()
	c.Allow = []netip.Prefix{upAddr.Masked()}
	return c
}

// hostForwardDrops sums the host forward chain's drop counters (and its policy chain's).
func hostForwardDrops(t *testing.T) map[string]uint64 {
	m := map[string]uint64{}
	for _, tag := range []string{tagHostSibling, tagHostInbound, tagHostEgress} {
		m[tag] = ruleCounter(t, "", nftables.TableFamilyINet, tableName, "forward", tag)
	}
	m[tagHostDeny] = ruleCounter(t, "", nftables.TableFamilyINet, tableName, policyChain, tagHostDeny)
	return m
}

func checkGuard(t *testing.T) {
	if n := ruleCounter(t, "", nftables.TableFamilyINet, guardTable, "fwd", "escaped"); n != 0 {
		t.Errorf("the test guard caught %d packets Wrenn's rules let through", n)
	}
}

func TestIsolation(t *testing.T) {
	a, b, hostTargets, loop := isolationEnv(t, 64501, 64502)

	// (a) positive controls.
	expectReach(t, "", netip.AddrPortFrom(a.HostIP, guestPort), "guest")
	expectReach(t, "", netip.AddrPortFrom(b.HostIP, guestPort), "guest")

	// (b)+(c) negatives, all at once.
	if n := upstreamArrived(t); n != 0 {
		t.Fatalf("upstream saw %d packets before any test traffic", n)
	}
	bEgress0 := ruleCounter(t, b.NetNS, nftables.TableFamilyIPv4, tableName, "forward", tagNSEgressDrop)
	hostIn0 := ruleCounter(t, "", nftables.TableFamilyINet, tableName, "input", tagHostInput)
	hostFwd0 := hostForwardDrops(t)
	var probes []probe
	for _, g := range []fakeGuest{a, b} {
		sib := b
		if g.Index == b.Index {
			sib = a
		}
		for _, ht := range hostTargets {
			probes = append(probes, probe{"host address", g.ns, ht})
		}
		probes = append(probes,
			probe{"loopback-bound host port via veth address", g.ns, netip.AddrPortFrom(g.VethHostA, loop.Port())},
			probe{"metadata", g.ns, netip.MustParseAddrPort("169.254.169.254:80")},
			probe{"own gateway", g.ns, netip.AddrPortFrom(TapIP.Addr(), 22)},
			probe{"sibling sandbox IP", g.ns, netip.AddrPortFrom(sib.HostIP, guestPort)},
			probe{"sibling veth (namespace end)", g.ns, netip.AddrPortFrom(sib.VethNSA, guestPort)},
		)
	}
	probes = append(probes, probe{"upstream with internet off", b.ns, netip.AddrPortFrom(upAddr.Addr(), upPort)})
	t0 := time.Now()
	expectBlocked(t, probes)
	t.Logf("%d blocked probes in %v", len(probes), time.Since(t0).Round(time.Millisecond))

	if n := upstreamArrived(t); n != 0 {
		t.Errorf("upstream saw %d packets while only blocked traffic was sent", n)
	}
	if d := ruleCounter(t, b.NetNS, nftables.TableFamilyIPv4, tableName, "forward", tagNSEgressDrop) - bEgress0; d == 0 {
		t.Error("slot b's egress drop counter did not move: the upstream probe was not dropped by it")
	} else {
		t.Logf("slot b egress drop: %d packets", d)
	}
	// Slot a has internet, so its probes of the host's uplink address pass its namespace
	// and must be stopped by the host's input rule.
	if d := ruleCounter(t, "", nftables.TableFamilyINet, tableName, "input", tagHostInput) - hostIn0; d == 0 {
		t.Error("host input drop counter did not move")
	} else {
		t.Logf("host input drop: %d packets", d)
	}
	// Everything forwarded was stopped inside the namespaces: the host's forward drops
	// (tested on their own in TestIsolationHostLayer) saw nothing.
	for tag, n := range hostForwardDrops(t) {
		if n != hostFwd0[tag] {
			t.Errorf("host forward %q counted %d packets: a namespace let them through", tag, n-hostFwd0[tag])
		}
	}
	for _, g := range []fakeGuest{a, b} {
		if n := ruleCounter(t, g.NetNS, nftables.TableFamilyIPv4, tableName, policyChain, tagNSDeny); n == 0 {
			t.Errorf("slot %d: deny counters did not move", g.Index)
		}
		if n := ruleCounter(t, g.NetNS, nftables.TableFamilyIPv4, tableName, "input", tagNSToNS); n == 0 {
			t.Errorf("slot %d: guest-to-namespace counter did not move", g.Index)
		}
	}

	// (a) with internet the guest reaches the upstream, masqueraded to the host's
	// uplink address — and the counter that stayed at zero above does count.
	line := expectReach(t, a.ns, netip.AddrPortFrom(upAddr.Addr(), upPort), "up")
	if !strings.Contains(line, upHostAddr.Addr().String()+":") {
		t.Errorf("upstream saw %q, want the host's uplink address %s", line, upHostAddr.Addr())
	}
	if n := upstreamArrived(t); n == 0 {
		t.Error("upstream counter did not count the allowed connection")
	}

	// Turning internet off takes effect at once; the host still reaches the guest.
	if err := a.SetInternet(false); err != nil {
		t.Fatal(err)
	}
	expectBlocked(t, []probe{{"upstream after internet off", a.ns, netip.AddrPortFrom(upAddr.Addr(), upPort)}})
	expectReach(t, "", netip.AddrPortFrom(a.HostIP, guestPort), "guest")
	checkGuard(t)
}

// TestIsolationHostLayer subverts slot b's namespace — its table replaced by a bare
// masquerade, as an attacker inside it would do — and checks that the host table alone
// still keeps b from the upstream, its sibling, metadata and the host.
func TestIsolationHostLayer(t *testing.T) {
	a, b, hostTargets, _ := isolationEnv(t, 64503, 64504)
	subvert(t, b)

	fwd0 := hostForwardDrops(t)
	in0 := ruleCounter(t, "", nftables.TableFamilyINet, tableName, "input", tagHostInput)
	probes := []probe{
		{"upstream without internet", b.ns, netip.AddrPortFrom(upAddr.Addr(), upPort)},
		{"sibling sandbox IP", b.ns, netip.AddrPortFrom(a.HostIP, guestPort)},
		{"sibling veth", b.ns, netip.AddrPortFrom(a.VethNSA, guestPort)},
		{"metadata", b.ns, netip.MustParseAddrPort("169.254.169.254:80")},
	}
	for _, ht := range hostTargets {
		probes = append(probes, probe{"host address", b.ns, ht})
	}
	expectBlocked(t, probes)
	fwd := hostForwardDrops(t)
	for _, tag := range []string{tagHostEgress, tagHostSibling, tagHostDeny} {
		if fwd[tag] == fwd0[tag] {
			t.Errorf("host forward %q did not count: something else stopped the probe", tag)
		}
	}
	if ruleCounter(t, "", nftables.TableFamilyINet, tableName, "input", tagHostInput) == in0 {
		t.Error("host input drop did not count")
	}
	if n := upstreamArrived(t); n != 0 {
		t.Errorf("upstream saw %d packets from the subverted slot", n)
	}
	// The unaffected slot still works both ways.
	expectReach(t, a.ns, netip.AddrPortFrom(upAddr.Addr(), upPort), "up")
	expectReach(t, "", netip.AddrPortFrom(a.HostIP, guestPort), "guest")
	checkGuard(t)
}

// subvert replaces g's namespace table by a bare masquerade, as an attacker inside the
// namespace would do, leaving only the host table between g and the world.
func subvert(t *testing.T, g fakeGuest) {
	ns, err := netns.GetFromName(g.NetNS)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	conn.DelTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: tableName})
	tb := conn.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "evil"})
	post := conn.AddChain(&nftables.Chain{Name: "post", Table: tb, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	conn.AddRule(&nftables.Rule{Table: tb, Chain: post, Exprs: cat(oif(vethInNS), []expr.Any{&expr.Masq{}})})
	must(t, conn.Flush())
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func netlinkDelByName(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	return netlink.LinkDel(l)
}
