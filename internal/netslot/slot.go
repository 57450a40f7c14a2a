package netslot

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Slot is one created sandbox network. Its methods are not safe for concurrent use.
type Slot struct {
	Addrs
	internet bool
}

// NetNSPath is where the namespace is mounted; a VMM process joins it through this path.
func (s *Slot) NetNSPath() string { return netnsDir + "/" + s.NetNS }

// Internet reports whether the slot's guest may reach the outside.
func (s *Slot) Internet() bool { return s.internet }

// createOpts are test hooks.
type createOpts struct {
	// guestNS, when set, names an existing namespace that receives the peer (named
	// "eth0") of a veth pair called tap0, in place of the TAP device: a fake guest that
	// tests can run sockets in without a VM.
	guestNS string
}

// Create builds slot i with internet access off: namespace, TAP, veth pair, routes and
// the firewall (in the namespace and the shared host table). On failure everything it
// made is removed again.
func (c Config) Create(i int) (*Slot, error) { return c.create(i, createOpts{}) }

func (c Config) create(i int, o createOpts) (_ *Slot, err error) {
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

	ns, err := newNamedNS(a.NetNS, o)
	if err != nil {
		return nil, fmt.Errorf("create netns %s: %w", a.NetNS, err)
	}
	defer ns.Close()
	undo = append(undo, func() { _ = releaseHost() }, func() { _ = DeleteNamedNS(a.NetNS) })

	// After the namespace exists, so that a concurrent Destroy of the last other slot
	// cannot delete the host table under us (see ensureHost). Before the veth exists, so
	// that the host rules are in force from the first packet.
	if err := ensureHost(c); err != nil {
		return nil, fmt.Errorf("host firewall: %w", err)
	}

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
	// The namespace's firewall goes in before any of its links is up.
	if err := addNSFirewall(ns, c, a); err != nil {
		return nil, fmt.Errorf("firewall in %s: %w", a.NetNS, err)
	}
	if err := setupInside(nsh, i, a); err != nil {
		return nil, fmt.Errorf("configure netns %s: %w", a.NetNS, err)
	}
	if err := netlink.LinkSetUp(hostEnd); err != nil {
		return nil, fmt.Errorf("up %s: %w", a.VethHost, err)
	}
	// The host reaches the sandbox address through the veth; the namespace DNATs it.
	route := &netlink.Route{LinkIndex: hostEnd.Attrs().Index, Dst: ipnet(netip.PrefixFrom(a.HostIP, 32)), Gw: a.VethNSA.AsSlice()}
	if err := netlink.RouteAdd(route); err != nil {
		return nil, fmt.Errorf("route %s via %s: %w", a.HostIP, a.VethHost, err)
	}
	return &Slot{Addrs: a}, nil
}

// Adopt returns the slot of an existing namespace i, e.g. after an agent restart, and
// re-asserts its host-side state (the host table, and its egress if it had internet).
func (c Config) Adopt(i int) (*Slot, error) {
	a, err := c.Addrs(i)
	if err != nil {
		return nil, err
	}
	ns, err := netns.GetFromName(a.NetNS)
	if err != nil {
		return nil, fmt.Errorf("adopt slot %d: namespace %s: %w", i, a.NetNS, err)
	}
	defer ns.Close()
	if _, err := netlink.LinkByName(a.VethHost); err != nil {
		return nil, fmt.Errorf("adopt slot %d: host veth %s: %w", i, a.VethHost, err)
	}
	if err := ensureHost(c); err != nil {
		return nil, fmt.Errorf("adopt slot %d: %w", i, err)
	}
	on, err := nsEgressAllowed(ns)
	if err != nil {
		return nil, fmt.Errorf("adopt slot %d: %w", i, err)
	}
	// The namespace's rules are rebuilt from this config, so an egress policy changed
	// since the slot was made applies to it as well.
	if err := replaceNSFirewall(ns, c, a, on); err != nil {
		return nil, fmt.Errorf("adopt slot %d: firewall in %s: %w", i, a.NetNS, err)
	}
	s := &Slot{Addrs: a}
	if on {
		if err := s.SetInternet(true); err != nil {
			return nil, fmt.Errorf("adopt slot %d: %w", i, err)
		}
	}
	return s, nil
}

