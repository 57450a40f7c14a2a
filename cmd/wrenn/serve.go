package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// serve runs srv on ln until it fails or ctx ends, then shuts it down gracefully,
// giving in-flight requests up to grace.
func serve(ctx context.Context, log *slog.Logger, what string, srv *http.Server, ln net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info(what+" listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}
