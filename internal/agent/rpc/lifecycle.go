package rpc

import (
	"context"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
)

func (s *Server) PauseSandbox(ctx context.Context, req *connect.Request[pb.PauseSandboxRequest]) (*connect.Response[pb.PauseSandboxResponse], error) {
	info, stats, err := s.m.Pause(ctx, req.Msg.GetSandboxId())
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.PauseSandboxResponse{
		Sandbox: toProto(info), WrittenBytes: stats.Written, DurationUs: stats.Duration.Microseconds(),
	}), nil
}

func (s *Server) ResumeSandbox(ctx context.Context, req *connect.Request[pb.ResumeSandboxRequest]) (*connect.Response[pb.ResumeSandboxResponse], error) {
	info, token, took, err := s.m.Resume(ctx, req.Msg.GetSandboxId(), int(req.Msg.GetTimeoutSec()))
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.ResumeSandboxResponse{
		Sandbox: toProto(info), EnvdAccessToken: token, DurationUs: took.Microseconds(),
	}), nil
}
