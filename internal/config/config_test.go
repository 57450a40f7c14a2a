package config

import (
	"bytes"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// serverEnv is the least a control plane needs, plus kv.
func serverEnv(kv ...string) func(string) string {
	return env(append([]string{
		"WRENN_DATABASE_URL", "postgres://wrenn:pgpass-0000@127.0.0.1:5432/wrenn?sslmode=disable",
		"WRENN_REDIS_URL", "redis://:redispass-0000@127.0.0.1:6379/0",
		"WRENN_JWT_SECRET", "jwt-0123456789abcdef0123456789abcdef",
	}, kv...)...)
}

// The defaults are exactly the ones the programs had before this package.
func TestDefaults(t *testing.T) {
	s, err := LoadServer(nil, serverEnv())
	if err != nil {
		t.Fatal(err)
	}
	if s.Listen != ":8080" || s.Scheduler != "least-loaded" || s.HostStaleAfter != 90*time.Second ||
		s.HostHeartbeatInterval != 30*time.Second || s.HostMonitorInterval != 10*time.Second ||
		!s.AllowInternetDefault || s.Domain != "" || s.TLSCert != "" || s.TLSKey != "" || s.ProxyConnLimit != 1000 ||
		s.QuotaSandboxes != 20 || s.QuotaVCPUs != 40 || s.QuotaMemoryMB != 65536 || s.QuotaAPIKeys != 50 ||
		s.Log != (Log{Level: slog.LevelInfo, Format: "text"}) {
		t.Errorf("server defaults: %+v", s)
	}
	s, err = LoadServer(nil, serverEnv("WRENN_TRUSTED_PROXIES", " 127.0.0.1, ::1,10.1.2.3/8"))
	if got := fmt.Sprint(s.TrustedProxies); err != nil || got != "[127.0.0.1/32 ::1/128 10.0.0.0/8]" {
		t.Errorf("WRENN_TRUSTED_PROXIES: %s %v", got, err)
	}
	// Both TLS files set is valid here; wrenn server reads them at start.
	s, err = LoadServer(nil, serverEnv("WRENN_TLS_CERT", "/etc/wrenn/fullchain.pem", "WRENN_TLS_KEY", "/etc/wrenn/privkey.pem"))
	if err != nil || s.TLSCert != "/etc/wrenn/fullchain.pem" || s.TLSKey != "/etc/wrenn/privkey.pem" {
		t.Errorf("WRENN_TLS_CERT and WRENN_TLS_KEY: %q %q %v", s.TLSCert, s.TLSKey, err)
	}
	a, err := LoadAgent(nil, env())
	if err != nil {
		t.Fatal(err)
	}
	want := Agent{Dir: "/var/lib/wrenn", Listen: ":50051", StateDir: "/var/lib/wrenn/agent", VMM: "auto", CPUOvercommit: 4,
		FirstSlot: 1, SlotPool: 4, AllowInternetDefault: true, WarmStart: true, ReapInterval: time.Second,
		Jail: true, JailUIDBase: 1000000000, Cgroup: "wrenn", VMMMemoryOverhead: 256, VMMPids: 512, DiskMiBPerSec: 256, DiskIOPS: 8000, Log: Log{Format: "text"}}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("agent defaults:\n got %+v\nwant %+v", a, want)
	}
	a, err = LoadAgent([]string{"--egress-deny", "10.1.0.0/16"}, env("WRENN_EGRESS_ALLOW", "10.0.0.0/8, 192.168.1.5"))
	if got := fmt.Sprint(a.EgressAllow, a.EgressDeny); err != nil || got != "[10.0.0.0/8 192.168.1.5/32] [10.1.0.0/16]" {
		t.Errorf("egress settings: %s %v", got, err)
	}
	if _, err := LoadAgent(nil, env("WRENN_EGRESS_ALLOW", "10.0.0.0/33")); err == nil || !strings.Contains(err.Error(), "WRENN_EGRESS_ALLOW") {
		t.Errorf("a bad egress range: %v", err)
	}
	if a, _ := LoadAgent(nil, env("WRENN_DIR", "/srv/w")); a.StateDir != "/srv/w/agent" {
		t.Errorf("state dir under WRENN_DIR=/srv/w: %q", a.StateDir)
	}
	e, err := LoadEnvd(nil, env())
	if err != nil {
		t.Fatal(err)
	}
	if e != (Envd{Port: 49983, ForwardLoopback: true, RunDir: "/run/e2b", Log: Log{Format: "text"}}) || e.ListenAddr() != ":49983" {
		t.Errorf("envd defaults: %+v, listen %q", e, e.ListenAddr())
	}
	c, err := LoadCLI(env())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, CLI{Dir: "/var/lib/wrenn", VMM: "auto", Log: Log{Format: "text"}}) {
		t.Errorf("CLI defaults: %+v", c)
	}
}

