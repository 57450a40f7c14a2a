// Command envd is Wrenn's in-sandbox daemon: it serves E2B's envd protocol (process and
// filesystem Connect services, /files, /init, /health, /envs, /metrics) on :49983.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/wrennhq/wrenn/internal/envd"
	"github.com/wrennhq/wrenn/internal/envd/portfwd"
	"github.com/wrennhq/wrenn/internal/version"
)

// envdVersion is the E2B envd protocol version this daemon implements; the SDKs gate
// features on it (every gate up to 0.6.4 is implemented).
const envdVersion = "0.6.13"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "envd:", err)
		os.Exit(1)
	}
}

func run() error {
	port := flag.Int("port", 49983, "TCP port to serve on (all interfaces)")
	addr := flag.String("addr", "", "listen address host:port (overrides -port)")
	inVM := flag.Bool("in-vm", false, "running inside a sandbox VM: allow /init to set the system clock and hostname")
	forwardLoopback := flag.Bool("forward-loopback", true, "with -in-vm: expose TCP services listening only on the guest's loopback on its external addresses")
	runDir := flag.String("run-dir", "/run/e2b", "directory for the sandbox identity files")
	debug := flag.Bool("debug", false, "debug logging")
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()

	if *showVersion {
		fmt.Printf("envd %s (wrenn %s)\n", envdVersion, version.Version)
		return nil
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	listen := *addr
	if listen == "" {
		listen = net.JoinHostPort("", strconv.Itoa(*port))
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *inVM && *forwardLoopback {
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

	srv := envd.New(envd.Config{Version: envdVersion, InVM: *inVM, RunDir: *runDir, Logger: log})
	log.Info("envd listening", "addr", ln.Addr().String(), "version", envdVersion, "in_vm", *inVM)
	return srv.Serve(ctx, ln)
}
