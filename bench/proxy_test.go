package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/hostproto"
	"github.com/wrennhq/wrenn/internal/image"
	"github.com/wrennhq/wrenn/internal/netslot"
	"github.com/wrennhq/wrenn/internal/pgtest"
	"github.com/wrennhq/wrenn/internal/redistest"
	"github.com/wrennhq/wrenn/internal/server/servertest"
	"github.com/wrennhq/wrenn/pkg/client"
)

// Targets of the port proxy (the issue's): proxied throughput at least this share of
// direct, and at most this much added to the median request.
const (
	proxyThroughputTarget = 0.9
	proxyAddedP50Target   = 2 * time.Millisecond
)

// Sizes of the port proxy benchmark.
const (
	proxySmallBody   = 64
	proxyHostBigMiB  = 256 // /big of the host-side upstream
	proxyGuestBigMiB = 64  // /big of the guest's server (TCG guests are slow)
	proxyHostReqs    = 2000
	proxyGuestReqs   = 500
	proxyRuns        = 3 // big downloads per path; the median counts
)

// BenchmarkPortProxy measures the sandbox port proxy ({port}-{id}.{domain} → control
// plane → agent → guest port) against reaching the same server directly: the added
// median latency of a small request and the share of direct throughput a large
// download keeps, and the CPU time each party spends. "host" serves from this host, at
// a sandbox's guest address (so the server is never the bottleneck), through an
// in-process control plane and the real agent (servertest's, whose sandboxes are envd
// processes on loopback addresses), also through the agent proxy alone; "guest" serves
// from a real sandbox through `wrenn server` and a registered `wrenn agent` (pinned
// TLS between them, as deployed).
func BenchmarkPortProxy(b *testing.B) {
	b.Run("host", benchProxyHost)
	b.Run("guest", benchProxyGuest)
}

// proxyHTTPClient is a benchmark client: kept-alive connections, bodies as they come.
func proxyHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns: 16, MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second, DisableCompression: true,
	}}
}

// proxyTarget is one way to reach an upstream: a URL base and the Host to send.
type proxyTarget struct {
	name string
	base string // http://host:port
	host string // "" = the URL's
	hdr  http.Header
	hc   *http.Client
}

