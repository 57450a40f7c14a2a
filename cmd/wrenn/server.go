package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/wrennhq/wrenn/internal/config"
	"github.com/wrennhq/wrenn/internal/httplimit"
	"github.com/wrennhq/wrenn/internal/promx"
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
	"github.com/wrennhq/wrenn/internal/server/scheduler"
	"github.com/wrennhq/wrenn/internal/server/store"
	"github.com/wrennhq/wrenn/internal/tlsfiles"
	"github.com/wrennhq/wrenn/internal/version"
	"github.com/wrennhq/wrenn/web"
)

func serverCmd(ctx context.Context, log *slog.Logger, args []string) error {
	cfg, err := config.LoadServer(args, os.Getenv)
	if err != nil {
		return err
	}
	log = cfg.Log.New(os.Stderr)
	log.Info("starting control plane", "version", version.Version, "config", cfg)
	// Read before anything else starts, so a bad pair stops the server at once.
	var certs *tlsfiles.Pair
	if cfg.TLSCert != "" {
		if certs, err = loadTLS(cfg, log); err != nil {
			return err
		}
	}
	// Also read first: a missing secret file is a mistake to hear about at once.
	githubSecret, err := readGitHubSecret(cfg)
	if err != nil {
		return err
	}
	access, metricsLn, err := openMetrics(metricsSetting{listen: cfg.MetricsListen, token: cfg.MetricsToken,
		tokenFile: cfg.MetricsTokenFile, tokenFileVar: "WRENN_METRICS_TOKEN_FILE"})
	if err != nil {
		return err
	}
	if metricsLn != nil {
		defer metricsLn.Close() // until it serves; closing it again then is harmless
	}
	logMetrics(log, access)
	sched, err := scheduler.New(cfg.Scheduler)
	if err != nil {
		return fmt.Errorf("WRENN_SCHEDULER: %w", err)
	}
	pool, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := store.Migrate(ctx, pool, log); err != nil {
		return err
	}
	rdb, err := openRedis(ctx, cfg.RedisURL)
	if err != nil {
		return err
	}
	defer rdb.Close()
	tokens, err := auth.NewTokens([]byte(cfg.JWTSecret), 15*time.Minute)
	if err != nil {
		return err
	}
	// Host secrets are sealed with a key derived from the same server secret.
	sealer, err := auth.NewSealer([]byte(cfg.JWTSecret))
	if err != nil {
		return err
	}
	st, err := core.NewStore(pool, rdb)
	if err != nil {
		return err
	}
	// Metrics are collected only when something may read them.
	reg := promx.NewRegistry()
	var metrics *promx.ControlPlane
	if access.Enabled() {
		if metrics, err = promx.NewControlPlane(reg, st.Q); err != nil {
			return err
		}
	}
	svc, err := newServices(st, tokens, sealer, hostclient.NewPool(hosts.Lookup(st, sealer)), sched, metrics, cfg, log)
	if err != nil {
		return err
	}
	if svc.OAuth, err = newOAuth(cfg, githubSecret, rdb, log); err != nil {
		return err
	}
	if cfg.FaultPoint != "" {
		// Fault-injection tests: SIGUSR1 lets the operation held at the fault point go
		// on (after, say, the test stopped PostgreSQL under it).
		release := make(chan os.Signal, 1)
		signal.Notify(release, syscall.SIGUSR1)
		go func() {
			<-release
			svc.Sandboxes.ReleaseFaultPoint()
		}()
	}
	go svc.Sandboxes.RunHostMonitor(ctx, sandboxes.MonitorConfig{Interval: cfg.HostMonitorInterval, Stale: cfg.HostStaleAfter, Grace: cfg.CreateGrace})
	go svc.Sandboxes.RunExpiry(ctx, sandboxes.ExpiryInterval)
	go svc.Sandboxes.RunStats(ctx, 10*time.Second)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	// Sandbox ports are served at {port}-{id}.WRENN_DOMAIN (and by E2b-Sandbox-* headers).
	// Every request is bounded in time and header size (httplimit.ControlPlane), file
	// routes and proxied traffic by how long they pause rather than how long they take.
	lim := httplimit.ControlPlane
	px := proxy.New(svc.Sandboxes, cfg.Domain, log)
	px.SetConnLimit(cfg.ProxyConnLimit)
	px.SetStreamIdle(lim.StreamIdle)
	if metrics != nil {
		px.SetObserver(metrics)
		svc.Requests = metrics
	}
	svc.TrustedProxies, svc.Domain, svc.PublicURL = cfg.TrustedProxies, cfg.Domain, cfg.PublicURL
	// Sandbox traffic first: /metrics on a sandbox's host is the sandbox's own.
	srv := lim.Server(px.Wrap(access.Wrap(reg, log, dashboard.New(web.Build(), api.New(svc, lim.StreamIdle, log)))))
	if metricsLn != nil {
		serveMetrics(ctx, log, access, reg, metricsLn)
	}
	if certs != nil {
		srv.TLSConfig = certs.Config()
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	err = serve(ctx, log, "control plane", srv, ln, 10*time.Second)
	waitBoots(svc.Sandboxes, 30*time.Second, log)
	return err
}

// waitBoots gives creates that answered before their boot ended (wait: false) up to
// grace to record how their boot went; one still booting after that is rolled back by
// its agent when the call is cut, and recorded lost by the next server's host monitor.
func waitBoots(s *sandboxes.Service, grace time.Duration, log *slog.Logger) {
	done := make(chan struct{})
	go func() { s.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		log.Warn("stopping with sandbox boots still running; their hosts roll them back", "waited", grace)
	}
}

// loadTLS reads WRENN_TLS_CERT and WRENN_TLS_KEY, and warns when the certificate
// does not cover WRENN_DOMAIN and the sandbox hosts under it, which the E2B SDKs reach
// over https only: every such request would fail at the handshake.
func loadTLS(cfg config.Server, log *slog.Logger) (*tlsfiles.Pair, error) {
	certs, err := tlsfiles.Load(cfg.TLSCert, cfg.TLSKey, log)
	if err != nil {
		return nil, fmt.Errorf("WRENN_TLS_CERT, WRENN_TLS_KEY: %w", err)
	}
	cert, _ := certs.GetCertificate(nil)
	log.Info("serving TLS", "cert", cfg.TLSCert, "names", cert.Leaf.DNSNames, "not_after", cert.Leaf.NotAfter)
	if cfg.Domain != "" {
		for _, host := range []string{cfg.Domain, "49983-sandbox." + cfg.Domain} {
			if err := cert.Leaf.VerifyHostname(host); err != nil {
				log.Warn("WRENN_TLS_CERT does not cover WRENN_DOMAIN and *.WRENN_DOMAIN: clients cannot reach them over https", "host", host, "err", err)
			}
		}
	}
	if time.Now().After(cert.Leaf.NotAfter) {
		log.Warn("WRENN_TLS_CERT has expired: clients refuse it until it is renewed", "not_after", cert.Leaf.NotAfter)
	}
	return certs, nil
}

// newServices wires the control plane's services to each other: accounts resolves the
// API keys the sandboxes' port proxy accepts, hosts stops a deleted host's sandboxes
// through sandboxes, and both reach agents through the same connection pool.
// metrics, when not nil, observes the placements.
func newServices(st *core.Store, tokens *auth.Tokens, sealer *auth.Sealer, agents *hostclient.Pool, sched scheduler.Scheduler, metrics *promx.ControlPlane, cfg config.Server, log *slog.Logger) (api.Services, error) {
	quota := core.Quota{Sandboxes: cfg.QuotaSandboxes, VCPUs: cfg.QuotaVCPUs, MemoryMB: cfg.QuotaMemoryMB, APIKeys: cfg.QuotaAPIKeys}
	acc, err := accounts.New(accounts.Config{Store: st, Tokens: tokens, Quota: quota, Log: log, SignupClosed: cfg.Signup == "closed"})
	if err != nil {
		return api.Services{}, err
	}
	sbxCfg := sandboxes.Config{
		Store: st, Agents: agents, APIKeys: acc, Scheduler: sched, AllowInternetDefault: cfg.AllowInternetDefault, Quota: quota, Log: log,
		EnvdTokenKey: auth.DeriveKey([]byte(cfg.JWTSecret), "wrenn sandbox tokens v1"), FaultPoint: cfg.FaultPoint,
	}
	if metrics != nil { // a nil *ControlPlane in the interface would not be nil
		sbxCfg.Placements = metrics
	}
	sbx, err := sandboxes.New(sbxCfg)
	if err != nil {
		return api.Services{}, err
	}
	hs, err := hosts.New(hosts.Config{
		Store: st, Tokens: tokens, Sealer: sealer, Conns: agents, Sandboxes: sbx, HeartbeatInterval: cfg.HostHeartbeatInterval, Log: log,
	})
	if err != nil {
		return api.Services{}, err
	}
	return api.Services{Accounts: acc, Hosts: hs, Sandboxes: sbx, Ready: st.Ready}, nil
}

// readGitHubSecret is the GitHub OAuth app's client secret: WRENN_GITHUB_CLIENT_SECRET
// or the file WRENN_GITHUB_CLIENT_SECRET_FILE names ("" when GitHub sign-in is off).
func readGitHubSecret(cfg config.Server) (string, error) {
	if cfg.GitHubClientSecretFile == "" {
		return cfg.GitHubClientSecret, nil
	}
	b, err := os.ReadFile(cfg.GitHubClientSecretFile)
	if err != nil {
		return "", fmt.Errorf("WRENN_GITHUB_CLIENT_SECRET_FILE: %w", err)
	}
	secret := strings.TrimSpace(string(b))
	if secret == "" {
		return "", fmt.Errorf("WRENN_GITHUB_CLIENT_SECRET_FILE: %s is empty", cfg.GitHubClientSecretFile)
	}
	return secret, nil
}

// newOAuth sets up sign-in with GitHub when WRENN_GITHUB_CLIENT_ID is set (config
// has checked that its secret and WRENN_PUBLIC_URL are too); nil: no provider, and
// the sign-in routes answer 404.
func newOAuth(cfg config.Server, githubSecret string, rdb *redis.Client, log *slog.Logger) (*oauth.Flow, error) {
	if cfg.GitHubClientID == "" {
		return nil, nil
	}
	github := oauth.NewGitHub(cfg.GitHubClientID, githubSecret)
	if cfg.GitHubURL != "" {
		github = oauth.NewGitHubEnterprise(cfg.GitHubClientID, githubSecret, cfg.GitHubURL)
	}
	flow, err := oauth.New(oauth.Config{
		Providers: []oauth.Provider{github},
		PublicURL: cfg.PublicURL, ServerSecret: []byte(cfg.JWTSecret), Redis: rdb,
	})
	if err != nil {
		return nil, fmt.Errorf("GitHub sign-in: %w", err)
	}
	log.Info("sign-in with GitHub enabled", "callback_url", flow.RedirectURI("github"))
	return flow, nil
}

// openRedis connects to WRENN_REDIS_URL (redis://, rediss:// or unix://) and checks
// that it answers, so a wrong URL fails at start rather than on the first login.
func openRedis(ctx context.Context, url string) (*redis.Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("WRENN_REDIS_URL: %w", err)
	}
	rdb := redis.NewClient(opts)
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := rdb.Ping(pingCtx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("redis at %s: %w", opts.Addr, err)
	}
	return rdb, nil
}
