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
	dsn := os.Getenv("WRENN_DATABASE_URL")
	jwtKey := os.Getenv("WRENN_JWT_SECRET")
	agentAddr, agentSecret := os.Getenv("WRENN_AGENT_ADDR"), os.Getenv("WRENN_AGENT_SECRET")
	switch {
	case dsn == "":
		return errors.New("WRENN_DATABASE_URL is required (scripts/services.sh start prints it)")
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
	tokens, err := auth.NewTokens([]byte(jwtKey), 15*time.Minute)
	if err != nil {
		return err
	}
	svc := service.New(pool, tokens, log)
	svc.SetHosts(oneAgent{hostclient.New(agentAddr, agentSecret)})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	srv := &http.Server{Handler: api.New(svc, log), ReadHeaderTimeout: 30 * time.Second}
	return serve(ctx, log, "control plane", srv, ln, 10*time.Second)
}
