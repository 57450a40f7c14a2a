// Package servertest runs the control plane in-process for tests: the real service
// and REST handlers on a private PostgreSQL and Redis (pgtest, redistest), in front of
// real host agents (agenttest: the agent's manager, RPC server and port proxy, whose
// "VMs" are envd processes on loopback addresses). Real VMs are covered by test/e2e.
// Hosts are reached over plain HTTP (h2c) with their shared secret, as a standalone
// agent is; the pinned TLS of registered hosts is hostclient's own test.
package servertest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
	"github.com/wrennhq/wrenn/internal/agent/agenttest"
	"github.com/wrennhq/wrenn/internal/httplimit"
	"github.com/wrennhq/wrenn/internal/pgtest"
	"github.com/wrennhq/wrenn/internal/promx"
	"github.com/wrennhq/wrenn/internal/redistest"
	"github.com/wrennhq/wrenn/internal/server/accounts"
	"github.com/wrennhq/wrenn/internal/server/api"
	"github.com/wrennhq/wrenn/internal/server/auth"
	"github.com/wrennhq/wrenn/internal/server/auth/oauth"
	"github.com/wrennhq/wrenn/internal/server/core"
	"github.com/wrennhq/wrenn/internal/server/dashboard"
	"github.com/wrennhq/wrenn/internal/server/hostclient"
	"github.com/wrennhq/wrenn/internal/server/hosts"
	"github.com/wrennhq/wrenn/internal/server/proxy"
	"github.com/wrennhq/wrenn/internal/server/sandboxes"
	"github.com/wrennhq/wrenn/internal/server/store"
	"github.com/wrennhq/wrenn/pkg/client"
	"github.com/wrennhq/wrenn/web"
)

// Domain is the test control plane's sandbox domain: {port}-{id}.wrenn.test.
const Domain = "wrenn.test"

// Run starts the test databases around a package's tests; call it from TestMain.
func Run(m interface{ Run() int }) int { return pgtest.Run(redistest.Around(m)) }

// Env is one running control plane.
type Env struct {
	URL     string // base URL of the REST API (and the public URL sign-ins return to)
	Service api.Services
	Proxy   *proxy.Proxy // the port proxy in front of the API
	DB      *pgxpool.Pool
	Redis   *redis.Client
	Agent   *agenttest.Agent // the first host's agent (a platform host)
	HostID  string
	Tokens  *auth.Tokens
	// Metrics is the control plane's registry: NewWithMetrics's collects into it and
	// serves it at /metrics as `wrenn server` does; New's holds only the Go and
	// process collectors.
	Metrics *prometheus.Registry
	hosts   *agentHosts
}

// New starts a control plane on a fresh database, with `wrenn server`'s limits; it
// stops when the test ends. Its teams have no quota by default (tests and benchmarks
// keep hundreds of sandboxes in one team): platform administrators set one per team,
// or NewWithQuota sets the defaults.
func New(t testing.TB) *Env {
	t.Helper()
	return start(t, options{lim: httplimit.ControlPlane})
}

// OAuth is how NewWithOAuth's control plane signs users in through providers.
type OAuth struct {
	Providers []oauth.Provider // e.g. an oauthtest.GitHub stand-in's Provider()
	// Now is the sign-in state's clock (nil: time.Now), so tests can let it expire.
	Now func() time.Time
	// SignupClosed is WRENN_SIGNUP=closed.
	SignupClosed bool
}

// NewWithOAuth is New with sign-in through providers; the control plane's URL is
// its public URL (WRENN_PUBLIC_URL), where providers send browsers back.
func NewWithOAuth(t testing.TB, o OAuth) *Env {
	t.Helper()
	return start(t, options{lim: httplimit.ControlPlane, oauth: &o})
}

// NewWithMetrics is New with Prometheus metrics served as access says
// (WRENN_METRICS_TOKEN of `wrenn server`: /metrics on the API's listener to a bearer
// token); a listener of their own (access.Listen) is the caller's to serve.
func NewWithMetrics(t testing.TB, access promx.Access) *Env {
	t.Helper()
	return start(t, options{lim: httplimit.ControlPlane, metrics: &access})
}

// NewWithPublicURL is New with WRENN_PUBLIC_URL set to publicURL (e.g. an https
// one, under which browser-session cookies are Secure and __Host-), while the test
// server itself serves plain HTTP, as behind a TLS-terminating proxy.
func NewWithPublicURL(t testing.TB, publicURL string) *Env {
	t.Helper()
	return start(t, options{lim: httplimit.ControlPlane, publicURL: publicURL})
}

