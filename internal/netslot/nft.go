package netslot

// The firewall lives in two places:
//
//   - table ip wrenn inside every slot namespace: DNAT host→guest, masquerade of guest
//     traffic leaving veth0, and the forward filter deciding what the guest may reach. It
//     is the first line of defence and holds the per-slot internet switch (chain egress).
//   - table inet wrenn in the host namespace, shared by every slot and keyed on the veth
//     interface wildcard wrenn-vh*: nothing from a slot reaches the host itself, no slot
//     reaches another, and only interfaces in set @egress are forwarded onwards. It holds
//     even if a namespace's own rules were subverted (e.g. by a VMM escape inside it).
//
// Only drops are decisive across tables (an accept merely ends one base chain), so the
// host table never weakens the host's own firewall; it can only drop more.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const (
	tableName   = "wrenn"
	egressChain = "egress"   // in the namespace: empty = internet off, "accept" = on
	egressSet   = "egress"   // on the host: veth interfaces allowed out
	guardChain  = "fwdguard" // on the host: exists only when Wrenn turned forwarding on
	// lockPath serialises creating and deleting the host table across processes (an agent
	// and a test run may share a host).
	lockPath      = "/run/wrenn-netslot.lock"
	ipForwardPath = "/proc/sys/net/ipv4/ip_forward"
	netnsDir      = "/var/run/netns"
	// fingerprintTag starts the comment recording which ranges the host table was built
	// for, so a second Wrenn with other ranges is refused instead of half-protected.
	fingerprintTag = "wrenn-netslot v1 "
)

// Comments on the rules whose counters matter (tests read them; operators see them in
// `nft list ruleset`).
const (
	tagNSEgressDrop = "wrenn: guest egress not allowed"
	tagNSDeny       = "wrenn: guest to denied destination"
	tagNSSpoof      = "wrenn: guest with foreign source"
	tagNSToNS       = "wrenn: guest to its namespace"
	tagHostInput    = "wrenn: sandbox to host"
	tagHostSibling  = "wrenn: sandbox to sandbox"
	tagHostEgress   = "wrenn: sandbox egress not allowed"
	tagHostDeny     = "wrenn: sandbox to denied destination"
	tagHostInbound  = "wrenn: new connection into sandbox"
	tagGuard        = "wrenn: forwarding guard"
)

func (c Config) fingerprint() string {
	return c.rangesFingerprint() + c.policyFingerprint()
}

// rangesFingerprint is the part of the fingerprint that another Wrenn on this host must
// share: its slot ranges. A table that differs only in policy is rebuilt instead.
func (c Config) rangesFingerprint() string {
	return fingerprintTag + "sandbox=" + c.SandboxPrefix.String() + " veth=" + c.VethPrefix.String()
}

// --- expression helpers ---------------------------------------------------------------

func comment(s string) []byte { return userdata.AppendString(nil, userdata.TypeComment, s) }

// ifname pads an interface name as the kernel stores it, for exact matches and set keys.
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// matchIf compares iifname/oifname: exactly, or as a prefix when wildcard (nft's "name*"
// is a compare of only the prefix's bytes).
func matchIf(key expr.MetaKey, name string, wildcard bool, op expr.CmpOp) []expr.Any {
	data := ifname(name)
	if wildcard {
		data = []byte(name)
	}
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: op, Register: 1, Data: data}}
}

func iif(name string) []expr.Any { return matchIf(expr.MetaKeyIIFNAME, name, false, expr.CmpOpEq) }
func oif(name string) []expr.Any { return matchIf(expr.MetaKeyOIFNAME, name, false, expr.CmpOpEq) }
func iifVeth() []expr.Any        { return matchIf(expr.MetaKeyIIFNAME, vethPrefix, true, expr.CmpOpEq) }
func oifVeth() []expr.Any        { return matchIf(expr.MetaKeyOIFNAME, vethPrefix, true, expr.CmpOpEq) }
func oifNotVeth() []expr.Any     { return matchIf(expr.MetaKeyOIFNAME, vethPrefix, true, expr.CmpOpNeq) }
func isIPv4(op expr.CmpOp) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, &expr.Cmp{Op: op, Register: 1, Data: []byte{unix.NFPROTO_IPV4}}}
}

