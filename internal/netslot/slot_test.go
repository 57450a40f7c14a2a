package netslot

import (
	"bytes"
	"net/netip"
	"os"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func TestAddrs(t *testing.T) {
	c := DefaultConfig()
	a, err := c.Addrs(1)
	if err != nil {
		t.Fatal(err)
	}
	if a.HostIP.String() != "10.11.0.1" || a.VethHostA.String() != "10.12.0.2" || a.VethNSA.String() != "10.12.0.3" || a.NetNS != "wrenn-ns-1" || a.VethHost != "wrenn-vh1" {
		t.Errorf("slot 1: %+v", a)
	}
	a, err = c.Addrs(MaxIndex)
	if err != nil {
		t.Fatal(err)
	}
	if a.HostIP.String() != "10.11.255.254" || a.VethNSA.String() != "10.13.255.253" || len(a.VethHost) > 15 {
		t.Errorf("last slot: %+v", a)
	}
	for _, bad := range []int{0, -1, MaxIndex + 1} {
		if _, err := c.Addrs(bad); err == nil {
			t.Errorf("index %d accepted", bad)
		}
	}
	small := Config{SandboxPrefix: netip.MustParsePrefix("10.99.0.0/24"), VethPrefix: netip.MustParsePrefix("10.98.0.0/24")}
	if _, err := small.Addrs(300); err == nil {
		t.Error("index beyond a small range accepted")
	}
}

func requireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating network namespaces needs root (CI runs as root)")
	}
}

func TestCreateDestroy(t *testing.T) {
	requireRoot(t)
	c := DefaultConfig()
	const idx = 64999 // far from slots a running agent would use
	s, err := c.Create(idx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Destroy() })

	// A second create of the same slot fails and leaves the first intact.
	if _, err := c.Create(idx); err == nil {
		t.Fatal("slot created twice")
	}

	ns, err := netns.GetFromName(s.NetNS)
	if err != nil {
		t.Fatalf("namespace %s: %v", s.NetNS, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	tap, err := h.LinkByName(TapName)
	if err != nil {
		t.Fatalf("tap: %v", err)
	}
	if !bytes.Equal(tap.Attrs().HardwareAddr, TapMAC) {
		t.Errorf("tap MAC %v, want %v", tap.Attrs().HardwareAddr, TapMAC)
	}
	addrs, _ := h.AddrList(tap, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != TapIP.String() {
		t.Errorf("tap addresses %v", addrs)
	}
	if _, err := h.LinkByName(vethInNS); err != nil {
		t.Errorf("veth in namespace: %v", err)
	}
	host, err := netlink.LinkByName(s.VethHost)
	if err != nil {
		t.Fatalf("host veth: %v", err)
	}
	routes, _ := netlink.RouteList(host, netlink.FAMILY_V4)
	found := false
	for _, r := range routes {
		if r.Dst != nil && r.Dst.String() == s.HostIP.String()+"/32" {
			found = true
		}
	}
	if !found {
		t.Errorf("no route to %s via %s: %v", s.HostIP, s.VethHost, routes)
	}
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	tables, err := conn.ListTables()
	if err != nil || len(tables) != 1 || tables[0].Name != "wrenn" {
		t.Errorf("nft tables in the namespace: %v %v", tables, err)
	}

	if err := s.Destroy(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.NetNSPath()); !os.IsNotExist(err) {
		t.Errorf("namespace mount remains: %v", err)
	}
	if _, err := netlink.LinkByName(s.VethHost); err == nil {
		t.Error("host veth remains")
	}
	if err := s.Destroy(); err != nil {
		t.Errorf("second destroy: %v", err)
	}
}
