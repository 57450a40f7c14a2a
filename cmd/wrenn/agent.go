package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/wrennhq/wrenn/internal/agent"
	"github.com/wrennhq/wrenn/internal/agent/proxy"
	"github.com/wrennhq/wrenn/internal/agent/rpc"
	"github.com/wrennhq/wrenn/internal/hostproto"
	"github.com/wrennhq/wrenn/internal/netslot"
	"github.com/wrennhq/wrenn/internal/rootfs"
	"github.com/wrennhq/wrenn/internal/version"
	"github.com/wrennhq/wrenn/internal/vmm"
	"github.com/wrennhq/wrenn/internal/vmm/drivers"
)

func agentCmd(ctx context.Context, log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("wrenn agent", flag.ContinueOnError)
	listen := fs.String("listen", envOr("WRENN_AGENT_LISTEN", ":50051"), "address to serve the agent API on")
	secretFile := fs.String("secret-file", os.Getenv("WRENN_AGENT_SECRET_FILE"), "standalone (unregistered) agent: file holding the bearer secret callers present (or set WRENN_AGENT_SECRET)")
	server := fs.String("server", os.Getenv("WRENN_SERVER_URL"), "control plane URL to register with (with --token)")
	token := fs.String("token", os.Getenv("WRENN_HOST_TOKEN"), "one-time registration token from POST /v1/hosts")
	advertise := fs.String("advertise", os.Getenv("WRENN_AGENT_ADVERTISE"), "host:port the control plane dials (default: the --listen address)")
	stateDir := fs.String("state-dir", os.Getenv("WRENN_AGENT_STATE_DIR"), "where the agent keeps its TLS identity and host credentials (default WRENN_DIR/agent)")
	cpuOvercommit := fs.Int("cpu-overcommit", 4, "vCPUs offered per host CPU (sandboxes are mostly idle)")
	firstSlot := fs.Int("first-slot", 1, "lowest network slot index this agent uses")
	lastSlot := fs.Int("last-slot", 0, "highest network slot index this agent uses (default: the range's end)")
	poolSize := fs.Int("slot-pool", 4, "network slots kept ready (internet off); as many again with internet on when that is the default")
	internet := fs.Bool("allow-internet-default", envBool("WRENN_ALLOW_INTERNET_DEFAULT", true), "egress for sandboxes whose create does not say")
	reap := fs.Duration("reap-interval", time.Second, "how often idle sandboxes are looked for")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// One agent per WRENN_DIR: a second would adopt, and fight over, the first's sandboxes.
	unlock, err := lockDir(wrennDir())
	if err != nil {
		return err
	}
	defer unlock()
	id, err := agentIdentity(ctx, log, identityOptions{
		dir: *stateDir, secretFile: *secretFile, server: *server, token: *token, advertise: *advertise, listen: *listen,
		capacity: hostCapacity(*cpuOvercommit),
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	ready, readyInternet := *poolSize, 0
	if *internet {
		ready, readyInternet = 1, *poolSize
	}
	pool, err := netslot.NewPool(netslot.DefaultConfig(), netslot.PoolOptions{
		Size: ready, InternetSize: readyInternet, FirstIndex: *firstSlot, LastIndex: *lastSlot,
	})
	if err != nil {
		return err
	}
	// Ready slots are destroyed on exit; slots of running sandboxes stay for the next agent.
	defer func() {
		if err := pool.Close(); err != nil {
			log.Warn("close slot pool", "err", err)
		}
	}()
	driver, err := drivers.Open(envOr("WRENN_VMM", vmm.Auto), vmm.Options{Logger: log})
	if err != nil {
		return err
	}
	m, err := agent.New(agent.Config{
		Dir: wrennDir(), Driver: driver, Slots: pool, Disks: rootfs.CloneDisks{},
		Log: log, AllowInternetDefault: *internet,
	})
	if err != nil {
		return err
	}
	rep, err := m.Recover(ctx)
	if err != nil {
		return err
	}
	// Namespaces in our range that no adopted sandbox owns are leftovers of a crash.
	if err := pool.Reclaim(m.InUse); err != nil {
		log.Warn("reclaim leftover network slots", "err", err)
	}
	log.Info("recovered sandboxes", "adopted", len(rep.Adopted), "cleaned", len(rep.Cleaned))
	m.StartReaper(*reap)
	defer m.Close()

	mux := http.NewServeMux()
	mux.Handle(rpc.Handler(m, id.allowed))
	mux.Handle(proxy.Prefix, proxy.New(m, id.allowed, log))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second}
	if id.tls != nil {
		// A registered agent serves TLS with the certificate the control plane pinned.
		srv.TLSConfig = id.tls
		ln = tls.NewListener(ln, id.tls)
	} else {
		var protocols http.Protocols
		protocols.SetHTTP1(true)
		protocols.SetUnencryptedHTTP2(true) // client streams (file uploads) need HTTP/2
		srv.Protocols = &protocols
	}
	if id.heartbeat != nil {
		id.heartbeat.Report = func() hostproto.HeartbeatRequest {
			return hostproto.HeartbeatRequest{Version: version.Version, Capacity: hostCapacity(*cpuOvercommit), Sandboxes: len(m.List())}
		}
		go id.heartbeat.Run(ctx)
	}
	// Sandboxes keep running across an agent restart; only the API goes away.
	return serve(ctx, log.With("dir", wrennDir()), "agent", srv, ln, 5*time.Second)
}

// lockDir takes an exclusive lock on dir/agent.lock (released when the process exits).
func lockDir(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, "agent.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another agent runs on %s (%s is locked): one agent per WRENN_DIR", dir, f.Name())
	}
	return func() { f.Close() }, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func envBool(key string, def bool) bool {
	if v, err := strconv.ParseBool(os.Getenv(key)); err == nil {
		return v
	}
	return def
}