// IPv4 header offsets of the source and destination address.
const (
	offSaddr = 12
	offDaddr = 16
)

// matchIP compares the address at off against a prefix. In an inet table it must follow
// an IPv4 check, or it would read an IPv6 header at IPv4 offsets.
func matchIP(off uint32, p netip.Prefix, op expr.CmpOp) []expr.Any {
	p = p.Masked()
	net := p.Addr().As4()
	e := []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4}}
	if p.Bits() < 32 {
		mask := binary.BigEndian.AppendUint32(nil, ^uint32(0)<<(32-p.Bits()))
		e = append(e, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)})
	}
	return append(e, &expr.Cmp{Op: op, Register: 1, Data: net[:]})
}

// ctBits matches when any of bits is set in the conntrack key (state or status).
func ctBits(key expr.CtKey, bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: key},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binary.NativeEndian.AppendUint32(nil, bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

func ctEstablished() []expr.Any {
	return ctBits(expr.CtKeySTATE, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED)
}

// ipsDstNAT is IPS_DST_NAT: the connection was DNATed, i.e. it is host→guest.
const ipsDstNAT = 1 << 5

func ctDNAT() []expr.Any { return ctBits(expr.CtKeySTATUS, ipsDstNAT) }

func accept() *expr.Verdict { return &expr.Verdict{Kind: expr.VerdictAccept} }
func drop() *expr.Verdict   { return &expr.Verdict{Kind: expr.VerdictDrop} }

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func counted(v *expr.Verdict) []expr.Any { return []expr.Any{&expr.Counter{}, v} }

// --- namespace table ------------------------------------------------------------------

// addNSRules queues the slot namespace's table; the caller flushes. Internet is off until
// SetInternet adds the accept to chain egress.
func addNSRules(conn *nftables.Conn, c Config, a Addrs) (egress *nftables.Chain) {
	t := conn.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: tableName})
	pre := conn.AddChain(&nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	post := conn.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	in := conn.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	policyDrop := nftables.ChainPolicyDrop
	fwd := conn.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &policyDrop})
	egress = conn.AddChain(&nftables.Chain{Name: egressChain, Table: t})
	c.addPolicyRules(conn, conn.AddChain(&nftables.Chain{Name: policyChain, Table: t}), tagNSDeny)

	rule := func(ch *nftables.Chain, tag string, e ...[]expr.Any) {
		r := &nftables.Rule{Table: t, Chain: ch, Exprs: cat(e...)}
		if tag != "" {
			r.UserData = comment(tag)
		}
		conn.AddRule(r)
	}
	guest := GuestIP.Addr().As4()
	// ip daddr <sandbox IP> dnat to <guest>: how the host reaches the guest.
	rule(pre, "", matchIP(offDaddr, netip.PrefixFrom(a.HostIP, 32), expr.CmpOpEq), []expr.Any{
		&expr.Immediate{Register: 1, Data: guest[:]},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
	})
	// oifname "veth0" masquerade: every new connection leaving towards the host is a
	// guest's (the namespace opens none), and it must carry the veth address the host
	// masquerades — also when the guest forged its source.
	rule(post, "", oif(vethInNS), []expr.Any{&expr.Masq{}})
	// The namespace itself offers the guest nothing.
	rule(in, tagNSToNS, iif(TapName), counted(drop()))

	// forward, policy drop:
	rule(fwd, "", iif(vethInNS), oif(TapName), ctDNAT(), []expr.Any{accept()})        // host → guest
	rule(fwd, "", iif(vethInNS), oif(TapName), ctEstablished(), []expr.Any{accept()}) // replies to guest egress
	rule(fwd, "", iif(TapName), oif(vethInNS), ctDNAT(), []expr.Any{accept()})        // guest's replies to the host
	rule(fwd, tagNSSpoof, iif(TapName), matchIP(offSaddr, netip.PrefixFrom(GuestIP.Addr(), 32), expr.CmpOpNeq), counted(drop()))
	rule(fwd, "", iif(TapName), []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: policyChain}})
	rule(fwd, "", iif(TapName), oif(vethInNS), []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: egressChain}})
	rule(fwd, tagNSEgressDrop, counted(drop()))
	return egress
}