func TestPrecedence(t *testing.T) {
	// default < environment < flag
	a, err := LoadAgent(nil, env("WRENN_AGENT_LISTEN", "127.0.0.1:1"))
	if err != nil || a.Listen != "127.0.0.1:1" {
		t.Errorf("env over default: %q, %v", a.Listen, err)
	}
	a, err = LoadAgent([]string{"--listen", "127.0.0.1:2", "-first-slot=7"}, env("WRENN_AGENT_LISTEN", "127.0.0.1:1", "WRENN_AGENT_FIRST_SLOT", "3"))
	if err != nil || a.Listen != "127.0.0.1:2" || a.FirstSlot != 7 {
		t.Errorf("flag over env: %q %d, %v", a.Listen, a.FirstSlot, err)
	}
	// An empty variable is unset, as before.
	a, err = LoadAgent(nil, env("WRENN_AGENT_LISTEN", "", "WRENN_ALLOW_INTERNET_DEFAULT", ""))
	if err != nil || a.Listen != ":50051" || !a.AllowInternetDefault {
		t.Errorf("empty variables: %+v, %v", a, err)
	}
	// A bare boolean flag is true; --flag=false beats the variable.
	a, err = LoadAgent([]string{"--allow-internet-default"}, env("WRENN_ALLOW_INTERNET_DEFAULT", "false"))
	if err != nil || !a.AllowInternetDefault {
		t.Errorf("bare bool flag: %v, %v", a.AllowInternetDefault, err)
	}
	a, err = LoadAgent([]string{"--allow-internet-default=false"}, env("WRENN_ALLOW_INTERNET_DEFAULT", "true"))
	if err != nil || a.AllowInternetDefault {
		t.Errorf("--allow-internet-default=false: %v, %v", a.AllowInternetDefault, err)
	}
	// An explicit --state-dir is kept.
	if a, _ := LoadAgent([]string{"--state-dir", "/x"}, env()); a.StateDir != "/x" {
		t.Errorf("--state-dir: %q", a.StateDir)
	}
	s, err := LoadServer([]string{"--listen", "127.0.0.1:9", "--log-format", "json"}, serverEnv("WRENN_LISTEN", ":1", "WRENN_LOG_LEVEL", "debug", "WRENN_LOG_FORMAT", "text"))
	if err != nil || s.Listen != "127.0.0.1:9" || s.Log != (Log{Level: slog.LevelDebug, Format: "json"}) {
		t.Errorf("server: %+v, %v", s, err)
	}
	// envd: --debug keeps working and means --log-level debug.
	e, err := LoadEnvd([]string{"--debug", "--addr", "127.0.0.1:5"}, env("WRENN_LOG_LEVEL", "error"))
	if err != nil || e.Log.Level != slog.LevelDebug || e.ListenAddr() != "127.0.0.1:5" {
		t.Errorf("envd --debug: %+v, %v", e, err)
	}
	if e, _ := LoadEnvd([]string{"-log-level", "warn"}, env()); e.Log.Level != slog.LevelWarn {
		t.Errorf("envd -log-level warn: %v", e.Log.Level)
	}
}

