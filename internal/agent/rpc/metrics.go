package rpc

import (
	"context"
	"errors"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
)

// GetSandboxMetrics is not served yet: the sampler lands next.
func (s *Server) GetSandboxMetrics(context.Context, *connect.Request[pb.GetSandboxMetricsRequest]) (*connect.Response[pb.GetSandboxMetricsResponse], error) {
	return nil, connect.NewError(connect.CodeUnimplemented, errors.New("sandbox metrics are not sampled by this agent yet"))
}

// FlushSandboxMetrics is not served yet: the sampler lands next.
func (s *Server) FlushSandboxMetrics(context.Context, *connect.Request[pb.FlushSandboxMetricsRequest]) (*connect.Response[pb.FlushSandboxMetricsResponse], error) {
	return nil, connect.NewError(connect.CodeUnimplemented, errors.New("sandbox metrics are not sampled by this agent yet"))
}