// --- host table -----------------------------------------------------------------------

func hostTable() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: tableName}
}

// addHostRules queues the host table, shared by all slots; the caller flushes.
func addHostRules(conn *nftables.Conn, c Config) (*nftables.Set, error) {
	t := conn.AddTable(hostTable())
	in := conn.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	fwd := conn.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
	post := conn.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	c.addPolicyRules(conn, conn.AddChain(&nftables.Chain{Name: policyChain, Table: t}), tagHostDeny)
	// Host byte order is nft's own for strings; without it `nft list` shows "" elements.
	set := &nftables.Set{Table: t, Name: egressSet, KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian}
	if err := conn.AddSet(set, nil); err != nil {
		return nil, fmt.Errorf("set %s: %w", egressSet, err)
	}
	rule := func(ch *nftables.Chain, tag string, e ...[]expr.Any) {
		conn.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: cat(e...), UserData: comment(tag)})
	}
	v4, notV4 := isIPv4(expr.CmpOpEq), isIPv4(expr.CmpOpNeq)

	// input: a sandbox never opens a connection to any address of the host; replies to
	// connections the host opened (the agent talking to envd) still arrive.
	rule(in, c.fingerprint(), iifVeth(), ctEstablished(), []expr.Any{accept()})
	rule(in, tagHostInput, iifVeth(), counted(drop()))

	// forward: decided entirely here for anything touching a slot.
	rule(fwd, tagHostSibling, iifVeth(), oifVeth(), counted(drop()))
	rule(fwd, "wrenn: replies to sandbox egress", oifVeth(), ctEstablished(), []expr.Any{accept()})
	rule(fwd, tagHostInbound, oifVeth(), counted(drop()))
	rule(fwd, tagHostEgress, iifVeth(), notV4, counted(drop()))
	// Only the namespace's masqueraded address may leave, so a subverted namespace cannot
	// send with forged sources either.
	rule(fwd, tagHostEgress, iifVeth(), v4, matchIP(offSaddr, c.VethPrefix, expr.CmpOpNeq), counted(drop()))
	rule(fwd, "", iifVeth(), v4, []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: policyChain}})
	rule(fwd, "wrenn: sandbox egress allowed", []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: egressSet, SetID: set.ID},
	}, counted(accept()))
	rule(fwd, tagHostEgress, iifVeth(), counted(drop()))

	// postrouting: masquerade the veth range out of any non-slot interface (the uplink).
	// iifname is unknown in postrouting, hence the match on the source range.
	rule(post, "wrenn: sandbox egress masquerade", v4, matchIP(offSaddr, c.VethPrefix, expr.CmpOpEq), oifNotVeth(), []expr.Any{&expr.Masq{}})
	return set, nil
}

// ensureHost creates the host table unless it exists, and refuses a table built for
// other ranges. Callers create their namespace first: releaseHost deletes the table only
// when it sees no slot namespace, so either it sees ours or we re-create after it.
func ensureHost(c Config) error {
	return withHostLock(func() error {
		conn, err := nftables.New()
		if err != nil {
			return fmt.Errorf("nftables: %w", err)
		}
		if _, err := conn.ListTableOfFamily(tableName, nftables.TableFamilyINet); err == nil {
			got, err := hostFingerprint(conn)
			if err != nil {
				return err
			}
			switch {
			case got == c.fingerprint():
				return nil
			case rangesOf(got) != c.rangesFingerprint():
				return fmt.Errorf("host table inet %s was built for %q, this config is %q: another Wrenn with other ranges runs here, or delete the table", tableName, got, c.fingerprint())
			}
			return rebuildHost(conn, c)
		} else if !isNotExist(err) {
			return fmt.Errorf("look up host table: %w", err)
		}
		if _, err := addHostRules(conn, c); err != nil {
			return err
		}
		if err := conn.Flush(); err != nil {
			return fmt.Errorf("create host table inet %s: %w", tableName, err)
		}
		return nil
	})
}