// Bad values fail with an error that names the setting and says what is wanted.
func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"stale", load(LoadServer(nil, serverEnv("WRENN_HOST_STALE_AFTER", "abc"))), `WRENN_HOST_STALE_AFTER="abc": want a duration of at least 1s`},
		{"stale short", load(LoadServer(nil, serverEnv("WRENN_HOST_STALE_AFTER", "500ms"))), `WRENN_HOST_STALE_AFTER="500ms": want a duration`},
		{"stale vs heartbeat", load(LoadServer(nil, serverEnv("WRENN_HOST_STALE_AFTER", "20s"))), "WRENN_HOST_STALE_AFTER (20s) must be longer than WRENN_HOST_HEARTBEAT_INTERVAL (30s)"},
		{"conn limit", load(LoadServer(nil, serverEnv("WRENN_PROXY_CONN_LIMIT", "lots"))), `WRENN_PROXY_CONN_LIMIT="lots": want a whole number from 1`},
		{"conn limit 0", load(LoadServer(nil, serverEnv("WRENN_PROXY_CONN_LIMIT", "0"))), `WRENN_PROXY_CONN_LIMIT="0"`},
		{"trusted proxies", load(LoadServer(nil, serverEnv("WRENN_TRUSTED_PROXIES", "127.0.0.1,10.0.0.0/33"))), `WRENN_TRUSTED_PROXIES="127.0.0.1,10.0.0.0/33": "10.0.0.0/33": want IP addresses or CIDR blocks`},
		{"quota negative", load(LoadServer(nil, serverEnv("WRENN_QUOTA_SANDBOXES", "-1"))), `WRENN_QUOTA_SANDBOXES="-1": want a whole number from 0 to 1000000`},
		{"quota too big", load(LoadServer(nil, serverEnv("WRENN_QUOTA_MEMORY_MB", "4294967296"))), `WRENN_QUOTA_MEMORY_MB="4294967296": want a whole number from 0 to 2147483647`},
		{"internet", load(LoadServer(nil, serverEnv("WRENN_ALLOW_INTERNET_DEFAULT", "yes"))), `WRENN_ALLOW_INTERNET_DEFAULT="yes": want true or false`},
		{"scheduler", load(LoadServer(nil, serverEnv("WRENN_SCHEDULER", "random"))), `WRENN_SCHEDULER="random": want one of least-loaded, round-robin`},
		{"domain", load(LoadServer(nil, serverEnv("WRENN_DOMAIN", "https://wrenn.example.com"))), `WRENN_DOMAIN="https://wrenn.example.com": want a bare domain`},
		{"redis", load(LoadServer(nil, serverEnv("WRENN_REDIS_URL", "127.0.0.1:6379"))), `WRENN_REDIS_URL="127.0.0.1:6379": want a URL starting redis:// or rediss:// or unix://`},
		{"no db", load(LoadServer(nil, serverEnv("WRENN_DATABASE_URL", ""))), "WRENN_DATABASE_URL is required"},
		{"no jwt", load(LoadServer(nil, serverEnv("WRENN_JWT_SECRET", ""))), "WRENN_JWT_SECRET is required"},
		{"short jwt", load(LoadServer(nil, serverEnv("WRENN_JWT_SECRET", "short"))), "WRENN_JWT_SECRET: want at least 32 characters"},
		{"listen flag", load(LoadServer([]string{"--listen", "8080"}, serverEnv())), `--listen="8080": want host:port`},
		{"log level", load(LoadServer(nil, serverEnv("WRENN_LOG_LEVEL", "verbose"))), `WRENN_LOG_LEVEL="verbose": want debug, info, warn or error`},
		{"log format", load(LoadServer(nil, serverEnv("WRENN_LOG_FORMAT", "xml"))), `WRENN_LOG_FORMAT="xml": want one of text, json`},
		{"unknown flag", load(LoadServer([]string{"--nope"}, serverEnv())), "flag provided but not defined: -nope"},
		{"stray argument", load(LoadServer([]string{"extra"}, serverEnv())), `unexpected argument "extra"`},
		{"tls cert only", load(LoadServer(nil, serverEnv("WRENN_TLS_CERT", "/etc/wrenn/fullchain.pem"))), "WRENN_TLS_CERT is set but WRENN_TLS_KEY is not"},
		{"tls key only", load(LoadServer(nil, serverEnv("WRENN_TLS_KEY", "/etc/wrenn/privkey.pem"))), "WRENN_TLS_KEY is set but WRENN_TLS_CERT is not"},
		{"public url path", load(LoadServer(nil, serverEnv("WRENN_PUBLIC_URL", "https://wrenn.example.com/app"))), `WRENN_PUBLIC_URL="https://wrenn.example.com/app": want an http or https URL of a host`},
		{"public url query", load(LoadServer(nil, serverEnv("WRENN_PUBLIC_URL", "https://wrenn.example.com/?a=b"))), `WRENN_PUBLIC_URL="https://wrenn.example.com/?a=b"`},
		{"public url fragment", load(LoadServer(nil, serverEnv("WRENN_PUBLIC_URL", "https://wrenn.example.com#x"))), `WRENN_PUBLIC_URL="https://wrenn.example.com#x"`},
		{"public url relative", load(LoadServer(nil, serverEnv("WRENN_PUBLIC_URL", "wrenn.example.com"))), `WRENN_PUBLIC_URL="wrenn.example.com"`},
		{"public url scheme", load(LoadServer(nil, serverEnv("WRENN_PUBLIC_URL", "ftp://wrenn.example.com"))), `WRENN_PUBLIC_URL="ftp://wrenn.example.com"`},
		{"public url no host", load(LoadServer(nil, serverEnv("WRENN_PUBLIC_URL", "https:///x"))), `WRENN_PUBLIC_URL="https:///x"`},
		{"github id only", load(LoadServer(nil, serverEnv("WRENN_GITHUB_CLIENT_ID", "Iv1.x", "WRENN_PUBLIC_URL", "https://w.example"))), "WRENN_GITHUB_CLIENT_ID is set but WRENN_GITHUB_CLIENT_SECRET"},
		{"github secret only", load(LoadServer(nil, serverEnv("WRENN_GITHUB_CLIENT_SECRET", "s"))), "WRENN_GITHUB_CLIENT_SECRET is set but WRENN_GITHUB_CLIENT_ID is not"},
		{"github two secrets", load(LoadServer(nil, serverEnv("WRENN_GITHUB_CLIENT_ID", "Iv1.x", "WRENN_GITHUB_CLIENT_SECRET", "s", "WRENN_GITHUB_CLIENT_SECRET_FILE", "/etc/wrenn/gh"))), "both set"},
		{"github url without id", load(LoadServer(nil, serverEnv("WRENN_GITHUB_URL", "https://github.example.com"))), "WRENN_GITHUB_URL is set but WRENN_GITHUB_CLIENT_ID is not"},
		{"github url with a path", load(LoadServer(nil, serverEnv("WRENN_GITHUB_URL", "https://github.example.com/api/v3"))), "WRENN_GITHUB_URL"},
		{"github without public url", load(LoadServer(nil, serverEnv("WRENN_GITHUB_CLIENT_ID", "Iv1.x", "WRENN_GITHUB_CLIENT_SECRET", "s"))), "WRENN_PUBLIC_URL is required with WRENN_GITHUB_CLIENT_ID"},
		{"metrics listen", load(LoadServer(nil, serverEnv("WRENN_METRICS_LISTEN", "9464"))), `WRENN_METRICS_LISTEN="9464": want host:port`},
		{"metrics listen is the api's", load(LoadServer([]string{"--listen", "127.0.0.1:8080"}, serverEnv("WRENN_METRICS_LISTEN", "127.0.0.1:8080"))), "WRENN_METRICS_LISTEN (127.0.0.1:8080) is the address the API listens on"},
		{"metrics token short", load(LoadServer(nil, serverEnv("WRENN_METRICS_TOKEN", "short"))), "WRENN_METRICS_TOKEN: want at least 16 characters"},
		{"metrics two tokens", load(LoadServer(nil, serverEnv("WRENN_METRICS_TOKEN", "0123456789abcdef", "WRENN_METRICS_TOKEN_FILE", "/etc/wrenn/metrics-token"))), "WRENN_METRICS_TOKEN and WRENN_METRICS_TOKEN_FILE are both set"},
		{"agent metrics listen", load(LoadAgent([]string{"--metrics-listen", "x"}, env())), `--metrics-listen="x": want host:port`},
		{"agent metrics listen is the api's", load(LoadAgent([]string{"--metrics-listen", ":50051"}, env())), "--metrics-listen/WRENN_AGENT_METRICS_LISTEN (:50051) is the address the API listens on"},
		{"agent metrics two tokens", load(LoadAgent([]string{"--metrics-token-file", "/x"}, env("WRENN_AGENT_METRICS_TOKEN", "0123456789abcdef"))), "WRENN_AGENT_METRICS_TOKEN and --metrics-token-file/WRENN_AGENT_METRICS_TOKEN_FILE are both set"},
		{"vmm", load(LoadAgent([]string{"--vmm", "kvm"}, env())), `--vmm="kvm": want one of auto, qemu, firecracker`},
		{"vmm env", load(LoadAgent(nil, env("WRENN_VMM", "xen"))), `WRENN_VMM="xen": want one of auto, qemu, firecracker`},
		{"reap", load(LoadAgent([]string{"--reap-interval", "0s"}, env())), `--reap-interval="0s": want a duration of at least 1ms`},
		{"first slot", load(LoadAgent([]string{"--first-slot", "0"}, env())), `--first-slot="0": want a whole number from 1 to 65534`},
		{"slot range", load(LoadAgent([]string{"--first-slot", "10", "--last-slot", "5"}, env())), "--last-slot/WRENN_AGENT_LAST_SLOT (5) is below --first-slot/WRENN_AGENT_FIRST_SLOT (10)"},
		{"overcommit", load(LoadAgent(nil, env("WRENN_AGENT_CPU_OVERCOMMIT", "x"))), `WRENN_AGENT_CPU_OVERCOMMIT="x": want a whole number`},
		{"internet flag", load(LoadAgent([]string{"--allow-internet-default=maybe"}, env())), `--allow-internet-default="maybe": want true or false`},
		{"server url", load(LoadAgent([]string{"--server", "cp:8080"}, env())), `--server="cp:8080": want a URL starting http:// or https://`},
		{"agent secret", load(LoadAgent(nil, env("WRENN_AGENT_SECRET", "tiny"))), "WRENN_AGENT_SECRET: want at least 16 characters"},
		{"envd port", load(LoadEnvd([]string{"--port", "70000"}, env())), `--port="70000": want a whole number from 0 to 65535`},
		{"envd debug", load(LoadEnvd([]string{"--debug=perhaps"}, env())), `--debug="perhaps": want true or false`},
		{"cli url", load(LoadCLI(env("WRENN_URL", "localhost:8080"))), `WRENN_URL="localhost:8080": want a URL starting http:// or https://`},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, tc.err, tc.want)
		}
	}
	// Secrets are not echoed in errors.
	if err := load(LoadServer(nil, serverEnv("WRENN_JWT_SECRET", "hunter2-secret"))); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("short JWT secret: %v", err)
	}
}

