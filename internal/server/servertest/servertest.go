// Package servertest runs the control plane in-process for tests: the real service
// and REST handlers on a private PostgreSQL and Redis (pgtest, redistest), with
// hostagenttest's in-memory agent standing in for the host (VM paths are covered by
// test/e2e against a real agent).
package servertest

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
	"github.com/wrennhq/wrenn/internal/hostagenttest"
	"github.com/wrennhq/wrenn/internal/pgtest"
	"github.com/wrennhq/wrenn/internal/redistest"
	"github.com/wrennhq/wrenn/internal/server/api"
	"github.com/wrennhq/wrenn/internal/server/auth"
	"github.com/wrennhq/wrenn/internal/server/service"
	"github.com/wrennhq/wrenn/internal/server/store"
)

// Run starts the test databases around a package's tests; call it from TestMain.
func Run(m interface{ Run() int }) int { return pgtest.Run(redistest.Around(m)) }

// Env is one running control plane.
type Env struct {
	URL     string // base URL of the REST API
	Service *service.Service
	DB      *pgxpool.Pool
	Redis   *redis.Client
	Agent   *hostagenttest.Fake
	Tokens  *auth.Tokens
}

// New starts a control plane on a fresh database; it stops when the test ends.
func New(t testing.TB) *Env {
	t.Helper()
	ctx := context.Background()
	pool, err := store.Open(ctx, pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	log := slog.New(slog.DiscardHandler)
	if _, err := store.Migrate(ctx, pool, log); err != nil {
		t.Fatal(err)
	}
	tokens, err := auth.NewTokens(bytes.Repeat([]byte("k"), 32), 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redistest.NewClient(t)
	svc, err := service.New(service.Config{DB: pool, Redis: rdb, Tokens: tokens, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	fake := hostagenttest.New(t)
	svc.SetHosts(oneAgent{fake.Client()})
	srv := httptest.NewServer(api.New(svc, log))
	t.Cleanup(srv.Close)
	return &Env{URL: srv.URL, Service: svc, DB: pool, Redis: rdb, Agent: fake, Tokens: tokens}
}

type oneAgent struct {
	c hostagentv1connect.HostAgentServiceClient
}

func (o oneAgent) Agent() hostagentv1connect.HostAgentServiceClient { return o.c }
