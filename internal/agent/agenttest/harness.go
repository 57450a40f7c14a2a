package agenttest

import (
	"context"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
	"github.com/wrennhq/wrenn/internal/agent"
	"github.com/wrennhq/wrenn/internal/agent/proxy"
	"github.com/wrennhq/wrenn/internal/agent/rpc"
	"github.com/wrennhq/wrenn/internal/envd/envdapi"
	"github.com/wrennhq/wrenn/internal/envd/envdtest"
	"github.com/wrennhq/wrenn/internal/image"
)

// Template is the template every harness has; its files are empty (nothing boots them).
const Template = "base"

// Options tune a harness.
type Options struct {
	// Slots is how many sandboxes can run at once (default 16, at most 254).
	Slots int
	// Config is passed to agent.New after the harness fills Dir, Driver, Slots, Disks,
	// RecordKey (made in Dir/agent, as `wrenn agent` does), Log (discarded), BootTimeout
	// (20 s) and Limits.MaxVCPUs (16) when unset.
	Config agent.Config
}

// maxSlots is the most slots one harness has: one address block, less .0 and .255.
const maxSlots = 254

// Agent is a running agent: the real manager, RPC server and port proxy on fakes of
// the VMM and the network.
type Agent struct {
	Manager *agent.Manager
	Driver  *Driver
	Slots   *Slots
	Dir     string // WRENN_DIR
	// RecordKey seals the manager's sandbox records: a manager started again on Dir
	// (an agent restart) needs it to open them.
	RecordKey []byte
	URL       string // where the RPC server and proxy listen (h2c)
	Secret    string
	Client    hostagentv1connect.HostAgentServiceClient

	calls *callCounter
}

// Start runs an agent until the test ends. It needs root, as envd does (envdtest).
func Start(t testing.TB, opts Options) *Agent {
	t.Helper()
	envdtest.RequireRoot(t)
	if opts.Slots == 0 {
		opts.Slots = 16
	}
	if opts.Slots < 1 || opts.Slots > maxSlots {
		t.Fatalf("agenttest: Options.Slots %d out of range 1..%d", opts.Slots, maxSlots)
	}
	dir := t.TempDir()
	writeTemplate(t, dir, Template)
	slots := NewSlots(claimBlock(t), 1, opts.Slots)
	drv := &Driver{EnvdBin: envdtest.Binary(t), Slots: slots}
	cfg := opts.Config
	cfg.Dir, cfg.Driver, cfg.Slots, cfg.Disks = dir, drv, slots, Disks{}
	if cfg.RecordKey == nil {
		key, err := agent.LoadOrCreateRecordKey(filepath.Join(dir, "agent"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.RecordKey = key
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.BootTimeout == 0 {
		cfg.BootTimeout = 20 * time.Second
	}
	if cfg.Limits.MaxVCPUs == 0 {
		// No VM runs, so this machine's CPU count (the agent's default) bounds nothing;
		// a fixed limit keeps tests the same on every machine.
		cfg.Limits.MaxVCPUs = 16
	}
	m, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	a := &Agent{Manager: m, Driver: drv, Slots: slots, Dir: dir, RecordKey: cfg.RecordKey, Secret: "agenttest-secret-0123456789", calls: &callCounter{n: map[string]int{}}}
	mux := http.NewServeMux()
	rpcPath, rpcHandler := rpc.Handler(m, rpc.SharedSecret(a.Secret))
	mux.Handle(rpcPath, a.calls.wrap(rpcHandler))
	srv := httptest.NewUnstartedServer(proxy.Routes(mux, proxy.New(m, rpc.SharedSecret(a.Secret), cfg.Log)))
	srv.EnableHTTP2 = true
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = &protocols
	srv.Start()
	a.URL = srv.URL
	a.Client = hostagentv1connect.NewHostAgentServiceClient(H2CClient(a.Secret), a.URL)
	t.Cleanup(func() {
		// Cut the clients first: a stream still open (a command waiting for input)
		// then ends with its caller, and Close does not wait for it.
		srv.CloseClientConnections()
		for _, i := range m.List() {
			_ = m.Destroy(context.Background(), i.Spec.ID)
		}
		srv.Close()
		m.Close()
		drv.stopAll()
	})
	return a
}

// H2CClient is an HTTP client that speaks cleartext HTTP/2 and sends the agent's
// bearer secret.
func H2CClient(secret string) *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: bearerTransport{secret: secret, next: &http.Transport{Protocols: &p}}}
}

type bearerTransport struct {
	secret string
	next   http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.secret)
	return b.next.RoundTrip(r)
}

// writeTemplate makes a template whose files exist but are empty.
func writeTemplate(t testing.TB, dir, name string) {
	t.Helper()
	tdir := filepath.Join(dir, "images", name)
	if err := os.MkdirAll(tdir, 0o755); err != nil {
		t.Fatal(err)
	}
	rel := func(f string) string { return filepath.Join("images", name, f) }
	for _, f := range []string{"vmlinux", "initrd.img", "rootfs.ext4"} {
		if err := os.WriteFile(filepath.Join(dir, rel(f)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := image.Manifest{Name: name, Vmlinux: rel("vmlinux"), Vmlinuz: rel("vmlinux"),
		Initrd: image.Initrd{Path: rel("initrd.img")}, RootFS: image.RootFS{Path: rel("rootfs.ext4")}}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tdir, "template.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Calls reports how many calls of the RPC named method (e.g. "CreateSandbox") reached
// the agent's server, refused ones (bad credentials, bad requests) included: tests of
// the control plane check what it forwards and where.
func (a *Agent) Calls(method string) int { return a.calls.get(method) }

// SandboxIDs returns the ids of the sandboxes the manager has, sorted.
func (a *Agent) SandboxIDs() []string {
	var ids []string
	for _, i := range a.Manager.List() {
		ids = append(ids, i.Spec.ID)
	}
	slices.Sort(ids)
	return ids
}

// callCounter counts requests by the last element of their path, which for a Connect
// procedure (/hostagent.v1.HostAgentService/CreateSandbox) is the method's name.
type callCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *callCounter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
		c.mu.Lock()
		c.n[method]++
		c.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

func (c *callCounter) get(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[method]
}

// claimBlock reserves an address block 127.77.B.0/24 for one harness until the test
// ends. The claim is a listener on the block's .255 address at envd's port, which no
// slot uses: the kernel holds it for this process only, so harnesses in this test
// binary and in others running at the same time (go test runs packages in parallel)
// each get their own block, and a crashed test binary frees its block with it.
func claimBlock(t testing.TB) byte {
	t.Helper()
	start := rand.IntN(256) // spread the harnesses, so claims rarely collide
	for i := range 256 {
		b := byte(start + i)
		ln, err := net.Listen("tcp", netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 77, b, 255}), envdapi.Port).String())
		if err != nil {
			continue // another harness has it
		}
		t.Cleanup(func() { ln.Close() })
		return b
	}
	t.Fatal("agenttest: every address block 127.77.0-255.0/24 is claimed")
	return 0
}
