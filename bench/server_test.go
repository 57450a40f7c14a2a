package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/wrennhq/wrenn/gen/db"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
	"github.com/wrennhq/wrenn/internal/ident"
	"github.com/wrennhq/wrenn/internal/server/servertest"
	"github.com/wrennhq/wrenn/pkg/client"
)

// Sizes of the control-plane benchmark.
const (
	cpRows        = 200  // sandboxes a team has before anything is measured
	cpOps         = 200  // creates, execs and destroys timed, each through the API and direct
	cpConcurrency = 1000 // simultaneous GET /v1/sandboxes
)

// controlPlane is `wrenn server` in-process: the real service and REST handlers on a
// private PostgreSQL and Redis, with a real host agent behind them (agenttest: its
// sandboxes are envd processes, not VMs), so what is measured is the control plane's
// own work on top of the agent's.
type controlPlane struct {
	url    string
	http   *http.Client // shared, with room for cpConcurrency idle connections
	pool   *pgxpool.Pool
	agent  hostagentv1connect.HostAgentServiceClient
	api    *client.Client // the team's API key
	key    string
	teamID pgtype.UUID
}

func startControlPlane(b *testing.B) *controlPlane {
	ctx := context.Background()
	env := servertest.New(b)
	hc := &http.Client{Transport: &http.Transport{
		MaxIdleConns: 2 * cpConcurrency, MaxIdleConnsPerHost: 2 * cpConcurrency, IdleConnTimeout: 90 * time.Second,
	}}
	b.Cleanup(hc.CloseIdleConnections)
	sess, err := client.New(env.URL, client.WithHTTPClient(hc)).Signup(ctx, "bench@example.com", "Bench", "correct horse battery staple")
	if err != nil {
		b.Fatalf("signup: %v", err)
	}
	key, err := client.New(env.URL, client.WithToken(sess.Token), client.WithHTTPClient(hc)).CreateAPIKey(ctx, "bench")
	if err != nil {
		b.Fatalf("create api key: %v", err)
	}
	cp := &controlPlane{url: env.URL, http: hc, pool: env.DB, agent: env.Agent.Client, key: key.Key,
		api: client.New(env.URL, client.WithAPIKey(key.Key), client.WithHTTPClient(hc))}
	if err := cp.teamID.Scan(sess.TeamID); err != nil {
		b.Fatalf("team id %q: %v", sess.TeamID, err)
	}
	return cp
}

// BenchmarkControlPlane measures what the control plane adds to a host agent's work —
// REST, authentication, PostgreSQL records, Redis, the audit log — with the real agent
// of servertest (internal/agent/agenttest), against calling that agent directly; and 1,000
// simultaneous sandbox listings against the same 1,000 queries on the database pool, and
// 1,000 simultaneous execs and file round trips against the same sent to the agent.
func BenchmarkControlPlane(b *testing.B) {
	cp := startControlPlane(b)
	ctx := context.Background()
	start := time.Now()
	for i := range cpRows {
		if _, err := cp.api.CreateSandbox(ctx, client.CreateSandboxRequest{}); err != nil {
			b.Fatalf("create sandbox %d: %v", i, err)
		}
	}
	setup := time.Since(start).Round(time.Millisecond)

	b.Run("create-exec-destroy", func(b *testing.B) {
		b.Logf("setup: %d sandboxes created through the API in %v", cpRows, setup)
		benchAPIOverhead(b, cp)
	})
	b.Run("list-1000-concurrent", func(b *testing.B) { benchConcurrentList(b, cp) })
	b.Run("exec-1000-concurrent", func(b *testing.B) { benchConcurrentExec(b, cp) })
	b.Run("files-1000-concurrent", func(b *testing.B) { benchConcurrentFiles(b, cp) })
}

// benchAPIOverhead times create, exec (`echo hi`) and destroy through the REST API and
// the same RPCs straight on the agent, interleaved so both see the same machine.
func benchAPIOverhead(b *testing.B, cp *controlPlane) {
	ctx := context.Background()
	var api, direct [3][]time.Duration // create, exec, destroy
	timed := func(into *[]time.Duration, f func() error) {
		t0 := time.Now()
		err := f()
		*into = append(*into, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
	}
	for range max(b.N, cpOps) {
		id := ident.NewSandboxID()
		timed(&direct[0], func() error {
			_, err := cp.agent.CreateSandbox(ctx, connect.NewRequest(&pb.CreateSandboxRequest{
				SandboxId: id, Template: "base", Vcpus: 1, MemoryMb: 512, Metadata: map[string]string{},
			}))
			return err
		})
		timed(&direct[1], func() error {
			res, err := cp.agent.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: id, Cmd: "echo", Args: []string{"hi"}}))
			if err == nil && string(res.Msg.GetStdout()) != "hi\n" {
				err = fmt.Errorf("direct exec: stdout %q", res.Msg.GetStdout())
			}
			return err
		})
		timed(&direct[2], func() error {
			_, err := cp.agent.DestroySandbox(ctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: id}))
			return err
		})

		var sb *client.Sandbox
		timed(&api[0], func() (err error) {
			sb, err = cp.api.CreateSandbox(ctx, client.CreateSandboxRequest{})
			return err
		})
		timed(&api[1], func() error {
			res, err := cp.api.Exec(ctx, sb.ID, "echo", []string{"hi"}, 0)
			if err == nil && string(res.Stdout) != "hi\n" {
				err = fmt.Errorf("api exec: stdout %q", res.Stdout)
			}
			return err
		})
		timed(&api[2], func() error { return cp.api.DestroySandbox(ctx, sb.ID) })
	}
	for i, op := range []string{"create", "exec", "destroy"} {
		a50, a99 := cpPercentiles(api[i])
		d50, d99 := cpPercentiles(direct[i])
		overhead := a50 - d50
		b.ReportMetric(cpMS(overhead), op+"-overhead-p50-ms")
		note := ""
		if op == "create" {
			note = " (target: create overhead ≤ 20 ms p50)"
		}
		b.Logf("%s ×%d: API p50 %v p99 %v; direct agent RPC p50 %v p99 %v; overhead p50 %v, ratio %.1fx%s",
			op, len(api[i]), a50, a99, d50, d99, overhead, float64(a50)/float64(d50), note)
	}
}