// SetInternet switches the guest's internet access. Turning it off also cuts the guest's
// established outbound connections (the egress chain judges every packet, not only the
// first). Host-side state goes first when opening and last when closing, so the two
// layers never disagree in the permissive direction.
func (s *Slot) SetInternet(allow bool) error {
	ns, err := netns.GetFromPath(s.NetNSPath())
	if err != nil {
		return fmt.Errorf("slot %d: namespace: %w", s.Index, err)
	}
	defer ns.Close()
	if allow {
		if err := enableForwarding(); err != nil {
			return fmt.Errorf("slot %d: %w", s.Index, err)
		}
		if err := setHostEgress(s.VethHost, true); err != nil {
			return fmt.Errorf("slot %d: %w", s.Index, err)
		}
		if err := setNSEgress(ns, true); err != nil {
			_ = setHostEgress(s.VethHost, false)
			return fmt.Errorf("slot %d: %w", s.Index, err)
		}
		s.internet = true
		return nil
	}
	if err := setNSEgress(ns, false); err != nil {
		return fmt.Errorf("slot %d: %w", s.Index, err)
	}
	s.internet = false
	if err := setHostEgress(s.VethHost, false); err != nil {
		return fmt.Errorf("slot %d: %w", s.Index, err)
	}
	return nil
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
func newNamedNS(name string, o createOpts) (netns.NsHandle, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return 0, fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	ns, err := netns.New() // switches this thread into it
	if err != nil {
		if setErr := netns.Set(orig); setErr == nil {
			runtime.UnlockOSThread()
		}
		return 0, fmt.Errorf("new netns: %w", err)
	}
	mounted := false
	inErr := func() error {
		if err := mountNetNS(name); err != nil {
			return err
		}
		mounted = true
		// No IPv6 in the namespace: nothing here needs it, and an IPv6 stack would be
		// one more thing for the guest to talk to. Set before any link is made so
		// every link inherits it. Missing files mean a kernel without IPv6.
		for _, k := range []string{"all", "default"} {
			err := os.WriteFile("/proc/sys/net/ipv6/conf/"+k+"/disable_ipv6", []byte("1"), 0o644)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("disable ipv6: %w", err)
			}
		}
		if err := addGuestLink(o); err != nil {
			return err
		}
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
			return fmt.Errorf("enable forwarding: %w", err)
		}
		return nil
	}()
	undo := func() {
		ns.Close()
		// Only what this call mounted: on os.ErrExist the name is someone else's.
		if mounted {
			_ = DeleteNamedNS(name)
		}
	}
	if err := netns.Set(orig); err != nil {
		// This thread is stuck in the new namespace: never hand it back to the scheduler.
		undo()
		return 0, fmt.Errorf("return to host netns: %w", err)
	}
	runtime.UnlockOSThread()
	if inErr != nil {
		undo()
		return 0, inErr
	}
	return ns, nil
}

// addGuestLink creates tap0 in the current thread's namespace: a TAP for the VMM, or for
// tests a veth whose peer goes into the fake guest's namespace.
func addGuestLink(o createOpts) error {
	if o.guestNS == "" {
		tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: TapName}, Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR}
		if err := netlink.LinkAdd(tap); err != nil {
			return fmt.Errorf("create %s: %w", TapName, err)
		}
		return nil
	}
	g, err := netns.GetFromName(o.guestNS)
	if err != nil {
		return fmt.Errorf("guest namespace %s: %w", o.guestNS, err)
	}
	defer g.Close()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: TapName}, PeerName: "eth0", PeerNamespace: netlink.NsFd(g)}
	if err := netlink.LinkAdd(v); err != nil {
		return fmt.Errorf("create veth %s: %w", TapName, err)
	}
	return nil
}

// addNSFirewall installs the namespace's table in one transaction.
func addNSFirewall(ns netns.NsHandle, c Config, a Addrs) error {
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return err
	}
	addNSRules(conn, c, a)
	return conn.Flush()
}

// replaceNSFirewall swaps the namespace's table for a fresh one in one transaction,
// keeping its internet switch.
func replaceNSFirewall(ns netns.NsHandle, c Config, a Addrs, internet bool) error {
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return err
	}
	conn.DelTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: tableName})
	if egress := addNSRules(conn, c, a); internet {
		addNSEgressAccept(conn, egress)
	}
	return conn.Flush()
}

// Destroy removes the slot: its host egress entry, its namespace (and with it the veth
// pair, routes and namespace rules), and the host table when no slot is left. Removing a
// slot that is already gone is not an error.
func (s *Slot) Destroy() error {
	var errs []error
	if s.internet {
		if err := setHostEgress(s.VethHost, false); err != nil {
			errs = append(errs, err)
		} else {
			s.internet = false
		}
	}
	if err := DeleteNamedNS(s.NetNS); err != nil {
		errs = append(errs, fmt.Errorf("delete netns %s: %w", s.NetNS, err))
	}
	// The host end disappears with its peer, asynchronously; make sure, without
	// counting it as a failure when it vanished between lookup and delete.
	if l, err := netlink.LinkByName(s.VethHost); err == nil {
		if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("delete %s: %w", s.VethHost, err))
		}
	}
	if err := releaseHost(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func addr(p netip.Prefix) *netlink.Addr { return &netlink.Addr{IPNet: ipnet(p)} }

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
