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
)

// New returns a client of the standalone agent at addr (host:port).
func New(addr, secret string) hostagentv1connect.HostAgentServiceClient {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	hc := &http.Client{Transport: &http.Transport{Protocols: &p, IdleConnTimeout: 90 * time.Second}}
	return hostagentv1connect.NewHostAgentServiceClient(hc, "http://"+addr, connect.WithInterceptors(bearer(secret)))
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
