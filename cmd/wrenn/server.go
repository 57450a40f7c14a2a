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
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
	"github.com/wrennhq/wrenn/internal/server/api"
	"github.com/wrennhq/wrenn/internal/server/auth"
	"github.com/wrennhq/wrenn/internal/server/hostclient"
	"github.com/wrennhq/wrenn/internal/server/service"
	"github.com/wrennhq/wrenn/internal/server/store"
)

// oneAgent is the single configured host agent (until hosts register themselves).
type oneAgent struct {
	c hostagentv1connect.HostAgentServiceClient
}

func (o oneAgent) Agent() hostagentv1connect.HostAgentServiceClient { return o.c }

func serverCmd(ctx context.Context, log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("wrenn server", flag.ContinueOnError)
	listen := fs.String("listen", envOr("WRENN_LISTEN", ":8080"), "address to serve the API on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dsn, redisURL := os.Getenv("WRENN_DATABASE_URL"), os.Getenv("WRENN_REDIS_URL")
	jwtKey := os.Getenv("WRENN_JWT_SECRET")
	agentAddr, agentSecret := os.Getenv("WRENN_AGENT_ADDR"), os.Getenv("WRENN_AGENT_SECRET")
	switch {
	case dsn == "":
		return errors.New("WRENN_DATABASE_URL is required (scripts/services.sh start prints it)")
	case redisURL == "":
		return errors.New("WRENN_REDIS_URL is required (scripts/services.sh start prints it)")
	case len(jwtKey) < 32:
		return errors.New("WRENN_JWT_SECRET must be at least 32 characters")
	case agentAddr == "" || agentSecret == "":
		return errors.New("WRENN_AGENT_ADDR and WRENN_AGENT_SECRET are required")
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
	svc, err := service.New(service.Config{DB: pool, Redis: rdb, Tokens: tokens, Log: log})
	if err != nil {
		return err
	}
	svc.SetHosts(oneAgent{hostclient.New(agentAddr, agentSecret)})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	srv := &http.Server{Handler: api.New(svc, log), ReadHeaderTimeout: 30 * time.Second}
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