// get fetches path and reads the body; a status other than 200 or a body of another
// length than want fails the benchmark.
func (p proxyTarget) get(b *testing.B, path string, want int64) {
	req, err := http.NewRequest("GET", p.base+path, nil)
	if err != nil {
		b.Fatal(err)
	}
	if p.host != "" {
		req.Host = p.host
	}
	for k, v := range p.hdr {
		req.Header[k] = v
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		b.Fatalf("%s GET %s: %v", p.name, path, err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || err != nil || n != want {
		b.Fatalf("%s GET %s: status %d, %d bytes (want %d), %v", p.name, path, resp.StatusCode, n, want, err)
	}
}

// proxyFigures are one path's measurements.
type proxyFigures struct {
	p50, p99 time.Duration
	mbps     float64 // median of the big downloads
	// CPU time each party used, per small request and per GB of the big downloads
	// (means over all of them), in the order of measureProxy's parties.
	cpuPerReq []time.Duration
	cpuPerGB  []float64
}

// proxyParty is a process (or set of processes) whose CPU time is accounted.
type proxyParty struct {
	name string
	cpu  func() time.Duration // cumulative
}

// measureProxy times reqs sequential small requests on each target, interleaved so
// drift hits all alike, then proxyRuns big downloads each (interleaved too), and
// accounts the CPU time each party spent on each (sampled outside the timed region).
func measureProxy(b *testing.B, targets []proxyTarget, parties []proxyParty, reqs int, bigBytes int64) []proxyFigures {
	for _, t := range targets { // warm up: connections, caches, the proxies' pools
		for range 50 {
			t.get(b, "/small", proxySmallBody)
		}
	}
	// Before a request parties are read last to first, after it first to last, so the
	// sampling's own cost (reading /proc) is not charged to the first (this process).
	sample := func(before bool) []time.Duration {
		v := make([]time.Duration, len(parties))
		for k := range parties {
			i := k
			if before {
				i = len(parties) - 1 - k
			}
			v[i] = parties[i].cpu()
		}
		return v
	}
	out := make([]proxyFigures, len(targets))
	for i := range out {
		out[i].cpuPerReq, out[i].cpuPerGB = make([]time.Duration, len(parties)), make([]float64, len(parties))
	}
	account := func(before []time.Duration, into func(j int, d time.Duration)) {
		after := sample(false)
		for j := range parties {
			into(j, after[j]-before[j])
		}
	}
	lat := make([][]time.Duration, len(targets))
	for range reqs {
		for i, t := range targets {
			before := sample(true)
			start := time.Now()
			t.get(b, "/small", proxySmallBody)
			lat[i] = append(lat[i], time.Since(start))
			account(before, func(j int, d time.Duration) { out[i].cpuPerReq[j] += d / time.Duration(reqs) })
		}
	}
	tput := make([][]float64, len(targets))
	for range proxyRuns {
		for i, t := range targets {
			before := sample(true)
			d := timeIt(func() { t.get(b, "/big", bigBytes) })
			tput[i] = append(tput[i], float64(bigBytes)/d.Seconds()/1e6)
			account(before, func(j int, d time.Duration) {
				out[i].cpuPerGB[j] += d.Seconds() / (float64(bigBytes) / 1e9) / proxyRuns
			})
		}
	}
	for i := range targets {
		sort.Slice(lat[i], func(a, c int) bool { return lat[i][a] < lat[i][c] })
		sort.Float64s(tput[i])
		out[i].p50, out[i].p99, out[i].mbps = lat[i][len(lat[i])/2], lat[i][len(lat[i])*99/100], tput[i][len(tput[i])/2]
	}
	return out
}

// selfCPU is the CPU time (user + system) this process used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the CPU time process pid's threads ran so far (the sum of their
// schedstat run times: nanoseconds, unlike /proc/PID/stat's clock ticks).
func procCPU(pid int) func() time.Duration {
	return func() time.Duration {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
		var total time.Duration
		for _, t := range tasks {
			raw, err := os.ReadFile(t)
			if err != nil {
				continue // the thread ended
			}
			if f := strings.Fields(string(raw)); len(f) > 0 {
				ns, _ := strconv.ParseInt(f[0], 10, 64)
				total += time.Duration(ns)
			}
		}
		return total
	}
}

// reportProxy prints each path against the first (direct), where the CPU time went,
// and whether the proxied path (the last) meets the targets.
func reportProxy(b *testing.B, label string, targets []proxyTarget, parties []proxyParty, f []proxyFigures, reqs int, bigMiB int) {
	direct, proxied := f[0], f[len(f)-1]
	b.Logf("%s — %d sequential GET /small (%d B) each, kept-alive; median of %d GET /big (%d MiB):", label, reqs, proxySmallBody, proxyRuns, bigMiB)
	for i, t := range targets {
		var perReq, perGB []string
		for j, p := range parties {
			perReq = append(perReq, fmt.Sprintf("%s %v", p.name, f[i].cpuPerReq[j].Round(time.Microsecond)))
			perGB = append(perGB, fmt.Sprintf("%s %.2f s", p.name, f[i].cpuPerGB[j]))
		}
		b.Logf("  %-46s p50 %8v  p99 %8v  (+%v p50)  %7.1f MB/s (%.2f of direct); CPU per request: %s; per GB: %s",
			t.name, f[i].p50.Round(time.Microsecond), f[i].p99.Round(time.Microsecond),
			(f[i].p50 - direct.p50).Round(time.Microsecond), f[i].mbps, f[i].mbps/direct.mbps,
			strings.Join(perReq, ", "), strings.Join(perGB, ", "))
	}
	added, ratio := proxied.p50-direct.p50, proxied.mbps/direct.mbps
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	b.Logf("  targets: throughput ≥ %.1f of direct: %.2f — %s; added p50 ≤ %v: %v — %s",
		proxyThroughputTarget, ratio, verdict(ratio >= proxyThroughputTarget),
		proxyAddedP50Target, added.Round(time.Microsecond), verdict(added <= proxyAddedP50Target))
	b.ReportMetric(float64(added.Microseconds())/1000, "added-p50-ms")
	b.ReportMetric(float64((proxied.p99-direct.p99).Microseconds())/1000, "added-p99-ms")
	b.ReportMetric(ratio, "x-direct-throughput")
	b.ReportMetric(proxied.mbps, "proxied-MB/s")
}

// proxyUpstream serves /small (64 bytes) and /big (size bytes of zeros) on ln and
// counts the connections it accepts.
func proxyUpstream(b *testing.B, ln net.Listener, size int64, conns *atomic.Int64) {
	small := strings.Repeat("s", proxySmallBody)
	zeros := make([]byte, 256<<10)
	mux := http.NewServeMux()
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(small)))
		io.WriteString(w, small)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		for left := size; left > 0; {
			n := min(left, int64(len(zeros)))
			if _, err := w.Write(zeros[:n]); err != nil {
				return
			}
			left -= n
		}
	})
	srv := &http.Server{Handler: mux, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
}