func load[T any](_ T, err error) error { return err }

// GitHub sign-in is configured by the app's id, its secret (or a file) and the public
// URL; the secret is never logged.
func TestGitHubSignIn(t *testing.T) {
	for _, kv := range [][]string{
		{"WRENN_GITHUB_CLIENT_SECRET", "gh-secret-0000"},
		{"WRENN_GITHUB_CLIENT_SECRET_FILE", "/etc/wrenn/github-secret"},
	} {
		s, err := LoadServer(nil, serverEnv(append([]string{"WRENN_GITHUB_CLIENT_ID", "Iv1.abc", "WRENN_PUBLIC_URL", "https://wrenn.example.com/"}, kv...)...))
		if err != nil {
			t.Fatalf("%v: %v", kv, err)
		}
		if s.GitHubClientID != "Iv1.abc" || s.PublicURL != "https://wrenn.example.com/" || s.GitHubClientSecret+s.GitHubClientSecretFile != kv[1] {
			t.Errorf("%v: %+v", kv, s)
		}
		var buf bytes.Buffer
		Log{}.New(&buf).Info("starting", "config", s)
		if strings.Contains(buf.String(), "gh-secret-0000") {
			t.Errorf("the log shows the client secret: %s", buf.String())
		}
	}
	for _, ok := range []string{"http://127.0.0.1:8080", "https://wrenn.example.com", "https://wrenn.example.com/"} {
		if _, err := LoadServer(nil, serverEnv("WRENN_PUBLIC_URL", ok)); err != nil {
			t.Errorf("WRENN_PUBLIC_URL=%s: %v", ok, err)
		}
	}
}

