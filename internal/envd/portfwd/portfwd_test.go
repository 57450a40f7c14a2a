package portfwd

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// littleEndian reports whether the samples below (written as an x86 kernel prints
// them) apply to this machine.
func littleEndian() bool { return binary.NativeEndian.Uint16([]byte{1, 0}) == 1 }

const sampleTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 11111 1 0000000000000000 100 0 0 10 0
   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 22222 1 0000000000000000 100 0 0 10 0
   2: 0100007F:0BB8 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 33333 1 0000000000000000 20 4 30 10 -1
   3: 1500FEA9:C34F 0100FEA9:9C40 01 00000000:00000000 00:00000000 00000000     0        0 44444 1 0000000000000000 20 4 30 10 -1
   4: 0200007F:1388 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 55555 1 0000000000000000 100 0 0 10 0
`

const sampleTCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0FA0 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 66666 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000000000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 77777 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:2328 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 88888 1 0000000000000000 100 0 0 10 0
   3: 0000000000000000FFFF00000100007F:ABC5 0000000000000000FFFF00000100007F:C984 06 00000000:00000000 03:00000F13 00000000     0        0 0 3 0000000062220610
`

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestParseListeners(t *testing.T) {
	if !littleEndian() {
		t.Skip("samples are little-endian")
	}
	got, err := parseListeners(strings.NewReader(sampleTCP), false)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.AddrPort{ap("127.0.0.1:3000"), ap("0.0.0.0:8080"), ap("127.0.0.2:5000")}
	if !equal(got, want) {
		t.Fatalf("tcp listeners = %v, want %v", got, want)
	}

	got, err = parseListeners(strings.NewReader(sampleTCP6), true)
	if err != nil {
		t.Fatal(err)
	}
	want = []netip.AddrPort{ap("[::1]:4000"), ap("[::]:8081"), ap("127.0.0.1:9000")}
	if !equal(got, want) {
		t.Fatalf("tcp6 listeners = %v, want %v", got, want)
	}

	if _, err := parseListeners(strings.NewReader("   0: zz:0BB8 00000000:0000 0A\n"), false); err == nil {
		t.Fatal("bad address accepted")
	}
}

func equal(a, b []netip.AddrPort) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestPlan(t *testing.T) {
	ext := netip.MustParseAddr("169.254.0.21")
	ext2 := netip.MustParseAddr("10.0.0.5")
	listeners := []netip.AddrPort{
		ap("127.0.0.1:3000"),     // loopback only → forwarded
		ap("127.0.0.1:8080"),     // also on the wildcard → already reachable
		ap("0.0.0.0:8080"),       //
		ap("[::1]:4000"),         // IPv6 loopback only → forwarded to ::1
		ap("127.0.0.1:4001"),     // both loopbacks → target 127.0.0.1
		ap("[::1]:4001"),         //
		ap("127.0.0.1:4002"),     // IPv6 wildcard → reachable
		ap("[::]:4002"),          //
		ap("127.0.0.1:4003"),     // already on one external address → only the other
		ap("169.254.0.21:4003"),  //
		ap("127.0.0.2:5000"),     // other 127/8 address: not a loopback listener
		ap("127.0.0.1:49983"),    // excluded
		ap("127.0.0.1:6000"),     // excluded by Include
		ap("127.0.0.1:7000"),     // our own forwarder on ext:7000 is ignored
		ap("169.254.0.21:7000"),  //
		ap("169.254.0.21:7001"),  // our own forwarder, loopback listener gone → dropped
		ap("10.0.0.5:7001"),      //
		ap("169.254.0.21:22"),    // unrelated
		ap("127.0.0.53:53"),      // resolver stub: not 127.0.0.1
		ap("127.0.0.1:0"),        // nonsense, skipped
		ap("[::ffff:0.0.0.0]:1"), // harmless
	}
	own := map[netip.AddrPort]bool{
		ap("169.254.0.21:7000"): true,
		ap("169.254.0.21:7001"): true,
		ap("10.0.0.5:7001"):     true,
	}
	got := plan(listeners, []netip.Addr{ext, ext2},
		func(a netip.AddrPort) bool { return own[a] },
		map[uint16]bool{49983: true},
		func(p int) bool { return p != 6000 })
	want := map[netip.AddrPort]netip.AddrPort{
		ap("169.254.0.21:3000"): ap("127.0.0.1:3000"),
		ap("10.0.0.5:3000"):     ap("127.0.0.1:3000"),
		ap("169.254.0.21:4000"): ap("[::1]:4000"),
		ap("10.0.0.5:4000"):     ap("[::1]:4000"),
		ap("169.254.0.21:4001"): ap("127.0.0.1:4001"),
		ap("10.0.0.5:4001"):     ap("127.0.0.1:4001"),
		ap("10.0.0.5:4003"):     ap("127.0.0.1:4003"),
		ap("169.254.0.21:7000"): ap("127.0.0.1:7000"),
		ap("10.0.0.5:7000"):     ap("127.0.0.1:7000"),
	}
	if len(got) != len(want) {
		t.Errorf("plan = %v\nwant %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("plan[%v] = %v, want %v", k, got[k], v)
		}
	}
}