// benchProxyHost: an upstream on the host, at a sandbox's guest address (the slot's
// loopback address, as the real agent of servertest sees it), reached directly,
// through the agent's proxy alone, and through control plane + agent (servertest:
// in-process, plain HTTP between them).
func benchProxyHost(b *testing.B) {
	env := servertest.New(b)
	ctx := context.Background()
	sb, err := env.NewTeam(b, "proxy-bench@example.com").Client.CreateSandbox(ctx, client.CreateSandboxRequest{})
	if err != nil {
		b.Fatal(err)
	}
	info, err := env.Agent.Manager.Get(sb.ID)
	if err != nil {
		b.Fatal(err)
	}
	upAddr := info.HostIP
	ln, err := net.Listen("tcp", netip.AddrPortFrom(upAddr, 0).String())
	if err != nil {
		b.Fatalf("listen at the guest address %s: %v", upAddr, err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	bigBytes := int64(proxyHostBigMiB) << 20
	var conns atomic.Int64
	proxyUpstream(b, ln, bigBytes, &conns)

	host := fmt.Sprintf("%d-%s.%s", port, sb.ID, servertest.Domain)
	agentHdr := http.Header{hostproto.ProxyAuthHeader: {env.Agent.Secret}}
	targets := []proxyTarget{
		{name: "direct (client → upstream)", base: "http://" + netip.AddrPortFrom(upAddr, uint16(port)).String(), hc: proxyHTTPClient()},
		{name: "agent proxy only (→ agent → upstream)", base: fmt.Sprintf("%s%s%s/%d", env.Agent.URL, hostproto.ProxyPrefix, sb.ID, port), host: host, hdr: agentHdr, hc: proxyHTTPClient()},
		{name: "proxied (→ control plane → agent → upstream)", base: env.URL, host: host, hc: proxyHTTPClient()},
	}
	parties := []proxyParty{{"this process", selfCPU}} // all but PostgreSQL
	f := measureProxy(b, targets, parties, proxyHostReqs, bigBytes)
	reportProxy(b, fmt.Sprintf("upstream at the sandbox's guest address %s (loopback); control plane and agent in this process, plain HTTP between them, %d CPUs shared by all",
		upAddr, runtime.NumCPU()), targets, parties, f, proxyHostReqs, proxyHostBigMiB)
	b.Logf("  the upstream accepted %d connections in all (%d targets: the proxies pool theirs)", conns.Load(), len(targets))
}

// proxyGuestPy is the guest's server: /small and /big on 0.0.0.0:8080, kept-alive; it
// appends a byte to /tmp/bench_conns per connection accepted.
const proxyGuestPy = `import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SMALL = b"s" * 64
BIG = int(sys.argv[1]) << 20
CHUNK = bytes(1 << 20)

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def setup(self):  # one handler per connection: count them
        super().setup()
        with open("/tmp/bench_conns", "a") as f:
            f.write("c")

    def do_GET(self):
        if self.path == "/small":
            n = len(SMALL)
        elif self.path == "/big":
            n = BIG
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(n))
        self.end_headers()
        if n == len(SMALL):
            self.wfile.write(SMALL)
        else:
            for _ in range(n >> 20):
                self.wfile.write(CHUNK)

    def log_message(self, *a):
        pass

srv = ThreadingHTTPServer(("0.0.0.0", 8080), H)
srv.daemon_threads = True
srv.serve_forever()
`

// proxyGuestFirstSlot is the first of the benchmark agent's network slots (far from
// the tests' ranges).
const proxyGuestFirstSlot = 64800

// benchProxyGuest: a server in a real sandbox, reached directly at the sandbox's host
// IP and through `wrenn server` + a registered `wrenn agent`.
func benchProxyGuest(b *testing.B) {
	dir := vmBenchDir(b)
	if _, err := image.Load(dir, "base"); err != nil {
		b.Skipf("no base template in %s (make test-vm builds it): %v", dir, err)
	}
	for _, tool := range []string{"go", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s is not installed", tool)
		}
	}
	start := time.Now()
	bin := proxyBuildWrenn(b)
	cp := proxyStartServer(b, bin, "")
	agent := proxyStartAgent(b, bin, cp, dir)
	agentDir := agent.dir
	ctx := context.Background()
	sess, err := client.New(cp.base).Signup(ctx, "guest-bench@example.com", "", "correct horse battery staple")
	if err != nil {
		b.Fatal(err)
	}
	key, err := client.New(cp.base, client.WithToken(sess.Token)).CreateAPIKey(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	api := client.New(cp.base, client.WithAPIKey(key.Key))
	sb, err := api.CreateSandbox(ctx, client.CreateSandboxRequest{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := api.DestroySandbox(context.Background(), sb.ID); err != nil {
			b.Errorf("destroy %s: %v", sb.ID, err)
		}
	})
	if err := api.WriteFile(ctx, sb.ID, "/tmp/bench_server.py", strings.NewReader(proxyGuestPy)); err != nil {
		b.Fatal(err)
	}
	res, err := api.Exec(ctx, sb.ID, "/bin/bash", []string{"-c", fmt.Sprintf(
		`setsid -f python3 /tmp/bench_server.py %d >/tmp/bench_server.log 2>&1 </dev/null
for i in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null && exit 0; sleep 0.1; done
cat /tmp/bench_server.log >&2; exit 1`, proxyGuestBigMiB)}, 60*time.Second)
	if err != nil || res.ExitCode != 0 {
		b.Fatalf("start the guest server: %v %+v", err, res)
	}
	// The sandbox's host IP, from the agent's record of it (slot → address): the agent's
	// own RPC (ListSandboxes' host_ip) needs the host secret only the control plane holds.
	var rec struct {
		Slot int `json:"slot"`
	}
	raw, err := os.ReadFile(filepath.Join(agentDir, "sandboxes", sb.ID, "sandbox.json"))
	if err == nil {
		err = json.Unmarshal(raw, &rec)
	}
	if err != nil {
		b.Fatalf("the agent's record of %s: %v", sb.ID, err)
	}
	addrs, err := netslot.DefaultConfig().Addrs(rec.Slot)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("setup (build, control plane, agent, boot, guest server) took %v; sandbox %s at host IP %s",
		time.Since(start).Round(time.Millisecond), sb.ID, addrs.HostIP)
	bigBytes := int64(proxyGuestBigMiB) << 20
	targets := []proxyTarget{
		{name: "direct (client → sandbox host IP)", base: "http://" + netip.AddrPortFrom(addrs.HostIP, 8080).String(), hc: proxyHTTPClient()},
		{name: "proxied (→ wrenn server → wrenn agent → guest)", base: cp.base, host: fmt.Sprintf("8080-%s.wrenn.test", sb.ID), hc: proxyHTTPClient()},
	}
	raw, err = os.ReadFile(filepath.Join(agentDir, "sandboxes", sb.ID, "qemu.pid"))
	if err != nil {
		b.Fatal(err)
	}
	qemuPID, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		b.Fatalf("qemu.pid: %v", err)
	}
	parties := []proxyParty{{"client", selfCPU}, {"server", procCPU(cp.pid)}, {"agent", procCPU(agent.pid)}, {"qemu", procCPU(qemuPID)}}
	f := measureProxy(b, targets, parties, proxyGuestReqs, bigBytes)
	accel := "TCG"
	if _, err := os.Stat("/dev/kvm"); err == nil {
		accel = "KVM if usable"
	}
	reportProxy(b, fmt.Sprintf("python3 server in a real sandbox (QEMU, %s); separate server and agent processes, pinned TLS between them; %d CPUs shared by all", accel, runtime.NumCPU()),
		targets, parties, f, proxyGuestReqs, proxyGuestBigMiB)
	if res, err := api.Exec(ctx, sb.ID, "/bin/bash", []string{"-c", "wc -c < /tmp/bench_conns"}, 30*time.Second); err == nil {
		b.Logf("  the guest's server accepted %s connections in all (%d targets: the proxies pool theirs)", strings.TrimSpace(string(res.Stdout)), len(targets))
	}
	// Sockets to the agent's port (established and TIME-WAIT: the last minute's).
	if out, err := exec.Command("ss", "-tanH", "state", "all", "( dport = :"+agent.port+" )").Output(); err == nil {
		b.Logf("  control plane → agent: %d TCP connections (established or closed within the last minute) for %d proxied requests",
			len(strings.FieldsFunc(string(out), func(r rune) bool { return r == '\n' })), proxyGuestReqs+proxyRuns+50)
	}
}

// proxyBuildWrenn builds the wrenn binary (the build cache makes repeats quick).
func proxyBuildWrenn(b *testing.B) string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		b.Fatalf("go env GOMOD: %v", err)
	}
	bin := filepath.Join(b.TempDir(), "wrenn")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/wrenn")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(out)))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build wrenn: %v\n%s", err, out)
	}
	return bin
}

