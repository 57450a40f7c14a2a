package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// Server is the control plane's (wrenn server's) configuration.
type Server struct {
	Listen      string
	DatabaseURL string // secret: password
	RedisURL    string // secret: password
	JWTSecret   string // secret
	Scheduler   string // a scheduler.Names() entry
	// A host silent for HostStaleAfter is unreachable; agents are told to report every
	// HostHeartbeatInterval; the host monitor runs every HostMonitorInterval.
	HostStaleAfter, HostHeartbeatInterval, HostMonitorInterval time.Duration
	// CreateGrace: the host monitor never judges a sandbox still being created lost
	// before this, nor takes its host's word for it.
	CreateGrace          time.Duration
	FaultPoint           string // fault-injection tests only (sandboxes.FaultPoints)
	AllowInternetDefault bool
	Domain               string // "" = header routing only
	ProxyConnLimit       int
	// TrustedProxies may name the client in X-Forwarded-For (e.g. Caddy on loopback).
	TrustedProxies []netip.Prefix
	// TLSCert and TLSKey are PEM files (the chain, leaf first, and its key) the
	// listener serves HTTPS with; both or neither ("": plain HTTP, TLS by a proxy).
	TLSCert, TLSKey string
	// Every team's default quota (core.Quota; 0 = no limit); platform administrators
	// override it per team.
	QuotaSandboxes, QuotaVCPUs, QuotaMemoryMB, QuotaAPIKeys int
	// Signup is who may create an account: "open" (anyone, through POST
	// /v1/auth/signup) or "closed" (only an operator, `wrenn admin create-user`).
	Signup string
	// PublicURL is where users reach the control plane (http(s)://host[:port]):
	// sign-in providers send browsers back to it.
	PublicURL string
	// GitHub sign-in is on when the OAuth app's id and secret (or a file holding the
	// secret, read at start) are set.
	GitHubClientID, GitHubClientSecret, GitHubClientSecretFile string
	// GitHubURL is a GitHub Enterprise Server to sign in at instead of github.com
	// ("" = github.com).
	GitHubURL string
	// Metrics (Prometheus) are off unless MetricsListen names a listener of their own
	// or a MetricsToken (or a file holding it, read at start) opens /metrics on Listen
	// to that bearer token; with both, the own listener asks for the token too.
	MetricsListen, MetricsToken, MetricsTokenFile string
	Log                                           Log
}

// MinMetricsToken is the shortest metrics bearer token, set or read from a file: one
// an attacker could guess would publish the deployment's shape and traffic.
const MinMetricsToken = 16

// The largest quota limits (core.MaxQuota*; a test keeps them equal).
const (
	MaxQuotaSandboxes = 1_000_000
	MaxQuotaVCPUs     = 1 << 24
	MaxQuotaMemoryMB  = 1<<31 - 1
	MaxQuotaAPIKeys   = 1_000_000
)

// signupModes are the values of WRENN_SIGNUP.
var signupModes = []string{"open", "closed"}

// Scheduler names (internal/server/scheduler's; a test keeps the two lists equal).
var schedulers = []string{"least-loaded", "round-robin"}