func TestDefaults(t *testing.T) {
	f := newForwarder(Config{})
	if f.cfg.Interval != time.Second || !f.exclude[49983] || len(f.exclude) != 1 ||
		f.cfg.ProcNetTCP != "/proc/net/tcp" || f.cfg.ProcNetTCP6 != "/proc/net/tcp6" {
		t.Fatalf("defaults: %+v exclude %v", f.cfg, f.exclude)
	}
	f = newForwarder(Config{ProcNetTCP: "x", Exclude: []int{}})
	if f.cfg.ProcNetTCP6 != "" || len(f.exclude) != 0 {
		t.Fatalf("explicit: %+v exclude %v", f.cfg, f.exclude)
	}
	addrs, err := ExternalIPv4()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if !a.Is4() || a.IsLoopback() {
			t.Errorf("ExternalIPv4 returned %v", a)
		}
	}
}

func TestRunBadTable(t *testing.T) {
	err := Run(context.Background(), Config{ProcNetTCP: filepath.Join(t.TempDir(), "missing")})
	if err == nil {
		t.Fatal("Run with a missing table succeeded")
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startRun runs the forwarder on the real socket tables, exposing port on 127.0.0.2
// (Linux routes all of 127/8 to lo), and stops it at the end of the test.
func startRun(t *testing.T, port int, exclude []int) {
	t.Helper()
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("no /proc/net/tcp")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			Interval: 20 * time.Millisecond,
			Exclude:  exclude,
			Log:      quietLog(),
			Addrs:    func() ([]netip.Addr, error) { return []netip.Addr{netip.MustParseAddr("127.0.0.2")}, nil },
			// The host is shared with other tests: forward only this test's port.
			Include: func(p int) bool { return p == port },
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

func listenLoopback(t *testing.T) (net.Listener, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln, ln.Addr().(*net.TCPAddr).Port
}

// waitDial dials addr until it connects or the deadline passes.
func waitDial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.(*net.TCPConn)
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitRefused waits until addr refuses connections.
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts connections", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serveUpper answers each connection, once the client has half-closed, with its input
// upper-cased, then closes. It reports each accepted connection on accepted, if set.
func serveUpper(ln net.Listener, accepted chan<- struct{}) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if accepted != nil {
			accepted <- struct{}{}
		}
		go func() {
			defer c.Close()
			b, err := io.ReadAll(c)
			if err != nil {
				return
			}
			c.Write([]byte(strings.ToUpper(string(b))))
		}()
	}
}

// exchange sends msg, half-closes, and returns everything the server sends back.
func exchange(t *testing.T, c *net.TCPConn, msg string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestForwardEndToEnd(t *testing.T) {
	ln, port := listenLoopback(t)
	defer ln.Close()
	accepted := make(chan struct{}, 10)
	go serveUpper(ln, accepted)
	startRun(t, port, nil)
	fwd := net.JoinHostPort("127.0.0.2", itoa(port))

	// Data flows both ways, the client's half-close reaches the server, and the reply
	// sent after it comes back.
	c := waitDial(t, fwd)
	if got := exchange(t, c, "hello through the forwarder"); got != "HELLO THROUGH THE FORWARDER" {
		t.Fatalf("reply %q", got)
	}
	c.Close()

	// A larger payload, to exercise the copy loop beyond one buffer.
	big := strings.Repeat("abcdefghij", 100_000)
	c = waitDial(t, fwd)
	if got := exchange(t, c, big); got != strings.ToUpper(big) {
		t.Fatalf("big reply: %d bytes", len(got))
	}
	c.Close()

	// A connection opened before the loopback listener closes may finish afterwards.
	held := waitDial(t, fwd)
	defer held.Close()
	if _, err := held.Write([]byte("still ")); err != nil {
		t.Fatal(err)
	}
	for range 3 { // wait until the relay has reached the server
		select {
		case <-accepted:
		case <-time.After(5 * time.Second):
			t.Fatal("relay never reached the server")
		}
	}
	ln.Close()
	waitRefused(t, fwd)
	if got := exchange(t, held, "here"); got != "STILL HERE" {
		t.Fatalf("held connection reply %q", got)
	}

	// The forwarder has let go of its address, so a service can bind it (binding
	// 0.0.0.0 here instead would race other tests on the host).
	ln2, err := net.Listen("tcp", fwd)
	if err != nil {
		t.Fatalf("forwarder still holds %s: %v", fwd, err)
	}
	ln2.Close()
}

// The server's half-close (it writes first and closes its write side) reaches the
// client, which can still send afterwards.
func TestForwardServerHalfClose(t *testing.T) {
	ln, port := listenLoopback(t)
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte("banner"))
		c.(*net.TCPConn).CloseWrite()
		b, _ := io.ReadAll(c)
		got <- string(b)
	}()
	startRun(t, port, nil)
	c := waitDial(t, net.JoinHostPort("127.0.0.2", itoa(port)))
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c) // ends at the server's half-close
	if err != nil || string(b) != "banner" {
		t.Fatalf("read %q, %v", b, err)
	}
	if _, err := c.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	select {
	case s := <-got:
		if s != "after" {
			t.Fatalf("server got %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server did not see the client's data and half-close")
	}
}

