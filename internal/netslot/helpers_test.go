package netslot

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// rootFor is why most of this package's tests need root, for testutil.RequireRoot.
const rootFor = "network namespaces, veths and nftables"

// inNS runs fn on an OS thread inside the named namespace ("" = this one). Sockets made
// there stay in that namespace after fn returns.
func inNS(name string, fn func() error) error {
	if name == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		ferr := fn()
		// A thread that cannot return stays locked and dies with this goroutine.
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// newTestNS creates a named namespace with IPv6 off and lo up, removed in t.Cleanup. It
// is mounted the way slots are (mountNetNS), so that it cannot end up shadowed.
func newTestNS(t testing.TB, name string) {
	t.Helper()
	_ = DeleteNamedNS(name) // a leftover of an interrupted run
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return // thread dies locked
		}
		ns, err := netns.New()
		if err == nil {
			ns.Close()
			err = mountNetNS(name)
		}
		if err == nil {
			for _, k := range []string{"all", "default"} {
				_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+k+"/disable_ipv6", []byte("1"), 0o644)
			}
			if lo, lerr := netlink.LinkByName("lo"); lerr == nil {
				err = netlink.LinkSetUp(lo)
			}
		}
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		orig.Close()
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("namespace %s: %v", name, err)
	}
	t.Cleanup(func() { _ = DeleteNamedNS(name) })
}

// nsHandle opens a netlink handle in a named namespace, closed in t.Cleanup.
func nsHandle(t testing.TB, name string) *netlink.Handle {
	t.Helper()
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// serve listens on addr inside namespace ns and answers every connection with a line
// naming the peer it saw, until t ends.
func serve(t testing.TB, ns string, addr netip.AddrPort, greeting string) {
	t.Helper()
	var l net.Listener
	if err := inNS(ns, func() (err error) { l, err = net.Listen("tcp4", addr.String()); return err }); err != nil {
		t.Fatalf("listen %s in %q: %v", addr, ns, err)
	}
	serveOn(t, l, greeting)
}

func serveOn(t testing.TB, l net.Listener, greeting string) {
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s from %s\n", greeting, c.RemoteAddr())
			_ = c.Close()
		}
	}()
}

// dial connects from namespace ns and returns the server's line.
func dial(ns string, to netip.AddrPort, timeout time.Duration) (string, error) {
	var c net.Conn
	err := inNS(ns, func() (err error) {
		c, err = net.DialTimeout("tcp4", to.String(), timeout)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// ruleCounter sums the packet counters of the rules tagged tag in one chain of a table
// in namespace ns ("" = host).
func ruleCounter(t testing.TB, ns string, family nftables.TableFamily, table, chain, tag string) uint64 {
	t.Helper()
	var opts []nftables.ConnOption
	if ns != "" {
		h, err := netns.GetFromName(ns)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		opts = append(opts, nftables.WithNetNSFd(int(h)))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	tb := &nftables.Table{Family: family, Name: table}
	rules, err := conn.GetRules(tb, &nftables.Chain{Name: chain, Table: tb})
	if err != nil {
		t.Fatalf("rules of %s/%s in %q: %v", table, chain, ns, err)
	}
	var n uint64
	found := false
	for _, r := range rules {
		if s, _ := userdata.GetString(r.UserData, userdata.TypeComment); s != tag {
			continue
		}
		found = true
		for _, e := range r.Exprs {
			if c, ok := e.(*expr.Counter); ok {
				n += c.Packets
			}
		}
	}
	if !found {
		t.Fatalf("no rule %q in %s/%s of %q", tag, table, chain, ns)
	}
	return n
}

// checkNoLeftovers fails if any namespace, host veth or host egress entry of the index
// range remains.
func checkNoLeftovers(t testing.TB, first, last int) {
	t.Helper()
	in := func(name, prefix string) bool {
		rest, ok := strings.CutPrefix(name, prefix)
		i, err := strconv.Atoi(rest)
		return ok && err == nil && i >= first && i <= last
	}
	entries, _ := os.ReadDir(netnsDir)
	for _, e := range entries {
		if in(e.Name(), nsPrefix) {
			t.Errorf("leftover namespace %s", e.Name())
		}
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if in(l.Attrs().Name, vethPrefix) {
			t.Errorf("leftover link %s", l.Attrs().Name)
		}
	}
	conn, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	els, err := conn.GetSetElements(&nftables.Set{Table: hostTable(), Name: egressSet, KeyType: nftables.TypeIFName})
	if err == nil {
		for _, e := range els {
			if in(strings.TrimRight(string(e.Key), "\x00"), vethPrefix) {
				t.Errorf("leftover host egress entry %q", e.Key)
			}
		}
	}
}

// otherSlotsExist reports whether slots outside a test's range exist (e.g. an e2e run in
// parallel), in which case the shared host table legitimately stays.
func otherSlotsExist() bool {
	ok, _ := anySlotNS()
	return ok
}