// Every setting that can be wrong fails by its own name, from the environment and as a
// flag: nothing is silently ignored.
func TestEverySettingNamesItself(t *testing.T) {
	bad := []string{"not valid!", "-1", "99999999", "x"}
	loaders := map[string]func(args []string, getenv func(string) string) error{
		"wrenn server": func(a []string, g func(string) string) error {
			_, err := LoadServer(a, func(k string) string {
				if v := g(k); v != "" {
					return v
				}
				return serverEnv()(k)
			})
			return err
		},
		"wrenn agent": func(a []string, g func(string) string) error { _, err := LoadAgent(a, g); return err },
		"envd":        func(a []string, g func(string) string) error { _, err := LoadEnvd(a, g); return err },
		"wrenn":       func(a []string, g func(string) string) error { _, err := LoadCLI(g); return err },
	}
	checked := 0
	for _, tb := range tables() {
		loadFn := loaders[tb.program]
		if loadFn == nil {
			t.Fatalf("no loader for %s", tb.program)
		}
		for _, s := range tb.settings {
			i := slices.IndexFunc(bad, func(v string) bool { return s.Value.Set(v) != nil })
			if i < 0 {
				continue // free text
			}
			v := bad[i]
			if s.Env != "" {
				err := loadFn(nil, env(s.Env, v))
				if err == nil || !strings.HasPrefix(err.Error(), s.Env) {
					t.Errorf("%s: %s=%q: %v", tb.program, s.Env, v, err)
				}
				checked++
			}
			if s.Flag != "" && tb.program != "wrenn" {
				err := loadFn([]string{"--" + s.Flag + "=" + v}, env())
				if err == nil || !strings.HasPrefix(err.Error(), "--"+s.Flag) {
					t.Errorf("%s: --%s=%q: %v", tb.program, s.Flag, v, err)
				}
				checked++
			}
		}
	}
	if checked < 40 {
		t.Errorf("only %d bad values checked", checked)
	}
}

