package hostclient

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
)

// budgetAgent answers every call it implements with the time budget the call
// arrived with (Connect sends the client's deadline as Connect-Timeout-Ms), or
// never answers while the test runs when hang is set.
type budgetAgent struct {
	hostagentv1connect.UnimplementedHostAgentServiceHandler
	hang    bool
	budget  chan string
	release chan struct{}
}

func (a *budgetAgent) seen(_ context.Context, h http.Header) {
	a.budget <- h.Get("Connect-Timeout-Ms")
	if a.hang {
		<-a.release
	}
}

func (a *budgetAgent) Ping(ctx context.Context, req *connect.Request[pb.PingRequest]) (*connect.Response[pb.PingResponse], error) {
	a.seen(ctx, req.Header())
	return connect.NewResponse(&pb.PingResponse{}), nil
}

func (a *budgetAgent) CreateSandbox(ctx context.Context, req *connect.Request[pb.CreateSandboxRequest]) (*connect.Response[pb.CreateSandboxResponse], error) {
	a.seen(ctx, req.Header())
	return connect.NewResponse(&pb.CreateSandboxResponse{}), nil
}

func (a *budgetAgent) Exec(ctx context.Context, req *connect.Request[pb.ExecRequest]) (*connect.Response[pb.ExecResponse], error) {
	a.seen(ctx, req.Header())
	return connect.NewResponse(&pb.ExecResponse{}), nil
}

func startBudgetAgent(t *testing.T, d deadlines, hang bool) (hostagentv1connect.HostAgentServiceClient, *budgetAgent) {
	t.Helper()
	a := &budgetAgent{hang: hang, budget: make(chan string, 1), release: make(chan struct{})}
	path, h := hostagentv1connect.NewHostAgentServiceHandler(a)
	mux := http.NewServeMux()
	mux.Handle(path, h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(a.release) }) // runs first: the handler returns, so Close can finish
	return hostagentv1connect.NewHostAgentServiceClient(srv.Client(), srv.URL, connect.WithInterceptors(d)), a
}

// TestUnboundedCallsGetADeadline: a call whose caller set no deadline reaches the
// agent with the limit of its kind (an Exec's from its own command timeout), and a
// caller's deadline is kept as it is.
func TestUnboundedCallsGetADeadline(t *testing.T) {
	d := deadlines{
		fallback: 20 * time.Second,
		execPad:  7 * time.Second,
		slow:     map[string]time.Duration{hostagentv1connect.HostAgentServiceCreateSandboxProcedure: 40 * time.Second},
	}
	client, agent := startBudgetAgent(t, d, false)
	ctx := context.Background()
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	for _, c := range []struct {
		name       string
		call       func() error
		lo, hiSecs int // the budget the agent saw, in whole seconds: lo < budget <= hi
	}{
		{"ping", func() error { _, err := client.Ping(ctx, connect.NewRequest(&pb.PingRequest{})); return err }, 19, 20},
		{"create", func() error {
			_, err := client.CreateSandbox(ctx, connect.NewRequest(&pb.CreateSandboxRequest{}))
			return err
		}, 39, 40},
		{"exec 30 s", func() error {
			_, err := client.Exec(ctx, connect.NewRequest(&pb.ExecRequest{TimeoutSec: 30}))
			return err
		}, 36, 37},
		{"exec default", func() error { _, err := client.Exec(ctx, connect.NewRequest(&pb.ExecRequest{})); return err }, 66, 67},
		{"caller's deadline", func() error { _, err := client.Ping(short, connect.NewRequest(&pb.PingRequest{})); return err }, 0, 3},
	} {
		if err := c.call(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		ms, err := strconv.Atoi(<-agent.budget)
		if err != nil || ms <= c.lo*1000 || ms > c.hiSecs*1000 {
			t.Errorf("%s: the agent saw a budget of %d ms (%v), want (%d s, %d s]", c.name, ms, err, c.lo, c.hiSecs)
		}
	}
}

// TestHungAgentCallEnds: an agent that never answers costs the caller the limit,
// not forever.
func TestHungAgentCallEnds(t *testing.T) {
	client, _ := startBudgetAgent(t, deadlines{fallback: 300 * time.Millisecond}, true)
	done := make(chan error, 1)
	go func() {
		_, err := client.Ping(context.Background(), connect.NewRequest(&pb.PingRequest{}))
		done <- err
	}()
	select {
	case err := <-done:
		if connect.CodeOf(err) != connect.CodeDeadlineExceeded && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a hung call ended with %v, want deadline exceeded", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("a call to a hung agent was still waiting after a minute")
	}
}

// TestEveryLifecycleCallHasMinutes: the calls that copy or boot whole VMs are the
// ones with the long limit; the rest get the fallback.
func TestEveryLifecycleCallHasMinutes(t *testing.T) {
	d := agentDeadlines()
	if d.fallback < time.Minute || d.execPad < 10*time.Second {
		t.Errorf("fallback %v, exec pad %v: too short for a loaded host", d.fallback, d.execPad)
	}
	for proc, l := range d.slow {
		if l < 5*time.Minute {
			t.Errorf("%s: %v", proc, l)
		}
	}
	if len(d.slow) != 6 {
		t.Errorf("%d slow procedures, want create, destroy, pause, resume, snapshot create and delete", len(d.slow))
	}
}
