package netslot

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Slot is one created sandbox network.
type Slot struct {
	Addrs
}

// NetNSPath is where the namespace is mounted; a VMM process joins it through this path.
func (s *Slot) NetNSPath() string { return "/var/run/netns/" + s.NetNS }

// Create builds slot i: namespace, TAP, veth pair, routes and the DNAT rule. On failure
// everything it made is removed again.
func (c Config) Create(i int) (_ *Slot, err error) {
	a, err := c.Addrs(i)
	if err != nil {
		return nil, err
	}
	var undo []func()
	defer func() {
		if err != nil {
			for k := len(undo) - 1; k >= 0; k-- {
				undo[k]()
			}
		}
	}()

	ns, err := newNamedNS(a.NetNS)
	if err != nil {
		return nil, fmt.Errorf("create netns %s: %w", a.NetNS, err)
	}
	defer ns.Close()
	undo = append(undo, func() { _ = netns.DeleteNamed(a.NetNS) })

	nsh, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", a.NetNS, err)
	}
	defer nsh.Close()

	// The veth pair is made on the host and its peer moved into the namespace; deleting
	// the namespace removes both ends.
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a.VethHost}, PeerName: fmt.Sprintf("wrenn-vp%d", i), PeerNamespace: netlink.NsFd(ns)}
	if err := netlink.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("create veth %s: %w", a.VethHost, err)
	}
	undo = append(undo, func() { _ = netlink.LinkDel(veth) })
	hostEnd, err := netlink.LinkByName(a.VethHost)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", a.VethHost, err)
	}
	if err := netlink.AddrAdd(hostEnd, addr(netip.PrefixFrom(a.VethHostA, 31))); err != nil {
		return nil, fmt.Errorf("address %s: %w", a.VethHost, err)
	}
	if err := netlink.LinkSetUp(hostEnd); err != nil {
		return nil, fmt.Errorf("up %s: %w", a.VethHost, err)
	}

	if err := setupInside(nsh, i, a); err != nil {
		return nil, fmt.Errorf("configure netns %s: %w", a.NetNS, err)
	}
	if err := addDNAT(ns, a.HostIP, GuestIP.Addr()); err != nil {
		return nil, fmt.Errorf("dnat in %s: %w", a.NetNS, err)
	}
	// The host reaches the sandbox address through the veth; the namespace DNATs it.
	route := &netlink.Route{LinkIndex: hostEnd.Attrs().Index, Dst: ipnet(netip.PrefixFrom(a.HostIP, 32)), Gw: a.VethNSA.AsSlice()}
	if err := netlink.RouteAdd(route); err != nil {
		return nil, fmt.Errorf("route %s via %s: %w", a.HostIP, a.VethHost, err)
	}
	return &Slot{Addrs: a}, nil
}

// setupInside configures links, addresses, routes and forwarding inside the namespace.
func setupInside(h *netlink.Handle, i int, a Addrs) error {
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("up lo: %w", err)
	}
	peer, err := h.LinkByName(fmt.Sprintf("wrenn-vp%d", i))
	if err != nil {
		return fmt.Errorf("find veth peer: %w", err)
	}
	if err := h.LinkSetName(peer, vethInNS); err != nil {
		return fmt.Errorf("rename veth peer: %w", err)
	}
	if err := h.AddrAdd(peer, addr(netip.PrefixFrom(a.VethNSA, 31))); err != nil {
		return fmt.Errorf("address %s: %w", vethInNS, err)
	}
	if err := h.LinkSetUp(peer); err != nil {
		return fmt.Errorf("up %s: %w", vethInNS, err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: peer.Attrs().Index, Gw: a.VethHostA.AsSlice()}); err != nil {
		return fmt.Errorf("default route: %w", err)
	}
	tap, err := h.LinkByName(TapName)
	if err != nil {
		return fmt.Errorf("find %s: %w", TapName, err)
	}
	// Tuntap creation ignores the requested MAC; set it explicitly.
	if err := h.LinkSetHardwareAddr(tap, TapMAC); err != nil {
		return fmt.Errorf("mac of %s: %w", TapName, err)
	}
	if err := h.AddrAdd(tap, addr(TapIP)); err != nil {
		return fmt.Errorf("address %s: %w", TapName, err)
	}
	if err := h.LinkSetUp(tap); err != nil {
		return fmt.Errorf("up %s: %w", TapName, err)
	}
	return nil
}

// newNamedNS creates and mounts a namespace with a persistent TAP device and
// forwarding on. Both must be done from a thread inside the namespace: /dev/net/tun
// creates the device in the opener's namespace, and /proc/sys/net is per namespace.
func newNamedNS(name string) (netns.NsHandle, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return 0, fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	ns, err := netns.NewNamed(name) // switches this thread into it
	if err != nil {
		if setErr := netns.Set(orig); setErr == nil {
			runtime.UnlockOSThread()
		}
		return 0, err
	}
	inErr := func() error {
		tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: TapName}, Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR}
		if err := netlink.LinkAdd(tap); err != nil {
			return fmt.Errorf("create %s: %w", TapName, err)
		}
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
			return fmt.Errorf("enable forwarding: %w", err)
		}
		return nil
	}()
	if err := netns.Set(orig); err != nil {
		// This thread is stuck in the new namespace: never hand it back to the scheduler.
		ns.Close()
		_ = netns.DeleteNamed(name)
		return 0, fmt.Errorf("return to host netns: %w", err)
	}
	runtime.UnlockOSThread()
	if inErr != nil {
		ns.Close()
		_ = netns.DeleteNamed(name)
		return 0, inErr
	}
	return ns, nil
}

// addDNAT installs `ip daddr <from> dnat to <to>` in the namespace's prerouting.
func addDNAT(ns netns.NsHandle, from, to netip.Addr) error {
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return err
	}
	table := conn.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "wrenn"})
	chain := conn.AddChain(&nftables.Chain{
		Name: "prerouting", Table: table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest,
	})
	f, t := from.As4(), to.As4()
	conn.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}, // ip daddr
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: f[:]},
		&expr.Immediate{Register: 1, Data: t[:]},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
	}})
	return conn.Flush()
}

// Destroy removes the slot's namespace (and with it the veth pair, routes and rules).
// Removing a slot that is already gone is not an error.
func (s *Slot) Destroy() error {
	var errs []error
	if err := netns.DeleteNamed(s.NetNS); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("delete netns %s: %w", s.NetNS, err))
	}
	// The host end disappears with its peer, asynchronously; make sure, without
	// counting it as a failure when it vanished between lookup and delete.
	if l, err := netlink.LinkByName(s.VethHost); err == nil {
		if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("delete %s: %w", s.VethHost, err))
		}
	}
	return errors.Join(errs...)
}

func addr(p netip.Prefix) *netlink.Addr { return &netlink.Addr{IPNet: ipnet(p)} }

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
