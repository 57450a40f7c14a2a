// Package hostclient is the control plane's client of host agents (hostagent.v1 over
// Connect): Pool reaches registered hosts over TLS pinned to the certificate recorded
// at registration, presenting each host's secret; New reaches a standalone agent over
// h2c with a shared secret (file uploads are client streams, which need HTTP/2).
package hostclient

import (
	"context"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
	"github.com/wrennhq/wrenn/internal/hostproto"
)

// New returns a client of the standalone agent at addr (host:port).
func New(addr, secret string) hostagentv1connect.HostAgentServiceClient {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	hc := &http.Client{Transport: &http.Transport{Protocols: &p, IdleConnTimeout: 90 * time.Second}}
	return hostagentv1connect.NewHostAgentServiceClient(hc, "http://"+addr, clientOptions(secret)...)
}

// clientOptions are every agent client's: the host's secret on each call; a deadline
// on each unary call its caller left unbounded (deadline.go); no message
// from the agent bigger than the largest it legitimately sends (an Exec answer at its
// output caps), so what one call can make the control plane buffer is bounded even
// when an agent misbehaves; and no gzip. Decompressing an answer takes a second
// buffer as big as the answer (an incompressible 32 MiB Exec answer cost 290 MiB of
// allocations instead of 160), and compressing sandbox output costs the agent CPU for
// little gain between machines of one site.
func clientOptions(secret string) []connect.ClientOption {
	return []connect.ClientOption{
		connect.WithInterceptors(bearer(secret), agentDeadlines()),
		connect.WithReadMaxBytes(hostproto.AgentReadMaxBytes),
		connect.WithAcceptCompression("gzip", nil, nil),
	}
}

type bearer string

func (b bearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", "Bearer "+string(b))
		return next(ctx, req)
	}
}

func (b bearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(b))
		return conn
	}
}

func (b bearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
