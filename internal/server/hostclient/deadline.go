package hostclient

import (
	"context"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
	"github.com/wrennhq/wrenn/internal/hostproto"
)

// deadlines bounds every unary call to an agent that its caller left unbounded, so
// an agent that accepts a call and never answers (hung, or partitioned after the
// request went out) cannot hold a request, a goroutine and a connection forever.
// A caller's own deadline wins when it has one. Streams are left alone: a
// following log or an interactive shell lives as long as its user wants, and each
// ends with its request.
type deadlines struct {
	fallback time.Duration            // any call not listed
	slow     map[string]time.Duration // by procedure
	execPad  time.Duration            // an Exec's own command timeout, plus this
}

// agentDeadlines: lifecycle calls copy or boot whole VMs (a snapshot writes all of
// guest memory; a create on TCG boots a kernel), so they get minutes; everything
// else answers in seconds.
func agentDeadlines() deadlines {
	const lifecycle = 10 * time.Minute
	return deadlines{
		fallback: 2 * time.Minute,
		execPad:  time.Minute,
		slow: map[string]time.Duration{
			hostagentv1connect.HostAgentServiceCreateSandboxProcedure:  lifecycle,
			hostagentv1connect.HostAgentServiceDestroySandboxProcedure: lifecycle,
			hostagentv1connect.HostAgentServicePauseSandboxProcedure:   lifecycle,
			hostagentv1connect.HostAgentServiceResumeSandboxProcedure:  lifecycle,
			hostagentv1connect.HostAgentServiceCreateSnapshotProcedure: lifecycle,
			hostagentv1connect.HostAgentServiceDeleteSnapshotProcedure: lifecycle,
		},
	}
}

// limit is how long req may take.
func (d deadlines) limit(req connect.AnyRequest) time.Duration {
	if e, ok := req.Any().(*pb.ExecRequest); ok {
		t := time.Duration(e.GetTimeoutSec()) * time.Second
		if t <= 0 {
			t = hostproto.DefaultExecTimeout
		}
		return t + d.execPad
	}
	if l, ok := d.slow[req.Spec().Procedure]; ok {
		return l
	}
	return d.fallback
}

func (d deadlines) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d.limit(req))
			defer cancel()
		}
		return next(ctx, req)
	}
}

func (d deadlines) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (d deadlines) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
