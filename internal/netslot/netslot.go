// Package netslot gives each sandbox its own network: a named network namespace holding
// the guest's TAP device, joined to the host by a veth pair, with a host-reachable
// sandbox address DNATed to the guest. Every guest uses the same address and MAC inside
// its namespace, which is what lets clones of one memory snapshot run side by side.
//
// Firewalling (nft.go) is in two layers — per namespace and one shared host table — so
// that whatever its internet setting a guest never reaches the host, link-local
// metadata, or another sandbox, and with internet access only the public internet plus
// what the operator opened (egress.go). A Pool (pool.go) keeps slots ready so that a sandbox
// gets its network in microseconds. Config.Validate refuses ranges that overlap the
// host's own routes.
package netslot

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/vishvananda/netlink"
)

// Fixed addresses inside every namespace (DESIGN.md §5).
var (
	// GuestIP is the guest's address, set by the initramfs from the kernel command line.
	GuestIP = netip.MustParsePrefix("169.254.0.21/30")
	// TapIP is the namespace side of the TAP device: the guest's gateway.
	TapIP = netip.MustParsePrefix("169.254.0.22/30")
	// TapMAC is the TAP device's MAC in every namespace, so a guest restored into a new
	// namespace keeps a valid neighbour entry for its gateway.
	TapMAC = net.HardwareAddr{0x02, 0x77, 0x72, 0x6e, 0x00, 0x01}
	// GuestMAC is the MAC of the guest's NIC, the same in every sandbox.
	GuestMAC = net.HardwareAddr{0x02, 0x77, 0x72, 0x6e, 0x00, 0x02}
)

// TapName is the TAP device inside each namespace.
const TapName = "tap0"

// vethInNS is the namespace end of the veth pair, renamed once moved in.
const vethInNS = "veth0"

// MaxIndex is the largest slot index with the default /16 sandbox range; smaller ranges
// have a smaller Config.Limit.
const MaxIndex = 65534

// Name prefixes of everything a slot creates on the host. The host firewall matches the
// veth prefix as an interface wildcard, so nothing else may be named like it.
const (
	nsPrefix   = "wrenn-ns-"
	vethPrefix = "wrenn-vh"
)

// Config holds the address ranges, configurable so they can avoid a host's own routes.
// Check it with Validate before creating slots.
type Config struct {
	// SandboxPrefix: slot i is reachable from the host at the i-th address of it.
	SandboxPrefix netip.Prefix
	// VethPrefix: slot i's veth pair uses the i-th /31 of it (needs a /15 for 65534 slots).
	VethPrefix netip.Prefix
	// Allow opens ranges of NonPublic to guests with internet access, e.g. a package
	// mirror on the LAN. Link-local and the slot ranges stay closed whatever it says.
	Allow []netip.Prefix
	// Deny lists extra destinations guests never reach even with internet access, on
	// top of the built-in ones (link-local, the sandbox and veth ranges, the host
	// itself) and NonPublic. It wins over Allow, so a range can be cut out of one.
	Deny []netip.Prefix
}

// DefaultConfig is DESIGN.md §5's scheme.
func DefaultConfig() Config {
	return Config{
		SandboxPrefix: netip.MustParsePrefix("10.11.0.0/16"),
		VethPrefix:    netip.MustParsePrefix("10.12.0.0/15"),
	}
}

// Names and addresses of slot i.
type Addrs struct {
	Index     int
	NetNS     string     // namespace name, mounted at /var/run/netns/<NetNS>
	VethHost  string     // host end of the veth pair
	HostIP    netip.Addr // the sandbox's host-reachable address
	VethHostA netip.Addr // host end's address (even)
	VethNSA   netip.Addr // namespace end's address (odd)
}

// Limit is the largest slot index the ranges allow: the sandbox range's addresses minus
// its first and last (which look like network and broadcast addresses), and never more
// than the veth range has /31s for, nor more than MaxIndex.
func (c Config) Limit() int {
	n := MaxIndex
	if c.SandboxPrefix.IsValid() && c.SandboxPrefix.Addr().Is4() {
		n = min(n, 1<<(32-c.SandboxPrefix.Bits())-2)
	}
	if c.VethPrefix.IsValid() && c.VethPrefix.Addr().Is4() {
		n = min(n, 1<<(32-c.VethPrefix.Bits())/2-1)
	}
	return max(n, 0)
}

// Addrs computes slot i's names and addresses.
func (c Config) Addrs(i int) (Addrs, error) {
	if limit := c.Limit(); i < 1 || i > limit {
		return Addrs{}, fmt.Errorf("slot index %d out of range 1..%d", i, limit)
	}
	host, err := nth(c.SandboxPrefix, uint32(i))
	if err != nil {
		return Addrs{}, fmt.Errorf("sandbox address of slot %d: %w", i, err)
	}
	even, err := nth(c.VethPrefix, uint32(2*i))
	if err != nil {
		return Addrs{}, fmt.Errorf("veth addresses of slot %d: %w", i, err)
	}
	odd, err := nth(c.VethPrefix, uint32(2*i+1))
	if err != nil {
		return Addrs{}, fmt.Errorf("veth addresses of slot %d: %w", i, err)
	}
	s := strconv.Itoa(i)
	// Interface names are at most 15 bytes: "wrenn-vh65534" fits, "wrenn-veth-65534"
	// (DESIGN.md's proposal) does not.
	return Addrs{Index: i, NetNS: nsPrefix + s, VethHost: vethPrefix + s, HostIP: host, VethHostA: even, VethNSA: odd}, nil
}

// nth returns the n-th address of an IPv4 prefix.
func nth(p netip.Prefix, n uint32) (netip.Addr, error) {
	if !p.Addr().Is4() {
		return netip.Addr{}, fmt.Errorf("%s is not an IPv4 prefix", p)
	}
	if size := uint64(1) << (32 - p.Bits()); uint64(n) >= size {
		return netip.Addr{}, fmt.Errorf("%s has no address number %d", p, n)
	}
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += n
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), nil
}

// dumpRetries bounds how often a netlink dump is redone when the kernel reports that
// the table changed under it (another slot being made or removed meanwhile).
const dumpRetries = 10

// retryDump runs a netlink dump until it is consistent: netlink marks a dump that raced
// a change with ErrDumpInterrupted, and its results may then miss entries.
func retryDump[T any](dump func() (T, error)) (T, error) {
	var out T
	var err error
	for range dumpRetries {
		out, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return out, err
}
