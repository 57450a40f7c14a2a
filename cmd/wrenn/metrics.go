package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/wrennhq/wrenn/internal/config"
	"github.com/wrennhq/wrenn/internal/httplimit"
	"github.com/wrennhq/wrenn/internal/promx"
)

// metricsSetting names a program's metrics settings: its variables and their values.
type metricsSetting struct {
	listen, token, tokenFile string
	tokenFileVar             string // for errors
}

// openMetrics reads where a program's metrics are served: the token from its variable
// or from its file, and the listener of their own, opened now. Both happen before the
// program's slower start (a database, a VMM), so a missing file or a taken port stops
// it at once. The listener is nil when there is none; the caller closes it on error.
func openMetrics(s metricsSetting) (promx.Access, net.Listener, error) {
	access := promx.Access{Listen: s.listen, Token: s.token}
	if s.tokenFile != "" {
		b, err := os.ReadFile(s.tokenFile)
		if err != nil {
			return promx.Access{}, nil, fmt.Errorf("%s: %w", s.tokenFileVar, err)
		}
		access.Token = strings.TrimSpace(string(b))
		if len(access.Token) < config.MinMetricsToken {
			return promx.Access{}, nil, fmt.Errorf("%s: the token in %s is shorter than %d characters", s.tokenFileVar, s.tokenFile, config.MinMetricsToken)
		}
	}
	if access.Listen == "" {
		return access, nil, nil
	}
	ln, err := net.Listen("tcp", access.Listen)
	if err != nil {
		return promx.Access{}, nil, fmt.Errorf("metrics: listen on %s: %w", access.Listen, err)
	}
	return access, ln, nil
}

// logMetrics says where metrics are served, so an operator sees what a scrape needs.
func logMetrics(log *slog.Logger, access promx.Access) {
	switch {
	case !access.Enabled():
		log.Info("metrics off: no metrics listener or token is set")
	case access.Token != "":
		log.Info("metrics served at "+promx.Path+" to the metrics bearer token", "main_listener", true, "own_listener", access.Listen)
	}
}

// serveMetrics serves the metrics listener until ctx ends. A failure is logged, not
// fatal: the program's own work goes on without its metrics.
func serveMetrics(ctx context.Context, log *slog.Logger, access promx.Access, reg *prometheus.Registry, ln net.Listener) {
	srv := httplimit.ControlPlane.Server(access.ListenHandler(reg, log))
	go func() {
		if err := serve(ctx, log, "metrics", srv, ln, 2*time.Second); err != nil {
			log.Error("metrics listener stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
}
