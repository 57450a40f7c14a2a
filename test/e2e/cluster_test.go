package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/pgtest"
	"github.com/wrennhq/wrenn/internal/redistest"
	"github.com/wrennhq/wrenn/pkg/client"
)

// cpProc is a `wrenn server` process (on a private database unless startServerWith
// was given a shared one).
type cpProc struct {
	base string
	dsn  string
	logs *logBuffer
	cmd  *exec.Cmd
}

// logBuffer collects a process's output; tests read it while the process writes.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startServer runs `wrenn server` on listen ("" = a free loopback port) against a
// fresh database, internet off by default as in every test.
func startServer(t *testing.T, listen string, env ...string) *cpProc {
	t.Helper()
	return startServerWith(t, listen, pgtest.NewDB(t), redistest.NewURL(t), env...)
}

// startServerWith runs `wrenn server` on listen ("" = a free loopback port) against the
// given database and Redis, so that several control planes can share them as in a
// multi-server install. With WRENN_TLS_CERT in env it serves HTTPS and cp.base is an
// https URL.
func startServerWith(t *testing.T, listen, dsn, redisURL string, env ...string) *cpProc {
	t.Helper()
	if listen == "" {
		listen = freeAddr(t)
	}
	cp := &cpProc{dsn: dsn, logs: &logBuffer{}}
	cp.cmd = exec.Command(wrennBinary(t), "server", "--listen", listen)
	cp.cmd.Env = append(append(os.Environ(),
		"WRENN_DATABASE_URL="+cp.dsn, "WRENN_REDIS_URL="+redisURL,
		"WRENN_JWT_SECRET=e2e-jwt-secret-0123456789abcdef0123456789", "WRENN_ALLOW_INTERNET_DEFAULT=false"), env...)
	cpOut, _ := logFile(t, "server", cp.logs)
	cp.cmd.Stdout, cp.cmd.Stderr = cpOut, cpOut
	if err := cp.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cp.cmd.Process.Kill()
		_ = cp.cmd.Wait()
		if t.Failed() {
			t.Logf("server %s log:\n%s", listen, cp.logs.String())
		}
	})
	scheme, probe := "http", http.DefaultClient
	if slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "WRENN_TLS_CERT=") }) {
		// The probe only waits for the listener; whoever asked for TLS checks the
		// certificate chain the way its clients would.
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
		defer tr.CloseIdleConnections()
		scheme, probe = "https", &http.Client{Transport: tr}
	}
	cp.base = scheme + "://" + strings.Replace(listen, "0.0.0.0", "127.0.0.1", 1)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := probe.Get(cp.base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return cp
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not come up:\n%s", cp.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// admin returns a platform administrator's token (signed up, then granted with
// `wrenn admin grant`, as an operator would).
func (cp *cpProc) admin(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	if _, err := client.New(cp.base).Signup(ctx, "admin@e2e.test", "", "correct horse battery"); err != nil && !strings.Contains(err.Error(), "409") {
		t.Fatal(err)
	}
	cmd := exec.Command(wrennBinary(t), "admin", "grant", "admin@e2e.test")
	cmd.Env = append(os.Environ(), "WRENN_DATABASE_URL="+cp.dsn)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("wrenn admin grant: %v\n%s", err, out)
	}
	s, err := client.New(cp.base).Login(ctx, "admin@e2e.test", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	return s.Token
}

// hostAgent is a registered `wrenn agent` process.
type hostAgent struct {
	id       string
	stateDir string
	opts     agentOpts // as run (every default filled in): addAgent(t, "", a.opts) restarts it
	logs     *logBuffer
	cmd      *exec.Cmd
}

// agentOpts says how to run a registered agent.
type agentOpts struct {
	token     string   // registration token ("" = create a platform host with adminToken)
	name      string   // host name when creating one
	listen    string   // "" = a free loopback port
	netns     string   // run inside this network namespace (nsenter --net, not ip netns exec)
	stateDir  string   // "" = a fresh temp dir
	server    string   // "" = cp.base
	extraArgs []string // more flags
	env       []string // more environment (after the defaults, so it wins)
	// dir is the agent's WRENN_DIR ("" = a fresh one under the tests' WRENN_DIR, sharing its
	// images and kernels). Agents never share one: an agent adopts (or, when their slots are
	// not in its range, stops and removes) every sandbox under its WRENN_DIR at start.
	dir       string
	firstSlot int // first of its 100 network slots (0 = the next free range of the run)
}

// slotRanges hands each registered agent of a run its own network slots.
var slotRanges atomic.Int32

// addAgent creates a platform host (unless opts.token is given) and starts an agent
// that registers with it; it returns once the agent is online.
func (cp *cpProc) addAgent(t *testing.T, adminToken string, opts agentOpts) *hostAgent {
	t.Helper()
	ctx := context.Background()
	if opts.token == "" {
		if opts.name == "" {
			opts.name = "e2e-host"
		}
		h, err := client.New(cp.base, client.WithToken(adminToken)).CreateHost(ctx, opts.name, true)
		if err != nil {
			t.Fatal(err)
		}
		opts.token = h.RegistrationToken
	}
	if opts.listen == "" {
		opts.listen = freeAddr(t)
	}
	if opts.stateDir == "" {
		opts.stateDir = t.TempDir()
	}
	if opts.server == "" {
		opts.server = cp.base
	}
	if opts.firstSlot == 0 {
		opts.firstSlot = 60000 + 100*int(slotRanges.Add(1))
	}
	if opts.dir == "" {
		opts.dir = agentDir(t, opts.firstSlot)
	}
	first := opts.firstSlot
	a := &hostAgent{stateDir: opts.stateDir, opts: opts, logs: &logBuffer{}}
	args := append([]string{"agent", "--listen", opts.listen, "--server", opts.server, "--token", opts.token,
		"--state-dir", opts.stateDir, "--first-slot", strconv.Itoa(first), "--last-slot", strconv.Itoa(first + 99), "--slot-pool", "1"}, opts.extraArgs...)
	bin := wrennBinary(t)
	if opts.netns != "" {
		// Only the network namespace: `ip netns exec` would also give the agent a mount
		// namespace of its own, hiding the sandbox namespaces it mounts under
		// /var/run/netns from everyone else — and from the agent after a restart.
		args = append([]string{"--net=/var/run/netns/" + opts.netns, bin}, args...)
		bin = "nsenter"
	}
	a.cmd = exec.Command(bin, args...)
	a.cmd.Env = append(os.Environ(), "WRENN_DIR="+opts.dir, "WRENN_ALLOW_INTERNET_DEFAULT=false", egressAllowEnv, "WRENN_AGENT_WARM_START=false")
	a.cmd.Env = append(a.cmd.Env, opts.env...)
	out, _ := logFile(t, "agent-"+opts.listen, a.logs)
	a.cmd.Stdout, a.cmd.Stderr = out, out
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.stop(t) })
	deadline := time.Now().Add(60 * time.Second)
	for {
		if creds, err := os.ReadFile(filepath.Join(opts.stateDir, "host.json")); err == nil && strings.Contains(a.logs.String(), "agent listening") {
			var c struct {
				HostID string `json:"host_id"`
			}
			_ = json.Unmarshal(creds, &c)
			a.id = c.HostID
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent did not register and serve:\n%s", a.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// agentDir makes a WRENN_DIR for one agent next to the tests' own, with the shared
// images and kernels linked in. When the test ends (after its agents stopped), VMs
// still running from it are stopped, namespaces of its slot range deleted, and it is
// removed; a VM or a namespace left over fails the test.
func agentDir(t *testing.T, firstSlot int) string {
	t.Helper()
	dir, err := os.MkdirTemp(env.dir, "agent-")
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"images", "kernels"} {
		if err := os.Symlink(filepath.Join(env.dir, sub), filepath.Join(dir, sub)); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		boxes, _ := filepath.Glob(filepath.Join(dir, "sandboxes", "*", "qemu.pid"))
		for _, pidFile := range boxes {
			b, _ := os.ReadFile(pidFile)
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil || pid <= 0 {
				continue
			}
			// Only a QEMU of this sandbox directory (the pid may have been reused).
			if argv, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); err == nil && bytes.Contains(argv, []byte(filepath.Dir(pidFile))) {
				if !t.Failed() {
					t.Errorf("a VM of %s outlived the test", filepath.Dir(pidFile))
				}
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		for i := firstSlot; i < firstSlot+100; i++ {
			if _, err := os.Stat("/var/run/netns/wrenn-ns-" + strconv.Itoa(i)); err == nil {
				if !t.Failed() {
					t.Errorf("network namespace wrenn-ns-%d outlived its agent", i)
				}
				_ = exec.Command("ip", "netns", "del", "wrenn-ns-"+strconv.Itoa(i)).Run()
			}
		}
		_ = os.RemoveAll(dir)
	})
	return dir
}

// stop ends the agent (SIGTERM); sandboxes keep running.
func (a *hostAgent) stop(t *testing.T) {
	if a.cmd.ProcessState != nil || a.cmd.Process == nil {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = a.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = a.cmd.Process.Kill()
		<-done
	}
	if t.Failed() {
		t.Logf("agent %s log:\n%s", a.id, a.logs.String())
	}
}

// startControlPlaneWithHost is the common setup: a control plane with one registered
// host, returning the API's base URL.
func startControlPlaneWithHost(t *testing.T) string {
	t.Helper()
	needVM(t)
	cp := startServer(t, "")
	cp.addAgent(t, cp.admin(t), agentOpts{})
	return cp.base
}
