// Package portfwd forwards guest-loopback-only TCP listeners to the external interfaces.
//
// A service inside a sandbox that listens on 127.0.0.1:P (or [::1]:P) only is not
// reachable from outside the VM. Run polls the kernel's socket tables (/proc/net/tcp and
// /proc/net/tcp6) and, for every such port, listens on EXTERNAL:P for each external
// address of the guest and relays every accepted connection to the loopback listener —
// what E2B's envd does with socat, done here in Go.
//
// Which ports are forwarded: a port P is forwarded when something listens on exactly
// 127.0.0.1:P or [::1]:P (also ::ffff:127.0.0.1), nothing listens on a wildcard address
// (0.0.0.0:P or [::]:P: such a service is already reachable), and P is not excluded
// (envd's own port). For each external address A, EXTERNAL:P is opened only if nothing
// else already listens on A:P. Listeners on other 127/8 addresses are neither loopback
// listeners nor forwarded, and the forwarder's own listeners (on the external addresses)
// are recognised by address and never taken for anything else, so a forwarder never
// keeps itself alive. Connections are relayed to 127.0.0.1:P, or to [::1]:P when only
// ::1 is listened on; each direction is copied until EOF and then half-closed
// (CloseWrite), so protocols that rely on half-close work.
//
// When the loopback listener goes away, the forwarder's listener is closed on the next
// poll; connections already relayed continue until either side ends them. When Run
// returns, every listener and relayed connection is closed.
//
// Limitation: while a forwarder holds EXTERNAL:P, a later bind of 0.0.0.0:P (or
// EXTERNAL:P) by a user's service fails with EADDRINUSE. Linux lets such a bind coexist
// with a listening socket on a specific address only if both sockets set SO_REUSEPORT
// (same user), which the user's service normally does not; SO_REUSEADDR does not help
// for listening sockets. The forwarder cannot step aside in advance because it cannot
// see a bind that has not happened yet. The window is kept small instead: only ports
// whose listeners are loopback-only are forwarded (a service that binds the wildcard
// address from the start never collides), and a forwarder is dropped within one poll
// interval of its loopback listener closing, so a service restarted on 0.0.0.0:P after
// its 127.0.0.1:P incarnation exits only collides if it binds within that interval. A
// service that listens on 127.0.0.1:P and then, separately, on EXTERNAL:P or 0.0.0.0:P
// may lose that race. E2B's socat-based forwarding has the same property.
package portfwd

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultExclude is the port excluded when Config.Exclude is nil: envd's own.
const DefaultExclude = 49983

// Config says how Run forwards.
type Config struct {
	// Interval between scans of the socket tables; 0 means one second.
	Interval time.Duration
	// Exclude lists ports never forwarded; nil means {49983} (envd's port).
	Exclude []int
	// Log receives forwarder starts, stops and failures; nil means slog.Default().
	Log *slog.Logger
	// ProcNetTCP is the IPv4 socket table; empty means /proc/net/tcp.
	ProcNetTCP string
	// ProcNetTCP6 is the IPv6 socket table. Empty means /proc/net/tcp6 when ProcNetTCP is
	// empty too, and no IPv6 table when ProcNetTCP is set (tests giving one table). A
	// missing table (IPv6 disabled) is treated as empty.
	ProcNetTCP6 string
	// Addrs returns the external addresses to listen on; it is called on every scan, so
	// addresses that appear or disappear are followed. nil means the IPv4 addresses of
	// the up, non-loopback interfaces. 127.0.0.1, ::1, unspecified addresses and
	// addresses with a zone (IPv6 link-local) are ignored.
	Addrs func() ([]netip.Addr, error)
	// Include, when set, restricts forwarding to the ports it accepts (tests use it to
	// keep to their own port on a shared host); nil means every port.
	Include func(port int) bool
	// DialTimeout bounds each dial to the loopback listener; 0 means five seconds.
	DialTimeout time.Duration
}

