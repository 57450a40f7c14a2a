package netslot

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// Internet access means the public internet. NonPublic lists the IPv4 destinations a
// guest with internet access still never reaches unless the operator allows a range:
// every block of IANA's special-purpose registry that is not globally reachable, so
// that a sandbox cannot talk to the host's LAN, a cloud VPC, a carrier-grade NAT
// neighbour or anything behind a documentation or benchmark address. IPv6 needs no list:
// the host forwards no IPv6 from a slot at all.
var NonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("10.0.0.0/8"),      // RFC 1918
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (carrier-grade NAT)
	netip.MustParsePrefix("127.0.0.0/8"),     // loopback
	netip.MustParsePrefix("169.254.0.0/16"),  // link-local, cloud metadata
	netip.MustParsePrefix("172.16.0.0/12"),   // RFC 1918
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // TEST-NET-1
	netip.MustParsePrefix("192.88.99.0/24"),  // deprecated 6to4 relay anycast
	netip.MustParsePrefix("192.168.0.0/16"),  // RFC 1918
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // TEST-NET-2
	netip.MustParsePrefix("203.0.113.0/24"),  // TEST-NET-3
	netip.MustParsePrefix("224.0.0.0/4"),     // multicast
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and the limited broadcast address
}

// policyChain holds the destination policy in both the namespace and the host table:
// drops for what is denied, a return for what the operator allowed, drops for the rest
// of NonPublic. A returned packet goes on to the internet switch; a dropped one never
// gets there. Both layers build it with addPolicyRules, so they cannot disagree.
const policyChain = "policy"

// alwaysDenied are the destinations no setting opens: all of link-local (the guest's own
// link needs only ARP, which nftables ip rules never see), every sandbox address and
// every veth address (which includes the host's veth ends).
func (c Config) alwaysDenied() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("169.254.0.0/16"), c.SandboxPrefix.Masked(), c.VethPrefix.Masked()}
}

// addPolicyRules queues chain's rules, in order: the built-in denials, the operator's
// Deny (which wins over Allow, so a range can be carved out of an allowed one), the
// operator's Allow, then NonPublic. In an inet table the caller jumps here for IPv4
// packets only.
func (c Config) addPolicyRules(conn *nftables.Conn, ch *nftables.Chain, denyTag string) {
	add := func(tag string, p netip.Prefix, v []expr.Any) {
		r := &nftables.Rule{Table: ch.Table, Chain: ch, Exprs: cat(matchIP(offDaddr, p, expr.CmpOpEq), v)}
		if tag != "" {
			r.UserData = comment(tag)
		}
		conn.AddRule(r)
	}
	for _, p := range append(c.alwaysDenied(), c.Deny...) {
		add(denyTag, p, counted(drop()))
	}
	for _, p := range c.Allow {
		add("", p, []expr.Any{&expr.Verdict{Kind: expr.VerdictReturn}})
	}
	for _, p := range NonPublic {
		add(denyTag, p, counted(drop()))
	}
}

// policyFingerprint names the policy a table was built with.
func (c Config) policyFingerprint() string {
	var b strings.Builder
	for _, l := range []struct {
		key string
		ps  []netip.Prefix
	}{{"deny", c.Deny}, {"allow", c.Allow}} {
		for _, p := range l.ps {
			b.WriteString(" " + l.key + "=" + p.String())
		}
	}
	return b.String()
}

// validatePolicy checks Allow and Deny: IPv4 prefixes without host bits, an Allow entry
// only where it opens something (inside NonPublic) and never into the built-in denials.
func (c Config) validatePolicy() error {
	check := func(setting string, p netip.Prefix) error {
		switch {
		case !p.IsValid():
			return fmt.Errorf("%s entry %v: not a prefix", setting, p)
		case !p.Addr().Is4():
			return fmt.Errorf("%s entry %s: only IPv4 ranges (no IPv6 leaves a sandbox at all)", setting, p)
		case p != p.Masked():
			return fmt.Errorf("%s entry %s has host bits set: use %s", setting, p, p.Masked())
		}
		return nil
	}
	for _, p := range c.Deny {
		if err := check("egress deny", p); err != nil {
			return err
		}
	}
	for _, p := range c.Allow {
		if err := check("egress allow", p); err != nil {
			return err
		}
		for _, d := range c.alwaysDenied() {
			if p.Overlaps(d) {
				return fmt.Errorf("egress allow entry %s overlaps %s, which sandboxes never reach (link-local, the sandbox range or the veth range)", p, d)
			}
		}
		if !overlapsAny(p, NonPublic) {
			return fmt.Errorf("egress allow entry %s is public address space, reachable with internet access already", p)
		}
	}
	return nil
}

func overlapsAny(p netip.Prefix, list []netip.Prefix) bool {
	for _, q := range list {
		if p.Overlaps(q) {
			return true
		}
	}
	return false
}