func (c *Server) table() table {
	return table{program: "wrenn server", summary: "the control plane (`wrenn server`)", settings: append([]*Setting{
		{Flag: "listen", Env: "WRENN_LISTEN", Default: ":8080", Value: Addr(&c.Listen),
			Usage: "address to serve the API (and the port proxy) on"},
		{Env: "WRENN_TLS_CERT", Value: String(&c.TLSCert, 0),
			Usage: "PEM file of a certificate chain (leaf first) for WRENN_DOMAIN and *.WRENN_DOMAIN: WRENN_LISTEN then serves HTTPS (HTTP/2 and HTTP/1.1, TLS 1.2 or later) itself, for a single box without a reverse proxy; re-read when it or WRENN_TLS_KEY changes (renewals need no restart); empty: plain HTTP behind a proxy (deploy/Caddyfile)"},
		{Env: "WRENN_TLS_KEY", Value: String(&c.TLSKey, 0),
			Usage: "PEM file of WRENN_TLS_CERT's private key; set both or neither"},
		{Env: "WRENN_DATABASE_URL", Required: true, Redact: RedactURL, Value: String(&c.DatabaseURL, 0),
			Usage: "PostgreSQL connection URL (scripts/services.sh start prints it)"},
		{Env: "WRENN_REDIS_URL", Required: true, Redact: RedactURL, Value: URL(&c.RedisURL, "redis", "rediss", "unix"),
			Usage: "Redis URL (scripts/services.sh start prints it)"},
		{Env: "WRENN_JWT_SECRET", Required: true, Secret: true, Value: String(&c.JWTSecret, 32),
			Usage: "at least 32 characters: signs session tokens and seals the per-host secrets at rest (changing it means re-registering hosts)"},
		{Env: "WRENN_SCHEDULER", Default: "least-loaded", Value: OneOf(&c.Scheduler, schedulers...),
			Usage: "how new sandboxes are spread over online hosts: least-loaded or round-robin"},
		{Env: "WRENN_HOST_STALE_AFTER", Default: "90s", Value: Duration(&c.HostStaleAfter, time.Second),
			Usage: "a host silent this long becomes unreachable and its sandboxes missing; longer than the heartbeat interval"},
		{Env: "WRENN_HOST_HEARTBEAT_INTERVAL", Default: "30s", Value: Duration(&c.HostHeartbeatInterval, time.Second),
			Usage: "how often agents are told to send a heartbeat"},
		{Env: "WRENN_HOST_MONITOR_INTERVAL", Default: "10s", Value: Duration(&c.HostMonitorInterval, time.Second),
			Usage: "how often the control plane marks silent hosts unreachable and reconciles what online hosts run"},
		{Env: "WRENN_CREATE_GRACE", Default: "2m", Value: Duration(&c.CreateGrace, time.Second),
			Usage: "how long a create may go unrecorded before the host monitor settles it: a sandbox its host does not run becomes error (lost), one it runs becomes running (its control plane went away before recording the end)"},
		{Env: "WRENN_SERVER_FAULT_POINT", Value: String(&c.FaultPoint, 0),
			Usage: "for fault-injection tests only: sandbox operations that reach this point between their steps (e.g. create/booted, pause/begun) stop there until the server is killed or gets SIGUSR1; never set it on a real control plane"},
		{Env: "WRENN_ALLOW_INTERNET_DEFAULT", Default: "true", Value: Bool(&c.AllowInternetDefault),
			Usage: "internet access of sandboxes whose create does not say"},
		{Env: "WRENN_DOMAIN", Value: Domain(&c.Domain),
			Usage: "sandbox ports are served at {port}-{sandbox_id}.WRENN_DOMAIN (wildcard DNS; see deploy/Caddyfile); empty: only by E2b-Sandbox-* headers"},
		{Env: "WRENN_PROXY_CONN_LIMIT", Default: "1000", Value: Int(&c.ProxyConnLimit, 1, 1<<20),
			Usage: "concurrent proxied requests (and WebSockets) per sandbox on one control plane; past it, 429"},
		{Env: "WRENN_SIGNUP", Default: "open", Value: OneOf(&c.Signup, signupModes...),
			Usage: "who may create accounts: open (anyone, POST /v1/auth/signup) or closed (sign-up answers 403; an operator runs `wrenn admin create-user`)"},
		{Env: "WRENN_PUBLIC_URL", Value: BaseURL(&c.PublicURL),
			Usage: "the URL users reach the control plane at, like https://wrenn.example.com (http or https, no path): sign-in providers send browsers back to it, the dashboard's requests must come from its origin (or the host they are sent to), and when it is https the sign-in and session cookies are Secure (the session cookie then named __Host-wrenn_session), as they are when WRENN_LISTEN serves TLS itself; required with WRENN_GITHUB_CLIENT_ID"},
		{Env: "WRENN_GITHUB_CLIENT_ID", Value: String(&c.GitHubClientID, 0),
			Usage: "client ID of a GitHub OAuth app: with its secret, users sign in with GitHub (GET /v1/auth/oauth/github); register WRENN_PUBLIC_URL/v1/auth/oauth/github/callback as the app's callback URL; empty: no GitHub sign-in"},
		{Env: "WRENN_GITHUB_CLIENT_SECRET", Secret: true, Value: String(&c.GitHubClientSecret, 0),
			Usage: "the GitHub OAuth app's client secret"},
		{Env: "WRENN_GITHUB_CLIENT_SECRET_FILE", Value: String(&c.GitHubClientSecretFile, 0),
			Usage: "file holding the GitHub OAuth app's client secret, read at start (instead of WRENN_GITHUB_CLIENT_SECRET)"},
		{Env: "WRENN_GITHUB_URL", Value: BaseURL(&c.GitHubURL),
			Usage: "a GitHub Enterprise Server to sign in with instead of github.com, like https://github.example.com (its REST API at /api/v3); empty: github.com"},
		{Env: "WRENN_METRICS_LISTEN", Value: Addr(&c.MetricsListen),
			Usage: "address of a listener of its own serving Prometheus metrics at /metrics (plain HTTP; bind it to loopback or a private network, e.g. 127.0.0.1:9464); empty: none"},
		{Env: "WRENN_METRICS_TOKEN", Secret: true, Value: String(&c.MetricsToken, MinMetricsToken),
			Usage: "bearer token a scrape of /metrics must send (Authorization: Bearer …), at least 16 characters: /metrics then also answers on WRENN_LISTEN; empty, and no WRENN_METRICS_LISTEN: no metrics, /metrics is an unknown route"},
		{Env: "WRENN_METRICS_TOKEN_FILE", Value: String(&c.MetricsTokenFile, 0),
			Usage: "file holding the metrics bearer token, read at start (instead of WRENN_METRICS_TOKEN)"},
		{Env: "WRENN_TRUSTED_PROXIES", Value: Prefixes(&c.TrustedProxies),
			Usage: "reverse proxies (IPs or CIDRs, comma-separated) whose X-Forwarded-For names the client the login and sign-up limits count by, e.g. 127.0.0.1 behind deploy/Caddyfile; empty: the TCP peer is the client"},
		{Env: "WRENN_QUOTA_SANDBOXES", Default: "20", Value: Int(&c.QuotaSandboxes, 0, MaxQuotaSandboxes),
			Usage: "sandboxes a team may hold at once (all but stopped and failed ones, paused included); past it, creates answer 429; 0: no limit; platform administrators override it per team (PATCH /v1/teams/{id}/quotas)"},
		{Env: "WRENN_QUOTA_VCPUS", Default: "40", Value: Int(&c.QuotaVCPUs, 0, MaxQuotaVCPUs),
			Usage: "vCPUs of those sandboxes a team may hold, in total; 0: no limit; overridable per team"},
		{Env: "WRENN_QUOTA_MEMORY_MB", Default: "65536", Value: Int(&c.QuotaMemoryMB, 0, MaxQuotaMemoryMB),
			Usage: "memory (MB) of those sandboxes a team may hold, in total; 0: no limit; overridable per team"},
		{Env: "WRENN_QUOTA_API_KEYS", Default: "50", Value: Int(&c.QuotaAPIKeys, 0, MaxQuotaAPIKeys),
			Usage: "API keys (not revoked) a team may have; 0: no limit; overridable per team"},
	}, logSettings(&c.Log)...)}
}