// Run forwards until ctx ends, then closes every forwarder listener and relayed
// connection and returns nil. It returns an error early only if the IPv4 socket table
// cannot be read on the first scan (for instance, not on Linux).
func Run(ctx context.Context, cfg Config) error {
	f := newForwarder(cfg)
	if _, err := f.readListeners(); err != nil {
		return err
	}
	defer f.shutdown()
	t := time.NewTicker(f.cfg.Interval)
	defer t.Stop()
	for {
		f.scan()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

type forwarder struct {
	cfg     Config
	log     *slog.Logger
	exclude map[uint16]bool

	// Owned by the scanning goroutine.
	active  map[netip.AddrPort]*fwdListener // bind address → its listener
	failed  map[netip.AddrPort]string       // bind address → last bind error logged
	addrErr string                          // last Addrs error logged
	tblErr  string                          // last table read error logged

	wg    sync.WaitGroup // accept loops and relays
	mu    sync.Mutex
	conns map[net.Conn]struct{} // every open relayed connection (both sides)
	done  bool                  // set by shutdown: no new relays
}

type fwdListener struct {
	ln     net.Listener
	target netip.AddrPort
}

func newForwarder(cfg Config) *forwarder {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Exclude == nil {
		cfg.Exclude = []int{DefaultExclude}
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.ProcNetTCP == "" {
		cfg.ProcNetTCP = "/proc/net/tcp"
		if cfg.ProcNetTCP6 == "" {
			cfg.ProcNetTCP6 = "/proc/net/tcp6"
		}
	}
	if cfg.Addrs == nil {
		cfg.Addrs = ExternalIPv4
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	ex := make(map[uint16]bool, len(cfg.Exclude))
	for _, p := range cfg.Exclude {
		if p > 0 && p < 1<<16 {
			ex[uint16(p)] = true
		}
	}
	return &forwarder{
		cfg:     cfg,
		log:     cfg.Log.With("component", "portfwd"),
		exclude: ex,
		active:  map[netip.AddrPort]*fwdListener{},
		failed:  map[netip.AddrPort]string{},
		conns:   map[net.Conn]struct{}{},
	}
}

// ExternalIPv4 returns the IPv4 addresses of the interfaces that are up and not
// loopback (in a Wrenn guest, eth0's 169.254.0.21).
func ExternalIPv4() ([]netip.Addr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			if ip.Is4() && !ip.IsLoopback() && !ip.IsUnspecified() {
				out = append(out, ip)
			}
		}
	}
	return out, nil
}

// readListeners returns the local addresses of the LISTEN sockets in both tables.
func (f *forwarder) readListeners() ([]netip.AddrPort, error) {
	ls, err := readTable(f.cfg.ProcNetTCP, false)
	if err != nil {
		return nil, err
	}
	if f.cfg.ProcNetTCP6 != "" {
		ls6, err := readTable(f.cfg.ProcNetTCP6, true)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		ls = append(ls, ls6...)
	}
	return ls, nil
}

func readTable(path string, v6 bool) ([]netip.AddrPort, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	ls, err := parseListeners(fh, v6)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ls, nil
}

// tcpListen is the st column of a LISTEN socket (TCP_LISTEN) in /proc/net/tcp{,6}.
const tcpListen = "0A"

// parseListeners reads a /proc/net/tcp or /proc/net/tcp6 table and returns the local
// addresses of its LISTEN sockets, IPv4-mapped IPv6 addresses unmapped. Each line is
// "sl local_address rem_address st ...", where local_address is ADDR:PORT in hex: PORT is
// the port number, ADDR is the address bytes in network order printed as one (IPv4) or
// four (IPv6) native-endian 32-bit words.
func parseListeners(r io.Reader, v6 bool) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	first := true
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if first {
			first = false
			if len(fields) > 0 && fields[0] == "sl" {
				continue // header
			}
		}
		if len(fields) < 4 || fields[3] != tcpListen {
			continue
		}
		ap, err := parseHexAddrPort(fields[1], v6)
		if err != nil {
			return nil, err
		}
		out = append(out, ap)
	}
	return out, sc.Err()
}