// benchConcurrentList starts cpConcurrency GET /v1/sandboxes at once (API-key auth, one
// shared client), first on fresh connections, then again on the kept-alive ones,
// against the same number of simultaneous ListSandboxes queries on the control plane's
// database pool.
func benchConcurrentList(b *testing.B, cp *controlPlane) {
	ctx := context.Background()
	// What GET /v1/sandboxes lists by default: every state but stopped and error.
	live := db.ListSandboxesParams{TeamID: cp.teamID, MaxRows: 1000,
		Statuses: []string{"pending", "starting", "running", "pausing", "paused", "resuming", "stopping", "missing"}}
	rows, err := db.New(cp.pool).ListSandboxes(ctx, live)
	if err != nil {
		b.Fatal(err)
	}
	if len(rows) < cpRows {
		b.Fatalf("the team has %d sandboxes, want at least %d", len(rows), cpRows)
	}
	var bodyBytes atomic.Int64
	get := func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, cp.url+"/v1/sandboxes", nil)
		if err != nil {
			return err
		}
		req.Header.Set("X-API-Key", cp.key)
		resp, err := cp.http.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		bodyBytes.Store(n)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	query := func() error {
		got, err := db.New(cp.pool).ListSandboxes(ctx, live)
		if err == nil && len(got) != len(rows) {
			err = fmt.Errorf("%d rows, want %d", len(got), len(rows))
		}
		return err
	}

	base := cpConcurrent(cpConcurrency, query)
	for _, round := range []string{"new connections", "kept-alive connections"} {
		r := cpConcurrent(cpConcurrency, get)
		p50, p99 := cpPercentiles(r.durations)
		b50, b99 := cpPercentiles(base.durations)
		b.Logf("%d concurrent GET /v1/sandboxes (%d rows, %d-byte answers, %s): errors %d, p50 %v, p99 %v, wall %v; "+
			"baseline %d concurrent ListSandboxes on the pgx pool (max %d conns): errors %d, p50 %v, p99 %v, wall %v; "+
			"ratio p50 %.1fx, p99 %.1fx, wall %.1fx (target: no errors, p99 ≤ 250 ms)",
			cpConcurrency, len(rows), bodyBytes.Load(), round, r.errors, p50, p99, r.wall,
			cpConcurrency, cp.pool.Config().MaxConns, base.errors, b50, b99, base.wall,
			float64(p50)/float64(b50), float64(p99)/float64(b99), float64(r.wall)/float64(base.wall))
		if r.errors > 0 {
			b.Errorf("%s: %d of %d requests failed, first: %v", round, r.errors, cpConcurrency, r.first)
		}
		if base.errors > 0 {
			b.Errorf("baseline: %d of %d queries failed, first: %v", base.errors, cpConcurrency, base.first)
		}
		if round == "kept-alive connections" {
			b.ReportMetric(cpMS(p50), "list-p50-ms")
			b.ReportMetric(cpMS(p99), "list-p99-ms")
			b.ReportMetric(float64(r.errors), "list-errors")
			b.ReportMetric(float64(p99)/float64(b99), "list-p99-x-baseline")
		}
	}
}

type cpRun struct {
	durations []time.Duration
	wall      time.Duration
	errors    int
	first     error
}

// cpConcurrent starts n calls of f together, behind a barrier, and times each.
func cpConcurrent(n int, f func() error) cpRun {
	r := cpRun{durations: make([]time.Duration, n)}
	var ready, done sync.WaitGroup
	var mu sync.Mutex
	gate := make(chan struct{})
	ready.Add(n)
	done.Add(n)
	for i := range n {
		go func() {
			defer done.Done()
			ready.Done()
			<-gate
			t0 := time.Now()
			err := f()
			r.durations[i] = time.Since(t0)
			if err != nil {
				mu.Lock()
				r.errors++
				if r.first == nil {
					r.first = err
				}
				mu.Unlock()
			}
		}()
	}
	ready.Wait()
	t0 := time.Now()
	close(gate)
	done.Wait()
	r.wall = time.Since(t0)
	return r
}

// cpPercentiles returns the p50 and p99 of d (which it sorts).
func cpPercentiles(d []time.Duration) (p50, p99 time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2], d[len(d)*99/100]
}

func cpMS(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