// LoadServer reads the control plane's configuration from flags (args, without the
// subcommand) and the environment, and validates it.
func LoadServer(args []string, getenv func(string) string) (Server, error) {
	var c Server
	if err := c.table().load(args, getenv); err != nil {
		return Server{}, err
	}
	return c, c.Validate()
}

// Validate checks every setting; the error names the one at fault.
func (c Server) Validate() error {
	if err := c.table().check(); err != nil {
		return err
	}
	// The pair itself is read by wrenn server at start (internal/tlsfiles), which keeps
	// Validate free of file access for configs built by hand.
	if set, missing := "WRENN_TLS_CERT", "WRENN_TLS_KEY"; (c.TLSCert == "") != (c.TLSKey == "") {
		if c.TLSCert == "" {
			set, missing = missing, set
		}
		return fmt.Errorf("%s is set but %s is not: serving TLS needs both the certificate chain and its private key", set, missing)
	}
	if err := c.checkGitHub(); err != nil {
		return err
	}
	if err := checkMetrics(metricsVars{"WRENN_METRICS_LISTEN", "WRENN_METRICS_TOKEN", "WRENN_METRICS_TOKEN_FILE"}, c.Listen, c.MetricsListen, c.MetricsToken, c.MetricsTokenFile); err != nil {
		return err
	}
	if c.HostStaleAfter <= c.HostHeartbeatInterval {
		return fmt.Errorf("WRENN_HOST_STALE_AFTER (%v) must be longer than WRENN_HOST_HEARTBEAT_INTERVAL (%v), or every host turns unreachable between heartbeats",
			c.HostStaleAfter, c.HostHeartbeatInterval)
	}
	return nil
}

