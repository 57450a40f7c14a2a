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
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/wrennhq/wrenn/internal/server/api"
	"github.com/wrennhq/wrenn/internal/server/auth"
	"github.com/wrennhq/wrenn/internal/server/hostclient"
	"github.com/wrennhq/wrenn/internal/server/proxy"
	"github.com/wrennhq/wrenn/internal/server/scheduler"
	"github.com/wrennhq/wrenn/internal/server/service"
	"github.com/wrennhq/wrenn/internal/server/store"
)

func serverCmd(ctx context.Context, log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("wrenn server", flag.ContinueOnError)
	listen := fs.String("listen", envOr("WRENN_LISTEN", ":8080"), "address to serve the API on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dsn, redisURL := os.Getenv("WRENN_DATABASE_URL"), os.Getenv("WRENN_REDIS_URL")
	jwtKey := os.Getenv("WRENN_JWT_SECRET")
	sched, err := scheduler.New(envOr("WRENN_SCHEDULER", scheduler.LeastLoaded))
	if err != nil {
		return fmt.Errorf("WRENN_SCHEDULER: %w", err)
	}
	stale, err := time.ParseDuration(envOr("WRENN_HOST_STALE_AFTER", "90s"))
	if err != nil || stale < time.Second {
		return fmt.Errorf("WRENN_HOST_STALE_AFTER: want a duration like 90s")
	}
	// How often the host monitor runs (unreachable hosts, missing sandboxes coming back).
	beatEvery, err := time.ParseDuration(envOr("WRENN_HOST_HEARTBEAT_INTERVAL", "30s"))
	if err != nil || beatEvery < time.Second {
		return fmt.Errorf("WRENN_HOST_HEARTBEAT_INTERVAL: want a duration of at least 1s, like 30s")
	}
	monitorEvery, err := time.ParseDuration(envOr("WRENN_HOST_MONITOR_INTERVAL", "10s"))
	if err != nil || monitorEvery < time.Second {
		return fmt.Errorf("WRENN_HOST_MONITOR_INTERVAL: want a duration of at least 1s, like 10s")
	}
	switch {
	case dsn == "":
		return errors.New("WRENN_DATABASE_URL is required (scripts/services.sh start prints it)")
	case redisURL == "":
		return errors.New("WRENN_REDIS_URL is required (scripts/services.sh start prints it)")
	case len(jwtKey) < 32:
		return errors.New("WRENN_JWT_SECRET must be at least 32 characters")
	}
	pool, err := store.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := store.Migrate(ctx, pool, log); err != nil {
		return err
	}
	rdb, err := openRedis(ctx, redisURL)
	if err != nil {
		return err
	}
	defer rdb.Close()
	tokens, err := auth.NewTokens([]byte(jwtKey), 15*time.Minute)
	if err != nil {
		return err
	}
	// Host secrets are sealed with a key derived from the same server secret.
	sealer, err := auth.NewSealer([]byte(jwtKey))
	if err != nil {
		return err
	}
	svc, err := service.New(service.Config{
		DB: pool, Redis: rdb, Tokens: tokens, Sealer: sealer, Scheduler: sched, Log: log,
		AllowInternetDefault: envBool("WRENN_ALLOW_INTERNET_DEFAULT", true), HeartbeatInterval: beatEvery,
	})
	if err != nil {
		return err
	}
	svc.SetHosts(hostclient.NewPool(svc.HostConn))
	go svc.RunHostMonitor(ctx, service.MonitorConfig{Interval: monitorEvery, Stale: stale})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	// Sandbox ports are served at {port}-{id}.WRENN_DOMAIN (and by E2b-Sandbox-* headers).
	px := proxy.New(svc, os.Getenv("WRENN_DOMAIN"), log)
	if n, err := strconv.Atoi(os.Getenv("WRENN_PROXY_CONN_LIMIT")); err == nil && n > 0 {
		px.SetConnLimit(n)
	}
	handler := px.Wrap(api.New(svc, log))
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 30 * time.Second}
	return serve(ctx, log, "control plane", srv, ln, 10*time.Second)
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
