package rpc

import (
	"context"
	"errors"
	"io/fs"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/internal/envdclient"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// fsConnect maps envd's refusal of a filesystem call (an envdclient.FSError in err)
// to the code the control plane turns into its HTTP status; envd's message stays.
func fsConnect(err error) error {
	var code connect.Code
	switch {
	case errors.Is(err, fs.ErrNotExist):
		code = connect.CodeNotFound
	case errors.Is(err, fs.ErrExist):
		code = connect.CodeAlreadyExists
	case errors.Is(err, fs.ErrPermission):
		code = connect.CodePermissionDenied
	case errors.Is(err, fs.ErrInvalid):
		code = connect.CodeInvalidArgument
	case errors.Is(err, envdclient.ErrPrecondition):
		code = connect.CodeFailedPrecondition
	default:
		return connect.NewError(connect.CodeInternal, err)
	}
	var fe *envdclient.FSError
	errors.As(err, &fe)
	return connect.NewError(code, errors.New(fe.Message))
}

var entryTypes = map[envdclient.EntryType]pb.EntryType{
	envdclient.TypeFile:    pb.EntryType_ENTRY_TYPE_FILE,
	envdclient.TypeDir:     pb.EntryType_ENTRY_TYPE_DIR,
	envdclient.TypeSymlink: pb.EntryType_ENTRY_TYPE_SYMLINK,
}

func entryProto(e envdclient.Entry) *pb.Entry {
	out := &pb.Entry{
		Name: e.Name, Path: e.Path, Type: entryTypes[e.Type], Size: e.Size, Mode: e.Mode,
		Permissions: e.Permissions, Owner: e.Owner, Group: e.Group, SymlinkTarget: e.SymlinkTarget,
	}
	if !e.Modified.IsZero() {
		out.ModifiedAt = timestamppb.New(e.Modified)
	}
	return out
}

func (s *Server) ListDir(ctx context.Context, req *connect.Request[pb.ListDirRequest]) (*connect.Response[pb.ListDirResponse], error) {
	r := req.Msg
	entries, truncated, err := s.m.ListDir(ctx, r.GetSandboxId(), r.GetPath(), r.GetDepth(), r.GetUser())
	if err != nil {
		return nil, toConnect(err)
	}
	out := &pb.ListDirResponse{Entries: make([]*pb.Entry, 0, len(entries)), Truncated: truncated}
	for _, e := range entries {
		out.Entries = append(out.Entries, entryProto(e))
	}
	return connect.NewResponse(out), nil
}

func (s *Server) MakeDir(ctx context.Context, req *connect.Request[pb.MakeDirRequest]) (*connect.Response[pb.MakeDirResponse], error) {
	r := req.Msg
	e, err := s.m.MakeDir(ctx, r.GetSandboxId(), r.GetPath(), r.GetUser())
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.MakeDirResponse{Entry: entryProto(e)}), nil
}

func (s *Server) RemovePath(ctx context.Context, req *connect.Request[pb.RemovePathRequest]) (*connect.Response[pb.RemovePathResponse], error) {
	r := req.Msg
	if err := s.m.RemovePath(ctx, r.GetSandboxId(), r.GetPath(), r.GetUser()); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.RemovePathResponse{}), nil
}