// checkGitHub: GitHub sign-in needs the app's id, one source of its secret, and the
// public URL GitHub sends browsers back to; half a configuration is an error rather
// than a silently missing sign-in.
func (c Server) checkGitHub() error {
	secret := c.GitHubClientSecret != "" || c.GitHubClientSecretFile != ""
	switch {
	case c.GitHubClientSecret != "" && c.GitHubClientSecretFile != "":
		return errors.New("WRENN_GITHUB_CLIENT_SECRET and WRENN_GITHUB_CLIENT_SECRET_FILE are both set: set one")
	case c.GitHubClientID == "" && secret:
		return errors.New("WRENN_GITHUB_CLIENT_SECRET is set but WRENN_GITHUB_CLIENT_ID is not: GitHub sign-in needs both")
	case c.GitHubClientID != "" && !secret:
		return errors.New("WRENN_GITHUB_CLIENT_ID is set but WRENN_GITHUB_CLIENT_SECRET (or WRENN_GITHUB_CLIENT_SECRET_FILE) is not: GitHub sign-in needs both")
	case c.GitHubClientID == "" && c.GitHubURL != "":
		return errors.New("WRENN_GITHUB_URL is set but WRENN_GITHUB_CLIENT_ID is not: GitHub sign-in needs an app")
	case c.GitHubClientID != "" && c.PublicURL == "":
		return errors.New("WRENN_PUBLIC_URL is required with WRENN_GITHUB_CLIENT_ID: GitHub sends browsers back to WRENN_PUBLIC_URL/v1/auth/oauth/github/callback")
	}
	return nil
}

// metricsVars are the names of a program's metrics settings, for checkMetrics's errors.
type metricsVars struct{ listen, token, tokenFile string }

// checkMetrics: one source of the token, and a metrics listener apart from the
// program's own (the same address would fail to bind at start, after slower work).
func checkMetrics(v metricsVars, listen, metricsListen, token, tokenFile string) error {
	if token != "" && tokenFile != "" {
		return fmt.Errorf("%s and %s are both set: set one", v.token, v.tokenFile)
	}
	if metricsListen != "" && metricsListen == listen {
		return fmt.Errorf("%s (%s) is the address the API listens on: metrics need a listener of their own, or leave it empty and set %s", v.listen, metricsListen, v.token)
	}
	return nil
}

// LogValue is every setting by its name, secrets redacted.
func (c Server) LogValue() slog.Value { return c.table().logValue() }