// rangesOf cuts a fingerprint down to its ranges part (also one written before the
// egress policy was part of it).
func rangesOf(fingerprint string) string {
	f := strings.Fields(strings.TrimPrefix(fingerprint, fingerprintTag))
	var sandbox, veth string
	for _, kv := range f {
		if v, ok := strings.CutPrefix(kv, "sandbox="); ok {
			sandbox = v
		} else if v, ok := strings.CutPrefix(kv, "veth="); ok {
			veth = v
		}
	}
	return fingerprintTag + "sandbox=" + sandbox + " veth=" + veth
}

// rebuildHost replaces a host table built for the same ranges but another egress policy
// (the operator changed WRENN_EGRESS_ALLOW/DENY, or the table predates the policy) in
// one transaction, keeping which slots have internet and the forwarding guard: there
// is no moment without rules, and running sandboxes keep their access.
func rebuildHost(conn *nftables.Conn, c Config) error {
	open, err := conn.GetSetElements(&nftables.Set{Table: hostTable(), Name: egressSet, KeyType: nftables.TypeIFName})
	if err != nil {
		return fmt.Errorf("read host egress set: %w", err)
	}
	guard, err := hasGuard(conn)
	if err != nil {
		return err
	}
	conn.DelTable(hostTable())
	set, err := addHostRules(conn, c)
	if err != nil {
		return err
	}
	if guard {
		addGuard(conn, hostTable())
	}
	if len(open) > 0 {
		if err := conn.SetAddElements(set, open); err != nil {
			return fmt.Errorf("host egress set: %w", err)
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("rebuild host table inet %s for the egress policy: %w", tableName, err)
	}
	return nil
}

func hostFingerprint(conn *nftables.Conn) (string, error) {
	rules, err := conn.GetRules(hostTable(), &nftables.Chain{Name: "input", Table: hostTable()})
	if err != nil {
		return "", fmt.Errorf("read host table: %w", err)
	}
	for _, r := range rules {
		if s, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok && strings.HasPrefix(s, fingerprintTag) {
			return s, nil
		}
	}
	return "", fmt.Errorf("host table inet %s has no %q rule: not made by this package", tableName, fingerprintTag)
}

// releaseHost deletes the host table once no slot namespace is left, and turns host
// forwarding back off if Wrenn was the one that turned it on.
func releaseHost() error {
	return withHostLock(func() error {
		if left, err := anySlotNS(); err != nil || left {
			return err
		}
		conn, err := nftables.New()
		if err != nil {
			return fmt.Errorf("nftables: %w", err)
		}
		if _, err := conn.ListTableOfFamily(tableName, nftables.TableFamilyINet); isNotExist(err) {
			return nil
		} else if err != nil {
			return fmt.Errorf("look up host table: %w", err)
		}
		guard, err := hasGuard(conn)
		if err != nil {
			return err
		}
		conn.DelTable(hostTable())
		if err := conn.Flush(); err != nil && !isNotExist(err) {
			return fmt.Errorf("delete host table: %w", err)
		}
		if guard {
			if err := os.WriteFile(ipForwardPath, []byte("0"), 0o644); err != nil {
				return fmt.Errorf("restore ip_forward: %w", err)
			}
		}
		return nil
	})
}

func hasGuard(conn *nftables.Conn) (bool, error) {
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("list host chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table.Name == tableName && ch.Name == guardChain {
			return true, nil
		}
	}
	return false, nil
}

// addGuard queues the forwarding guard chain into host table t.
func addGuard(conn *nftables.Conn, t *nftables.Table) {
	prio := nftables.ChainPriorityRef(*nftables.ChainPriorityFilter + 10) // after "forward"
	ch := conn.AddChain(&nftables.Chain{Name: guardChain, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: prio})
	conn.FlushChain(ch)
	// Slot traffic was already judged by chain forward; let it pass here.
	conn.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: cat(iifVeth(), []expr.Any{accept()})})
	conn.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: cat(oifVeth(), []expr.Any{accept()})})
	conn.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: counted(drop()), UserData: comment(tagGuard)})
}