// options are what the New functions vary.
type options struct {
	lim       httplimit.Limits
	quota     core.Quota
	oauth     *OAuth
	metrics   *promx.Access
	publicURL string
}

// NewWithLimits is New with other limits (short ones, for tests of them): the
// http.Server is built by httplimit, as `wrenn server` builds its own.
func NewWithLimits(t testing.TB, lim httplimit.Limits) *Env {
	t.Helper()
	return start(t, options{lim: lim})
}

// NewWithQuota is New with every team's default quota (WRENN_QUOTA_* of `wrenn server`).
func NewWithQuota(t testing.TB, quota core.Quota) *Env {
	t.Helper()
	return start(t, options{lim: httplimit.ControlPlane, quota: quota})
}

func start(t testing.TB, o options) *Env {
	t.Helper()
	ctx := context.Background()
	pool, err := store.Open(ctx, pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	log := slog.New(slog.DiscardHandler)
	if _, err := store.Migrate(ctx, pool, log); err != nil {
		t.Fatal(err)
	}
	tokens, err := auth.NewTokens(bytes.Repeat([]byte("k"), 32), 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redistest.NewClient(t)
	sealer, err := auth.NewSealer(bytes.Repeat([]byte("s"), 32))
	if err != nil {
		t.Fatal(err)
	}
	var h2 http.Protocols
	h2.SetUnencryptedHTTP2(true)
	hosts := &agentHosts{byID: map[string]agentHost{}, http1: &http.Transport{}, h2c: &http.Transport{Protocols: &h2}}
	// Wired as `wrenn server` wires it, metrics on only when asked for.
	reg := promx.NewRegistry()
	var access promx.Access
	var metrics *promx.ControlPlane
	if o.metrics != nil {
		access = *o.metrics
		if metrics, err = promx.NewControlPlane(reg, db.New(pool)); err != nil {
			t.Fatal(err)
		}
	}
	svc := newServices(t, pool, rdb, tokens, sealer, hosts, metrics, o, log)
	// Creates left booting in the background (wait false) end before the database:
	// cleanups run last first, so this runs after the agents and the server stopped.
	t.Cleanup(svc.Sandboxes.Wait)
	lim := o.lim
	px := proxy.New(svc.Sandboxes, Domain, log)
	px.SetStreamIdle(lim.StreamIdle)
	if metrics != nil {
		px.SetObserver(metrics)
		svc.Requests = metrics
	}
	srv := httptest.NewUnstartedServer(nil)
	svc.PublicURL = o.publicURL
	if o.oauth != nil {
		// The listener exists before the server starts: its address is the public URL.
		svc.PublicURL = "http://" + srv.Listener.Addr().String()
		svc.OAuth, err = oauth.New(oauth.Config{Providers: o.oauth.Providers, PublicURL: svc.PublicURL,
			ServerSecret: bytes.Repeat([]byte("k"), 32), Redis: rdb, Now: o.oauth.Now})
		if err != nil {
			t.Fatal(err)
		}
	}
	srv.Config = lim.Server(px.Wrap(access.Wrap(reg, log, dashboard.New(web.Build(), api.New(svc, lim.StreamIdle, log)))))
	srv.Start()
	t.Cleanup(srv.Close)
	// Sandboxes end on time, as under `wrenn server`.
	expiryCtx, stopExpiry := context.WithCancel(ctx)
	expiryDone := make(chan struct{})
	go func() {
		defer close(expiryDone)
		svc.Sandboxes.RunExpiry(expiryCtx, 50*time.Millisecond)
	}()
	t.Cleanup(func() { stopExpiry(); <-expiryDone })
	env := &Env{URL: srv.URL, Service: svc, Proxy: px, DB: pool, Redis: rdb, Tokens: tokens, Metrics: reg, hosts: hosts}
	env.HostID, env.Agent = env.AddHost(t, "")
	return env
}

// newServices wires the services as `wrenn server` does, with the test's agents;
// metrics, when not nil, observes the placements.
func newServices(t testing.TB, pool *pgxpool.Pool, rdb *redis.Client, tokens *auth.Tokens, sealer *auth.Sealer, agents *agentHosts, metrics *promx.ControlPlane, o options, log *slog.Logger) api.Services {
	t.Helper()
	st, err := core.NewStore(pool, rdb)
	if err != nil {
		t.Fatal(err)
	}
	quota := o.quota
	acc, err := accounts.New(accounts.Config{Store: st, Tokens: tokens, Quota: quota, Log: log, SignupClosed: o.oauth != nil && o.oauth.SignupClosed})
	if err != nil {
		t.Fatal(err)
	}
	cfg := sandboxes.Config{Store: st, Agents: agents, APIKeys: acc, Quota: quota, Log: log}
	if metrics != nil {
		cfg.Placements = metrics
	}
	sbx, err := sandboxes.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := hosts.New(hosts.Config{Store: st, Tokens: tokens, Sealer: sealer, Conns: agents, Sandboxes: sbx, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	return api.Services{Accounts: acc, Hosts: hs, Sandboxes: sbx, Ready: st.Ready, Domain: Domain}
}

// Team is a signed-up user's team with an API key.
type Team struct {
	Session *client.Session
	Key     string         // the team's API key
	Client  *client.Client // acting with Key
}

// NewTeam signs up email (which gets a team of its own) and makes an API key.
func (e *Env) NewTeam(t testing.TB, email string) Team {
	t.Helper()
	ctx := context.Background()
	s, err := client.New(e.URL).Signup(ctx, email, "", "correct horse battery")
	if err != nil {
		t.Fatalf("signup %s: %v", email, err)
	}
	k, err := client.New(e.URL, client.WithToken(s.Token)).CreateAPIKey(ctx, "test")
	if err != nil {
		t.Fatalf("api key for %s: %v", email, err)
	}
	return Team{Session: s, Key: k.Key, Client: client.New(e.URL, client.WithAPIKey(k.Key))}
}

// agentSlots is how many sandboxes each host's agent can run at once: all it has, as
// some tests and benchmarks keep hundreds alive.
const agentSlots = 254

// AddHost starts another agent and registers it as a host, a platform host when
// teamID is "" and that team's own (BYOC) host otherwise, online; it returns the
// host's id and its agent.
func (e *Env) AddHost(t testing.TB, teamID string) (string, *agenttest.Agent) {
	t.Helper()
	ctx := context.Background()
	q := db.New(e.DB)
	params := db.CreateHostParams{Name: "agenttest"}
	if teamID != "" {
		if err := params.TeamID.Scan(teamID); err != nil {
			t.Fatal(err)
		}
	}
	row, err := q.CreateHost(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	fp := strings.Repeat("0", 64)
	if _, err := q.RegisterHost(ctx, db.RegisterHostParams{ID: row.ID, Address: "fake:1", CertFingerprint: &fp, SecretSealed: []byte{0}, Vcpus: 1 << 20, MemoryMB: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	a := agenttest.Start(t, agenttest.Options{Slots: agentSlots})
	// The control plane's client of a standalone agent, as `wrenn server` makes it.
	addr := strings.TrimPrefix(a.URL, "http://")
	id := row.ID.String()
	e.hosts.mu.Lock()
	e.hosts.byID[id] = agentHost{agent: a, client: hostclient.New(addr, a.Secret)}
	e.hosts.mu.Unlock()
	return id, a
}

// agentHosts is sandboxes.Agents (and hosts.Conns) over the test's agents, by host id.
type agentHosts struct {
	mu         sync.Mutex
	byID       map[string]agentHost
	http1, h2c *http.Transport // the agents speak plain HTTP/1.1 and h2c
}

type agentHost struct {
	agent  *agenttest.Agent
	client hostagentv1connect.HostAgentServiceClient
}

func (h *agentHosts) get(hostID string) (agentHost, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	a, ok := h.byID[hostID]
	if !ok {
		return agentHost{}, fmt.Errorf("no test host %s", hostID)
	}
	return a, nil
}

func (h *agentHosts) Agent(_ context.Context, hostID string) (hostagentv1connect.HostAgentServiceClient, error) {
	a, err := h.get(hostID)
	return a.client, err
}

func (h *agentHosts) Endpoint(_ context.Context, hostID string) (hostclient.Endpoint, error) {
	a, err := h.get(hostID)
	if err != nil {
		return hostclient.Endpoint{}, err
	}
	return hostclient.Endpoint{HTTP1: h.http1, HTTP2: h.h2c, BaseURL: a.agent.URL, Secret: a.agent.Secret}, nil
}

func (h *agentHosts) Evict(string) {}
