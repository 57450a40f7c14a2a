package agenttest

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
	"github.com/wrennhq/wrenn/internal/agent"
	"github.com/wrennhq/wrenn/internal/agent/proxy"
	"github.com/wrennhq/wrenn/internal/agent/rpc"
	"github.com/wrennhq/wrenn/internal/envd/envdtest"
	"github.com/wrennhq/wrenn/internal/hostproto"
	"github.com/wrennhq/wrenn/internal/image"
)

// Template is the template every harness has; its files are empty (nothing boots them).
const Template = "base"

// Options tune a harness.
type Options struct {
	// Slots is how many sandboxes can run at once (default 16).
	Slots int
	// Config is passed to agent.New after the harness fills Dir, Driver, Slots, Disks
	// and Log.
	Config agent.Config
}

// Agent is a running agent: the real manager, RPC server and port proxy on fakes of
// the VMM and the network.
type Agent struct {
	Manager *agent.Manager
	Driver  *Driver
	Slots   *Slots
	Dir     string // WRENN_DIR
	URL     string // where the RPC server and proxy listen (h2c)
	Secret  string
	Client  hostagentv1connect.HostAgentServiceClient
}

// Start runs an agent until the test ends. It needs root, as envd does (envdtest).
func Start(t testing.TB, opts Options) *Agent {
	t.Helper()
	envdtest.RequireRoot(t)
	if opts.Slots == 0 {
		opts.Slots = 16
	}
	dir := t.TempDir()
	writeTemplate(t, dir, Template)
	slots := NewSlots(1, opts.Slots)
	drv := &Driver{EnvdBin: envdtest.Binary(t), Slots: slots}
	cfg := opts.Config
	cfg.Dir, cfg.Driver, cfg.Slots, cfg.Disks = dir, drv, slots, Disks{}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.BootTimeout == 0 {
		cfg.BootTimeout = 20 * time.Second
	}
	m, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	a := &Agent{Manager: m, Driver: drv, Slots: slots, Dir: dir, Secret: "agenttest-secret-0123456789"}
	mux := http.NewServeMux()
	mux.Handle(rpc.Handler(m, rpc.SharedSecret(a.Secret)))
	mux.Handle(hostproto.ProxyPrefix, proxy.New(m, rpc.SharedSecret(a.Secret), cfg.Log))
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = &protocols
	srv.Start()
	a.URL = srv.URL
	a.Client = hostagentv1connect.NewHostAgentServiceClient(H2CClient(a.Secret), a.URL)
	t.Cleanup(func() {
		srv.Close()
		for _, i := range m.List() {
			_ = m.Destroy(context.Background(), i.Spec.ID)
		}
		m.Close()
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