// proxyLog collects a child process's output.
type proxyLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *proxyLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *proxyLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

type proxyCP struct {
	base string
	dsn  string
	pid  int
}

func proxyFreeAddr(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proxyStartServer runs `wrenn server` with WRENN_DOMAIN=wrenn.test on a fresh
// database, listening on listen ("" = a free loopback port).
func proxyStartServer(b *testing.B, bin, listen string) proxyCP {
	if listen == "" {
		listen = proxyFreeAddr(b)
	}
	cp := proxyCP{base: "http://" + listen, dsn: pgtest.NewDB(b)}
	logs := &proxyLog{}
	cmd := exec.Command(bin, "server", "--listen", listen)
	cmd.Env = append(os.Environ(), "WRENN_DATABASE_URL="+cp.dsn, "WRENN_REDIS_URL="+redistest.NewURL(b),
		"WRENN_JWT_SECRET=bench-jwt-secret-0123456789abcdef0123456789", "WRENN_ALLOW_INTERNET_DEFAULT=false",
		"WRENN_DOMAIN=wrenn.test")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	cp.pid = cmd.Process.Pid
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if b.Failed() {
			b.Logf("server log:\n%s", logs.String())
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; {
		if resp, err := http.Get(cp.base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return cp
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("server did not come up:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// proxyStartAgent makes an administrator, a platform host and a `wrenn agent`
// registered as it, on a WRENN_DIR of its own next to the template's (images and
// kernels linked in), and returns it once it serves.
// At the end the agent stops, and VMs or namespaces left in its slots fail the
// benchmark and are removed.
type proxyAgent struct {
	dir  string // WRENN_DIR
	pid  int
	port string // listening port
}

func proxyStartAgent(b *testing.B, bin string, cp proxyCP, templateDir string) proxyAgent {
	ctx := context.Background()
	if _, err := client.New(cp.base).Signup(ctx, "admin@bench.test", "", "correct horse battery"); err != nil {
		b.Fatal(err)
	}
	grant := exec.Command(bin, "admin", "grant", "admin@bench.test")
	grant.Env = append(os.Environ(), "WRENN_DATABASE_URL="+cp.dsn)
	if out, err := grant.CombinedOutput(); err != nil {
		b.Fatalf("wrenn admin grant: %v\n%s", err, out)
	}
	admin, err := client.New(cp.base).Login(ctx, "admin@bench.test", "correct horse battery")
	if err != nil {
		b.Fatal(err)
	}
	h, err := client.New(cp.base, client.WithToken(admin.Token)).CreateHost(ctx, "bench-host", true)
	if err != nil {
		b.Fatal(err)
	}
	dir, err := os.MkdirTemp(templateDir, "bench-agent-")
	if err != nil {
		b.Fatal(err)
	}
	for _, sub := range []string{"images", "kernels"} {
		if err := os.Symlink(filepath.Join(templateDir, sub), filepath.Join(dir, sub)); err != nil {
			b.Fatal(err)
		}
	}
	first := proxyGuestFirstSlot
	b.Cleanup(func() { proxyCleanAgentDir(b, dir, first) }) // runs after the agent stopped
	stateDir := b.TempDir()
	logs := &proxyLog{}
	listen := proxyFreeAddr(b)
	_, port, _ := net.SplitHostPort(listen)
	cmd := exec.Command(bin, "agent", "--listen", listen, "--server", cp.base, "--token", h.RegistrationToken,
		"--state-dir", stateDir, "--first-slot", strconv.Itoa(first), "--last-slot", strconv.Itoa(first+99), "--slot-pool", "1")
	cmd.Env = append(os.Environ(), "WRENN_DIR="+dir, "WRENN_ALLOW_INTERNET_DEFAULT=false")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if b.Failed() {
			b.Logf("agent log:\n%s", logs.String())
		}
	})
	for deadline := time.Now().Add(60 * time.Second); ; {
		if _, err := os.Stat(filepath.Join(stateDir, "host.json")); err == nil && strings.Contains(logs.String(), "agent listening") {
			return proxyAgent{dir: dir, pid: cmd.Process.Pid, port: port}
		}
		if time.Now().After(deadline) {
			b.Fatalf("agent did not register and serve:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// proxyCleanAgentDir stops VMs still running from dir and deletes namespaces of the
// agent's slots (each a failure: destroy should have removed them), then removes dir.
func proxyCleanAgentDir(b *testing.B, dir string, first int) {
	pidFiles, _ := filepath.Glob(filepath.Join(dir, "sandboxes", "*", "qemu.pid"))
	for _, pidFile := range pidFiles {
		raw, _ := os.ReadFile(pidFile)
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil || pid <= 0 {
			continue
		}
		// Only a QEMU of this sandbox directory (the pid may have been reused).
		if argv, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); err == nil && strings.Contains(string(argv), filepath.Dir(pidFile)) {
			b.Errorf("a VM of %s outlived the benchmark", filepath.Dir(pidFile))
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for i := first; i < first+100; i++ {
		ns := "wrenn-ns-" + strconv.Itoa(i)
		if _, err := os.Stat("/var/run/netns/" + ns); err == nil {
			b.Errorf("network namespace %s outlived its agent", ns)
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	}
	_ = os.RemoveAll(dir)
}
