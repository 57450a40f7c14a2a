package netslot

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// reservedPrefixes may never hold slot ranges: the guest's own link, loopback, "this
// network", and multicast/reserved space.
var reservedPrefixes = []struct {
	name string
	p    netip.Prefix
}{
	{"link-local (the guest side of every slot)", netip.MustParsePrefix("169.254.0.0/16")},
	{"loopback", netip.MustParsePrefix("127.0.0.0/8")},
	{"this-network", netip.MustParsePrefix("0.0.0.0/8")},
	{"multicast/reserved", netip.MustParsePrefix("224.0.0.0/3")},
}

// hostRoute is one destination the host already routes, as Validate compares it.
type hostRoute struct {
	Dst  netip.Prefix
	Dev  string // link name; routes on Wrenn's own wrenn-vh* links are ignored
	Desc string // for error messages, e.g. "10.11.0.0/16 via 192.0.2.1 dev eth0"
}

// Validate checks the ranges on their own (IPv4, sizes, no reserved space, no overlap
// with each other) and against the host's main routing table and addresses, ignoring
// Wrenn's own wrenn-vh* routes and the default route. Call it at start: slot ranges that
// shadow a real network would cut the host off from it.
func (c Config) Validate() error {
	if err := c.validateStatic(); err != nil {
		return err
	}
	routes, err := listHostRoutes()
	if err != nil {
		return err
	}
	return c.validateRoutes(routes)
}

func (c Config) validateStatic() error {
	for _, r := range []struct {
		name string
		p    netip.Prefix
	}{{"sandbox range", c.SandboxPrefix}, {"veth range", c.VethPrefix}} {
		switch {
		case !r.p.IsValid() || !r.p.Addr().Is4():
			return fmt.Errorf("%s %v: not an IPv4 prefix", r.name, r.p)
		case r.p != r.p.Masked():
			return fmt.Errorf("%s %s has host bits set: use %s", r.name, r.p, r.p.Masked())
		case r.p.Bits() > 30:
			return fmt.Errorf("%s %s is too small: at least a /30", r.name, r.p)
		}
		for _, res := range reservedPrefixes {
			if r.p.Overlaps(res.p) {
				return fmt.Errorf("%s %s overlaps %s space %s", r.name, r.p, res.name, res.p)
			}
		}
	}
	if c.SandboxPrefix.Overlaps(c.VethPrefix) {
		return fmt.Errorf("sandbox range %s and veth range %s overlap", c.SandboxPrefix, c.VethPrefix)
	}
	// Each slot takes one sandbox address and a /31 of veth addresses, so the veth range
	// must be twice the sandbox range's size (up to MaxIndex slots).
	slots := min(MaxIndex, 1<<(32-c.SandboxPrefix.Bits())-2)
	if pairs := 1<<(32-c.VethPrefix.Bits())/2 - 1; pairs < slots {
		return fmt.Errorf("veth range %s has room for %d slots but sandbox range %s for %d: use a /%d veth range",
			c.VethPrefix, pairs, c.SandboxPrefix, slots, c.SandboxPrefix.Bits()-1)
	}
	return c.validatePolicy()
}

// validateRoutes is the overlap check on its own, so tests can feed it route lists.
func (c Config) validateRoutes(routes []hostRoute) error {
	var errs []error
	for _, r := range routes {
		if strings.HasPrefix(r.Dev, vethPrefix) || !r.Dst.IsValid() || r.Dst.Bits() == 0 {
			continue
		}
		if c.SandboxPrefix.Overlaps(r.Dst) {
			errs = append(errs, fmt.Errorf("sandbox range %s overlaps host route %s", c.SandboxPrefix, r.Desc))
		}
		if c.VethPrefix.Overlaps(r.Dst) {
			errs = append(errs, fmt.Errorf("veth range %s overlaps host route %s", c.VethPrefix, r.Desc))
		}
	}
	return errors.Join(errs...)
}

// listHostRoutes reads the main table's IPv4 routes and the IPv4 addresses (an address
// without a prefix route is still a network the host is on), in the caller's namespace.
func listHostRoutes() ([]hostRoute, error) {
	links, err := retryDump(netlink.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	names := make(map[int]string, len(links))
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	rs, err := retryDump(func() ([]netlink.Route, error) {
		return netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	var out []hostRoute
	for _, r := range rs {
		if r.Dst == nil {
			continue // default route
		}
		p, ok := prefixOf(r.Dst.IP, r.Dst.Mask)
		if !ok {
			continue
		}
		desc := p.String()
		if r.Gw != nil {
			desc += " via " + r.Gw.String()
		}
		dev := names[r.LinkIndex]
		if dev != "" {
			desc += " dev " + dev
		}
		out = append(out, hostRoute{Dst: p, Dev: dev, Desc: desc})
	}
	as, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range as {
		p, ok := prefixOf(a.IP, a.Mask)
		if !ok {
			continue
		}
		dev := names[a.LinkIndex]
		out = append(out, hostRoute{Dst: p.Masked(), Dev: dev, Desc: "address " + p.String() + " on " + dev})
	}
	return out, nil
}

func prefixOf(ip net.IP, mask net.IPMask) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones, bits := mask.Size()
	if bits == 0 {
		ones = a.BitLen() // no mask: a single address
	}
	return netip.PrefixFrom(a, ones), true
}
