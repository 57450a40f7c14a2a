// Command envd is Wrenn's in-sandbox daemon: it serves E2B's envd protocol (process and
// filesystem Connect services, /files, /init, /health, /envs, /metrics) on :49983.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/wrennhq/wrenn/internal/config"
	"github.com/wrennhq/wrenn/internal/envd"
	"github.com/wrennhq/wrenn/internal/envd/envdapi"
	"github.com/wrennhq/wrenn/internal/envd/portfwd"
	"github.com/wrennhq/wrenn/internal/version"
)

// envdVersion is the E2B envd protocol version this daemon implements.
const envdVersion = envdapi.Version

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "envd:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg, err := config.LoadEnvd(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if cfg.Version {
		fmt.Printf("envd %s (wrenn %s)\n", envdVersion, version.Version)
		return nil
	}
	log := cfg.Log.New(os.Stderr)

	listen := cfg.ListenAddr()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if cfg.InVM && cfg.ForwardLoopback {
		fwdCtx, stopFwd := context.WithCancel(ctx)
		fwdDone := make(chan struct{})
		go func() {
			defer close(fwdDone)
			cfg := portfwd.Config{Exclude: []int{ln.Addr().(*net.TCPAddr).Port}, Log: log}
			if err := portfwd.Run(fwdCtx, cfg); err != nil {
				log.Warn("loopback port forwarding unavailable", "err", err)
			}
		}()
		defer func() { stopFwd(); <-fwdDone }()
	}

	srv := envd.New(envd.Config{Version: envdVersion, InVM: cfg.InVM, RunDir: cfg.RunDir, Logger: log})
	log.Info("envd listening", "addr", ln.Addr().String(), "version", envdVersion, "in_vm", cfg.InVM, "config", cfg)
	return srv.Serve(ctx, ln)
}