// A config built by hand gets the same checks.
func TestValidate(t *testing.T) {
	s, err := LoadServer(nil, serverEnv())
	if err != nil {
		t.Fatal(err)
	}
	s.HostMonitorInterval = 0
	if err := s.Validate(); err == nil || !strings.HasPrefix(err.Error(), `WRENN_HOST_MONITOR_INTERVAL="0s"`) {
		t.Errorf("monitor interval 0: %v", err)
	}
	if err := (Agent{}).Validate(); err == nil || !strings.HasPrefix(err.Error(), "WRENN_AGENT_CPU_OVERCOMMIT") {
		t.Errorf("zero agent: %v", err)
	}
}

func TestRedaction(t *testing.T) {
	secrets := []string{"metrics-token-0000", "agent-metrics-token-0000", "pgpass-0000", "redispass-0000", "jwt-0123456789abcdef0123456789abcdef", "wrh_hosttoken", "agent-secret-0123456789", "key-wrn_apikey", "pw-correct-horse", "kvpass"}
	s, err := LoadServer(nil, serverEnv("WRENN_METRICS_TOKEN", "metrics-token-0000"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := LoadAgent([]string{"--token", "wrh_hosttoken"}, env("WRENN_AGENT_SECRET", "agent-secret-0123456789", "WRENN_AGENT_METRICS_TOKEN", "agent-metrics-token-0000"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := LoadCLI(env("WRENN_API_KEY", "key-wrn_apikey", "WRENN_PASSWORD", "pw-correct-horse", "WRENN_DATABASE_URL", "host=db user=wrenn password=kvpass dbname=wrenn"))
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"text", "json"} {
		var buf bytes.Buffer
		log := Log{Format: format}.New(&buf)
		log.Info("starting", "config", s)
		log.Info("starting", "config", a)
		log.Info("starting", "config", c)
		out := buf.String()
		for _, secret := range secrets {
			if strings.Contains(out, secret) {
				t.Errorf("%s log shows %q:\n%s", format, secret, out)
			}
		}
		for _, shown := range []string{"WRENN_HOST_STALE_AFTER", "1m30s", "127.0.0.1:5432", "REDACTED", "host=db", "/var/lib/wrenn/agent"} {
			if !strings.Contains(out, shown) {
				t.Errorf("%s log lacks %q:\n%s", format, shown, out)
			}
		}
	}
	for in, want := range map[string]string{
		"postgres://wrenn:pw@h:5432/wrenn?sslmode=disable": "postgres://wrenn:REDACTED@h:5432/wrenn?sslmode=disable",
		"postgres://wrenn@h/wrenn?password=pw":             "postgres://wrenn@h/wrenn?password=REDACTED",
		"redis://:pw@h:6379/0":                             "redis://:REDACTED@h:6379/0",
		"redis://h:6379/0":                                 "redis://h:6379/0",
		"host=h password='p w' user=u":                     "host=h password=REDACTED user=u",
		"host=h PASSWORD = pw":                             "host=h PASSWORD = REDACTED",
		"postgres://u:p%zz@h/db":                           "REDACTED",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// Every table is well formed: complete, names unique, defaults parse.
func TestTables(t *testing.T) {
	for _, tb := range tables() {
		flags, envs := map[string]bool{}, map[string]bool{}
		for _, s := range tb.settings {
			if s.Flag == "" && s.Env == "" || s.Usage == "" || s.Value == nil {
				t.Errorf("%s: incomplete setting %+v", tb.program, s)
			}
			if flags[s.Flag] && s.Flag != "" || envs[s.Env] && s.Env != "" {
				t.Errorf("%s: %s declared twice", tb.program, s.Name())
			}
			flags[s.Flag], envs[s.Env] = true, true
			if s.Env != "" && !strings.HasPrefix(s.Env, "WRENN_") {
				t.Errorf("%s: %s is not a WRENN_ variable", tb.program, s.Env)
			}
			if s.Default != "" {
				if err := s.Value.Set(s.Default); err != nil {
					t.Errorf("%s: default of %s: %v", tb.program, s.Name(), err)
				}
			}
		}
	}
}
