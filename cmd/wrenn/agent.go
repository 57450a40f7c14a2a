package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wrennhq/wrenn/internal/agent"
	"github.com/wrennhq/wrenn/internal/agent/rpc"
	"github.com/wrennhq/wrenn/internal/netslot"
	"github.com/wrennhq/wrenn/internal/vmm/qemu"
)

func agentCmd(ctx context.Context, log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("wrenn agent", flag.ContinueOnError)
	listen := fs.String("listen", envOr("WRENN_AGENT_LISTEN", ":50051"), "address to serve the agent API on")
	secretFile := fs.String("secret-file", os.Getenv("WRENN_AGENT_SECRET_FILE"), "file holding the bearer secret the control plane presents (or set WRENN_AGENT_SECRET)")
	firstSlot := fs.Int("first-slot", 1, "lowest network slot index this agent uses")
	lastSlot := fs.Int("last-slot", 0, "highest network slot index this agent uses (default: the range's end)")
	poolSize := fs.Int("slot-pool", 4, "network slots kept ready (internet off); as many again with internet on when that is the default")
	internet := fs.Bool("allow-internet-default", envBool("WRENN_ALLOW_INTERNET_DEFAULT", true), "egress for sandboxes whose create does not say")
	reap := fs.Duration("reap-interval", time.Second, "how often idle sandboxes are looked for")
	if err := fs.Parse(args); err != nil {
		return err
	}
	secret := os.Getenv("WRENN_AGENT_SECRET")
	if *secretFile != "" {
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			return fmt.Errorf("read secret: %w", err)
		}
		secret = strings.TrimSpace(string(b))
	}
	if len(secret) < 16 {
		return errors.New("the agent needs a secret of at least 16 characters (WRENN_AGENT_SECRET or --secret-file)")
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
	m, err := agent.New(agent.Config{
		Dir: wrennDir(), Driver: qemu.New(qemu.Options{Logger: log}), Slots: pool,
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
	mux.Handle(rpc.Handler(m, secret))
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true) // client streams (file uploads) need HTTP/2
	srv := &http.Server{Handler: mux, Protocols: &protocols, ReadHeaderTimeout: 30 * time.Second}
	// Sandboxes keep running across an agent restart; only the API goes away.
	return serve(ctx, log.With("dir", wrennDir()), "agent", srv, ln, 5*time.Second)
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
