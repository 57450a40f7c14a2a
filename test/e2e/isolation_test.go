package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/internal/netslot"
	"github.com/wrennhq/wrenn/internal/testutil"
)

// upstream is a stand-in for "the internet": a TCP listener inside a test namespace
// behind its own veth, on the benchmark range 198.18.0.0/15 — an address on this
// machine only, which the test's agents open with WRENN_EGRESS_ALLOW since sandboxes
// reach no non-public range by default. The same listener also answers on private
// addresses, as a host's LAN neighbours would. It counts the connections that reach it.
type upstream struct {
	addr     netip.AddrPort
	private  []netip.AddrPort
	accepted atomic.Int64
}

// egressAllowEnv opens the upstream's /30 to the test agents' sandboxes.
const egressAllowEnv = "WRENN_EGRESS_ALLOW=198.18.0.0/30"

// upstreamPrivate are the upstream's LAN-like addresses, one in each kind of private
// range, with the host end of the veth at the next address of each /30.
var upstreamPrivate = []netip.Prefix{
	netip.MustParsePrefix("10.99.77.1/30"),
	netip.MustParsePrefix("172.31.77.1/30"),
	netip.MustParsePrefix("192.168.77.1/30"),
	netip.MustParsePrefix("100.64.77.1/30"),
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	const ns, hostEnd = "wrenn-test-up", "wrenn-test-uph"
	_ = netslot.DeleteNamedNS(ns)
	if l, err := netlink.LinkByName(hostEnd); err == nil {
		_ = netlink.LinkDel(l)
	}
	// Prepared as the agent does, so that this namespace's mount cannot end up shadowed
	// by a later `ip netns add` (the host tests run those).
	if err := netslot.PrepareNetNSDir(); err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	handle, err := netns.NewNamed(ns)
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	setupErr := func() error {
		lo, _ := netlink.LinkByName("lo")
		if err := netlink.LinkSetUp(lo); err != nil {
			return err
		}
		var err error
		ln, err = net.Listen("tcp", "0.0.0.0:8080") // a socket of the test namespace
		return err
	}()
	if err := netns.Set(orig); err != nil {
		t.Fatalf("return to the host namespace: %v", err) // the thread stays locked and dies with the test
	}
	runtime.UnlockOSThread()
	t.Cleanup(func() {
		if ln != nil {
			ln.Close()
		}
		handle.Close()
		_ = netslot.DeleteNamedNS(ns)
	})
	if setupErr != nil {
		t.Fatal(setupErr)
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostEnd}, PeerName: "up0", PeerNamespace: netlink.NsFd(handle)}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	host, _ := netlink.LinkByName(hostEnd)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(netlink.AddrAdd(host, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(198, 18, 0, 2), Mask: net.CIDRMask(30, 32)}}))
	must(netlink.LinkSetUp(host))
	nh, err := netlink.NewHandleAt(handle)
	must(err)
	defer nh.Close()
	peer, err := nh.LinkByName("up0")
	must(err)
	must(nh.AddrAdd(peer, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(198, 18, 0, 1), Mask: net.CIDRMask(30, 32)}}))
	must(nh.LinkSetUp(peer))
	must(nh.RouteAdd(&netlink.Route{LinkIndex: peer.Attrs().Index, Gw: net.IPv4(198, 18, 0, 2)}))

	u := &upstream{addr: netip.MustParseAddrPort("198.18.0.1:8080")}
	for _, p := range upstreamPrivate {
		ipnet := func(a netip.Addr) *netlink.Addr {
			return &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}
		}
		must(nh.AddrAdd(peer, ipnet(p.Addr())))
		must(netlink.AddrAdd(host, ipnet(p.Addr().Next())))
		u.private = append(u.private, netip.AddrPortFrom(p.Addr(), 8080))
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.accepted.Add(1)
			c.Close()
		}
	}()
	return u
}

// canConnect asks the guest to open a TCP connection (bash's /dev/tcp), 2 s at most.
func canConnect(t *testing.T, a *agentProc, id, host string, port int) bool {
	t.Helper()
	return reachable(t, a, id, []string{fmt.Sprintf("%s:%d", host, port)})[0]
}

// reachable probes several host:port targets from the guest at once (2 s at most in
// all) and says which accepted a TCP connection.
func reachable(t *testing.T, a *agentProc, id string, targets []string) []bool {
	t.Helper()
	var script strings.Builder
	for i, tg := range targets {
		host, port, _ := net.SplitHostPort(tg)
		fmt.Fprintf(&script, "(timeout 2 bash -c 'echo > /dev/tcp/%s/%s' 2>/dev/null && echo %d:open || echo %d:closed) &\n", host, port, i, i)
	}
	script.WriteString("wait\n")
	out := string(execIn(t, a.client, id, script.String()).GetStdout())
	res := make([]bool, len(targets))
	seen := 0
	for _, line := range strings.Fields(out) {
		var i int
		var state string
		if n, _ := fmt.Sscanf(strings.Replace(line, ":", " ", 1), "%d %s", &i, &state); n == 2 && i >= 0 && i < len(res) {
			res[i] = state == "open"
			seen++
		}
	}
	if seen != len(targets) {
		t.Fatalf("probe output incomplete: %q", out)
	}
	return res
}