func TestForwardExcluded(t *testing.T) {
	ln, port := listenLoopback(t)
	defer ln.Close()
	go serveUpper(ln, nil)
	startRun(t, port, []int{port})
	time.Sleep(200 * time.Millisecond) // ten scans
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.2", itoa(port)), time.Second)
	if err == nil {
		c.Close()
		t.Fatal("excluded port was forwarded")
	}
}

// Cancelling Run closes the forwarder's listener and the connections it relays.
func TestRunStopsOnCancel(t *testing.T) {
	ln, port := listenLoopback(t)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			Interval: 20 * time.Millisecond,
			Log:      quietLog(),
			Addrs:    func() ([]netip.Addr, error) { return []netip.Addr{netip.MustParseAddr("127.0.0.2")}, nil },
			Include:  func(p int) bool { return p == port },
		})
	}()
	fwd := net.JoinHostPort("127.0.0.2", itoa(port))
	c := waitDial(t, fwd)
	defer c.Close()
	var srv net.Conn
	select {
	case srv = <-accepted:
		defer srv.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("relay never reached the server")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil && !isReset(err) {
		t.Fatalf("relayed connection not closed: %v", err)
	}
	waitRefused(t, fwd)
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "broken pipe"))
}

func itoa(n int) string { return strconv.Itoa(n) }

// A service on [::1] only is forwarded too (from the IPv4 external address).
func TestForwardIPv6Loopback(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	defer ln.Close()
	go serveUpper(ln, nil)
	port := ln.Addr().(*net.TCPAddr).Port
	startRun(t, port, nil)
	c := waitDial(t, net.JoinHostPort("127.0.0.2", itoa(port)))
	defer c.Close()
	if got := exchange(t, c, "six"); got != "SIX" {
		t.Fatalf("reply %q", got)
	}
}
