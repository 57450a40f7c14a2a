package rpc

import (
	"context"
	"fmt"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/internal/agent"
	"google.golang.org/protobuf/types/known/timestamppb"
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

func (s *Server) CreateSnapshot(ctx context.Context, req *connect.Request[pb.CreateSnapshotRequest]) (*connect.Response[pb.CreateSnapshotResponse], error) {
	info, took, err := s.m.CreateSnapshot(ctx, req.Msg.GetSandboxId(), req.Msg.GetName(), req.Msg.GetOverwrite())
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.CreateSnapshotResponse{Snapshot: snapshotProto(info), DurationUs: took.Microseconds()}), nil
}

func (s *Server) DeleteSnapshot(ctx context.Context, req *connect.Request[pb.DeleteSnapshotRequest]) (*connect.Response[pb.DeleteSnapshotResponse], error) {
	if err := s.m.DeleteSnapshot(req.Msg.GetName()); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.DeleteSnapshotResponse{}), nil
}

func (s *Server) ListSnapshots(ctx context.Context, _ *connect.Request[pb.ListSnapshotsRequest]) (*connect.Response[pb.ListSnapshotsResponse], error) {
	infos, err := s.m.ListSnapshots()
	if err != nil {
		return nil, toConnect(err)
	}
	out := &pb.ListSnapshotsResponse{}
	for _, i := range infos {
		out.Snapshots = append(out.Snapshots, snapshotProto(i))
	}
	return connect.NewResponse(out), nil
}

func (s *Server) GetConsoleLog(_ context.Context, req *connect.Request[pb.GetConsoleLogRequest]) (*connect.Response[pb.GetConsoleLogResponse], error) {
	if req.Msg.GetLimit() < 0 {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("limit %d: want 0 (the most) up to %d", req.Msg.GetLimit(), agent.MaxConsoleRead))
	}
	c, err := s.m.ConsoleLog(req.Msg.GetSandboxId(), req.Msg.GetOffset(), req.Msg.GetLimit())
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.GetConsoleLogResponse{Data: c.Data, Offset: c.Offset, NextOffset: c.Next, Size: c.Size}), nil
}

func snapshotProto(i *agent.SnapshotInfo) *pb.SnapshotInfo {
	return &pb.SnapshotInfo{
		Name: i.Name, SandboxId: i.SandboxID, Template: i.Template,
		Vcpus: int32(i.VCPUs), MemoryMb: int32(i.MemoryMiB), DiskMb: int32(i.DiskMiB),
		SizeBytes: i.SizeBytes, CreatedAt: timestamppb.New(i.CreatedAt),
	}
}