// A real guest reaches the internet only when allowed, and never the host, the agent,
// metadata or a sibling — with positive controls so a broken network cannot pass.
func TestGuestIsolation(t *testing.T) {
	needVM(t)
	up := startUpstream(t)
	// The agent listens on every host address, as in production, and so does a stand-in
	// for any other host service; both count what reaches them.
	_, agentPort, _ := net.SplitHostPort(freeAddr(t))
	a := startAgent(t, "0.0.0.0:"+agentPort)
	hostSvc, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hostSvc.Close()
	var hostHits atomic.Int64
	go func() {
		for {
			c, err := hostSvc.Accept()
			if err != nil {
				return
			}
			if !c.RemoteAddr().(*net.TCPAddr).IP.IsLoopback() {
				hostHits.Add(1)
			}
			c.Close()
		}
	}()
	hostPort := fmt.Sprint(hostSvc.Addr().(*net.TCPAddr).Port)
	open := create(t, a.client, &pb.CreateSandboxRequest{AllowInternetAccess: ptrBool(true)}).GetSandbox()
	closed := create(t, a.client, &pb.CreateSandboxRequest{AllowInternetAccess: ptrBool(false)}).GetSandbox()

	// Positive controls: the host reaches both guests (every exec above and below goes
	// that way), and the open one reaches the upstream.
	if !canConnect(t, a, open.GetId(), up.addr.Addr().String(), 8080) {
		t.Fatal("a sandbox with internet access cannot reach the upstream: the test network is broken")
	}
	testutil.WaitFor(t, 5*time.Second, "the upstream to count the open sandbox's connection", func() bool {
		return up.accepted.Load() > 0
	})
	reached := up.accepted.Load()
	if canConnect(t, a, closed.GetId(), up.addr.Addr().String(), 8080) {
		t.Error("a sandbox without internet access reached the upstream")
	}
	if up.accepted.Load() != reached {
		t.Errorf("the upstream saw %d connections from the closed sandbox", up.accepted.Load()-reached)
	}

	// Internet access is the public internet: the upstream's private addresses answer
	// the host (positive control) but no guest.
	private := make([]string, len(up.private))
	hostDials := up.accepted.Load() + int64(len(up.private))
	for i, ap := range up.private {
		c, err := net.DialTimeout("tcp", ap.String(), 2*time.Second)
		if err != nil {
			t.Fatalf("the host cannot reach the upstream's private address %s: the test network is broken: %v", ap, err)
		}
		c.Close()
		private[i] = ap.String()
	}
	// The upstream counts a connection when its accept loop gets to it: wait until it
	// has counted the host's own, so that they are not taken for a guest's.
	testutil.WaitFor(t, 5*time.Second, "the upstream to count the host's connections", func() bool {
		return up.accepted.Load() >= hostDials
	})
	reached = up.accepted.Load()
	for _, sb := range []*pb.Sandbox{open, closed} {
		for i, ok := range reachable(t, a, sb.GetId(), private) {
			if ok {
				t.Errorf("sandbox %s (internet %v) reached the private address %s", sb.GetId(), sb.GetAllowInternetAccess(), private[i])
			}
		}
	}
	if n := up.accepted.Load() - reached; n != 0 {
		t.Errorf("the upstream's private addresses saw %d connections from guests", n)
	}

	hostVeth := func(sb *pb.Sandbox) string { // the host end of a sandbox's veth pair
		ip := netip.MustParseAddr(sb.GetHostIp()).As4()
		i := int(ip[2])<<8 | int(ip[3])
		v := netip.MustParseAddr("10.12.0.0").As4()
		n := uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3]) + uint32(2*i)
		return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}).String()
	}
	for _, sb := range []*pb.Sandbox{open, closed} {
		sibling := closed
		if sb == closed {
			sibling = open
		}
		targets := []struct{ what, addr string }{
			{"the agent via its veth gateway", net.JoinHostPort(hostVeth(sb), agentPort)},
			{"the agent via the upstream-facing host address", net.JoinHostPort("198.18.0.2", agentPort)},
			{"a host service via the veth gateway", net.JoinHostPort(hostVeth(sb), hostPort)},
			{"a host service via the upstream-facing host address", net.JoinHostPort("198.18.0.2", hostPort)},
			{"link-local metadata", "169.254.169.254:80"},
			{"the sibling's envd", net.JoinHostPort(sibling.GetHostIp(), "49983")},
			{"the sibling's veth", net.JoinHostPort(hostVeth(sibling), agentPort)},
		}
		addrs := make([]string, len(targets))
		for i, tg := range targets {
			addrs[i] = tg.addr
		}
		for i, ok := range reachable(t, a, sb.GetId(), addrs) {
			if ok {
				t.Errorf("sandbox %s (internet %v) reached %s (%s)", sb.GetId(), sb.GetAllowInternetAccess(), targets[i].what, targets[i].addr)
			}
		}
	}
	if n := hostHits.Load(); n != 0 {
		t.Errorf("the host service accepted %d connections from guests", n)
	}
	// Positive control for the host service itself: reachable from the host.
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+hostPort, time.Second); err != nil {
		t.Errorf("host service not reachable even from the host: %v", err)
	} else {
		c.Close()
	}
}

func ptrBool(b bool) *bool { return &b }