// enableForwarding turns on host forwarding, which internet egress needs. If it was off
// the host routed nothing, and it keeps routing nothing but sandbox traffic: the guard
// chain drops all other forwarding, and its existence records that Wrenn turned it on.
func enableForwarding() error {
	if on, err := forwardingOn(); err != nil || on {
		return err
	}
	return withHostLock(func() error {
		if on, err := forwardingOn(); err != nil || on {
			return err
		}
		conn, err := nftables.New()
		if err != nil {
			return fmt.Errorf("nftables: %w", err)
		}
		addGuard(conn, conn.AddTable(hostTable()))
		if err := conn.Flush(); err != nil {
			return fmt.Errorf("add forwarding guard: %w", err)
		}
		if err := os.WriteFile(ipForwardPath, []byte("1"), 0o644); err != nil {
			return fmt.Errorf("enable ip_forward: %w", err)
		}
		return nil
	})
}

func forwardingOn() (bool, error) {
	b, err := os.ReadFile(ipForwardPath)
	if err != nil {
		return false, fmt.Errorf("read ip_forward: %w", err)
	}
	return strings.TrimSpace(string(b)) != "0", nil
}

// setHostEgress adds or removes a slot's veth in the host's @egress set.
func setHostEgress(veth string, allow bool) error {
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	set := &nftables.Set{Table: hostTable(), Name: egressSet, KeyType: nftables.TypeIFName}
	el := []nftables.SetElement{{Key: ifname(veth)}}
	if allow {
		err = conn.SetAddElements(set, el)
	} else {
		err = conn.SetDeleteElements(set, el)
	}
	if err == nil {
		err = conn.Flush()
	}
	if err != nil && !(isNotExist(err) && !allow) {
		return fmt.Errorf("host egress set, %s allowed=%v: %w", veth, allow, err)
	}
	return nil
}

// setNSEgress switches the namespace's egress chain between empty (internet off: the
// forward chain's final drop applies) and a single accept.
func setNSEgress(ns netns.NsHandle, allow bool) error {
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: tableName}
	ch := &nftables.Chain{Name: egressChain, Table: t}
	conn.FlushChain(ch)
	if allow {
		addNSEgressAccept(conn, ch)
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("namespace egress allowed=%v: %w", allow, err)
	}
	return nil
}

func addNSEgressAccept(conn *nftables.Conn, ch *nftables.Chain) {
	conn.AddRule(&nftables.Rule{Table: ch.Table, Chain: ch, Exprs: counted(accept()), UserData: comment("wrenn: guest egress allowed")})
}

// nsEgressAllowed reads the switch back (for adopted slots).
func nsEgressAllowed(ns netns.NsHandle) (bool, error) {
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return false, fmt.Errorf("nftables: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: tableName}
	rules, err := conn.GetRules(t, &nftables.Chain{Name: egressChain, Table: t})
	if err != nil {
		return false, fmt.Errorf("read namespace egress chain: %w", err)
	}
	return len(rules) > 0, nil
}

// withHostLock runs fn holding an exclusive lock shared by every process using slots.
func withHostLock(fn func() error) error {
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("open %s: %w", lockPath, err)
	}
	defer f.Close() // releases the lock
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", lockPath, err)
	}
	return fn()
}

// anySlotNS reports whether any wrenn-ns-* namespace is mounted, reading the directory in
// small batches so the common case (one is) stops early.
func anySlotNS() (bool, error) {
	d, err := os.Open(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("open %s: %w", netnsDir, err)
	}
	defer d.Close()
	for {
		names, err := d.Readdirnames(64)
		for _, n := range names {
			if strings.HasPrefix(n, nsPrefix) {
				return true, nil
			}
		}
		if err == io.EOF {
			return false, nil
		} else if err != nil {
			return false, fmt.Errorf("read %s: %w", netnsDir, err)
		}
	}
}

func isNotExist(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, os.ErrNotExist)
}