func parseHexAddrPort(s string, v6 bool) (netip.AddrPort, error) {
	host, port, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("bad local address %q", s)
	}
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q", s)
	}
	n := 4
	if v6 {
		n = 16
	}
	raw, err := hex.DecodeString(host)
	if err != nil || len(raw) != n {
		return netip.AddrPort{}, fmt.Errorf("bad address in %q", s)
	}
	// raw holds each 32-bit word as printed (most significant byte first); write each
	// word back in native order to get the bytes as they were in memory.
	var b [16]byte
	for i := 0; i < n; i += 4 {
		binary.NativeEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	var a netip.Addr
	if v6 {
		a = netip.AddrFrom16(b).Unmap()
	} else {
		a = netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

var (
	loop4 = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	loop6 = netip.IPv6Loopback()
)

// plan decides which forwarders should exist: bind address → loopback target. own holds
// the bind addresses of the forwarder's current listeners, which are ignored in the
// tables.
func plan(listeners []netip.AddrPort, ext []netip.Addr, own func(netip.AddrPort) bool,
	exclude map[uint16]bool, include func(int) bool) map[netip.AddrPort]netip.AddrPort {
	type portInfo struct {
		loop4, loop6, wildcard bool
		bound                  map[netip.Addr]bool
	}
	ports := map[uint16]*portInfo{}
	for _, l := range listeners {
		if own(l) {
			continue
		}
		pi := ports[l.Port()]
		if pi == nil {
			pi = &portInfo{bound: map[netip.Addr]bool{}}
			ports[l.Port()] = pi
		}
		switch a := l.Addr(); {
		case a == loop4:
			pi.loop4 = true
		case a == loop6:
			pi.loop6 = true
		case a.IsUnspecified():
			pi.wildcard = true
		default:
			pi.bound[a] = true
		}
	}
	want := map[netip.AddrPort]netip.AddrPort{}
	for port, pi := range ports {
		if !(pi.loop4 || pi.loop6) || pi.wildcard || port == 0 || exclude[port] {
			continue
		}
		if include != nil && !include(int(port)) {
			continue
		}
		target := netip.AddrPortFrom(loop4, port)
		if !pi.loop4 {
			target = netip.AddrPortFrom(loop6, port)
		}
		for _, a := range ext {
			if !pi.bound[a] {
				want[netip.AddrPortFrom(a, port)] = target
			}
		}
	}
	return want
}

// externalAddrs calls Addrs and drops what must never be bound.
func (f *forwarder) externalAddrs() []netip.Addr {
	addrs, err := f.cfg.Addrs()
	if err != nil {
		if msg := err.Error(); msg != f.addrErr {
			f.addrErr = msg
			f.log.Warn("port forwarding: listing external addresses", "err", err)
		}
		return nil
	}
	f.addrErr = ""
	var out []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if !a.IsValid() || a.Zone() != "" || a.IsUnspecified() || a == loop4 || a == loop6 || slices.Contains(out, a) {
			continue
		}
		out = append(out, a)
	}
	return out
}

// scan brings the forwarders in line with the socket tables.
func (f *forwarder) scan() {
	ls, err := f.readListeners()
	if err != nil {
		// Keep the current forwarders: a transient read error must not cut services off.
		if msg := err.Error(); msg != f.tblErr {
			f.tblErr = msg
			f.log.Warn("port forwarding: reading socket table", "err", err)
		}
		return
	}
	f.tblErr = ""
	ext := f.externalAddrs()
	own := func(ap netip.AddrPort) bool { _, ok := f.active[ap]; return ok }
	want := plan(ls, ext, own, f.exclude, f.cfg.Include)

	for bind, fl := range f.active {
		if target, ok := want[bind]; !ok || target != fl.target {
			fl.ln.Close()
			delete(f.active, bind)
			f.log.Info("port forwarding stopped", "listen", bind.String(), "target", fl.target.String())
		}
	}
	for bind := range f.failed {
		if _, ok := want[bind]; !ok {
			delete(f.failed, bind)
		}
	}
	for bind, target := range want {
		if _, ok := f.active[bind]; ok {
			continue
		}
		ln, err := net.Listen("tcp", bind.String())
		if err != nil {
			// Retried on every scan; logged once per distinct error.
			if msg := err.Error(); f.failed[bind] != msg {
				f.failed[bind] = msg
				f.log.Warn("port forwarding: listen failed", "listen", bind.String(), "target", target.String(), "err", err)
			}
			continue
		}
		delete(f.failed, bind)
		fl := &fwdListener{ln: ln, target: target}
		f.active[bind] = fl
		f.log.Info("port forwarding started", "listen", bind.String(), "target", target.String())
		f.wg.Add(1)
		go f.acceptLoop(fl)
	}
}

func (f *forwarder) acceptLoop(fl *fwdListener) {
	defer f.wg.Done()
	var delay time.Duration
	for {
		c, err := fl.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary trouble (EMFILE, …): back off rather than spin.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			f.log.Debug("port forwarding: accept", "listen", fl.ln.Addr().String(), "err", err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if !f.track(c) {
			c.Close()
			return
		}
		f.wg.Add(1)
		go f.relay(c, fl.target)
	}
}

// track registers an open connection so shutdown can close it; false after shutdown.
func (f *forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *forwarder) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	c.Close()
}

// relay connects the accepted connection to the loopback target and copies both ways.
func (f *forwarder) relay(in net.Conn, target netip.AddrPort) {
	defer f.wg.Done()
	defer f.untrack(in)
	out, err := net.DialTimeout("tcp", target.String(), f.cfg.DialTimeout)
	if err != nil {
		f.log.Debug("port forwarding: dial", "target", target.String(), "err", err)
		return
	}
	if !f.track(out) {
		out.Close()
		return
	}
	defer f.untrack(out)
	pipe(in, out)
}

// pipe copies a→b and b→a. A direction that reaches EOF half-closes its destination and
// the other direction carries on; an error in either direction closes both connections.
func pipe(a, b net.Conn) {
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		if _, err := io.Copy(dst, src); err != nil {
			a.Close()
			b.Close()
			return
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	wg.Add(2)
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
}

// shutdown closes every listener and connection and waits for their goroutines.
func (f *forwarder) shutdown() {
	for bind, fl := range f.active {
		fl.ln.Close()
		delete(f.active, bind)
	}
	f.mu.Lock()
	f.done = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}
