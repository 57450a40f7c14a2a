package hostagenttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
)

// file finds the sandbox of a file request and cleans its path, which must be
// absolute.
func (s service) file(id, p string) (*box, string, error) {
	if p == "" {
		return nil, "", invalid("path is required")
	}
	b, err := s.f.lookup(id)
	if err != nil {
		return nil, "", err
	}
	if !path.IsAbs(p) {
		return nil, "", invalid("path %q is not absolute", p)
	}
	return b, path.Clean(p), nil
}

func (b *box) store(p string, data []byte) {
	b.mu.Lock()
	b.files[p] = data
	b.lastActive = time.Now()
	b.mu.Unlock()
}

func (b *box) load(p string) ([]byte, error) {
	b.mu.Lock()
	data, ok := b.files[p]
	b.mu.Unlock()
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("open %s: no such file or directory", p))
	}
	return data, nil
}

func (s service) WriteFile(_ context.Context, req *connect.Request[pb.WriteFileRequest]) (*connect.Response[pb.WriteFileResponse], error) {
	r := req.Msg
	b, p, err := s.file(r.GetSandboxId(), r.GetPath())
	if err != nil {
		return nil, err
	}
	b.store(p, bytes.Clone(r.GetContent()))
	return connect.NewResponse(&pb.WriteFileResponse{Path: r.GetPath(), Size: int64(len(r.GetContent()))}), nil
}

func (s service) ReadFile(_ context.Context, req *connect.Request[pb.ReadFileRequest]) (*connect.Response[pb.ReadFileResponse], error) {
	b, p, err := s.file(req.Msg.GetSandboxId(), req.Msg.GetPath())
	if err != nil {
		return nil, err
	}
	data, err := b.load(p)
	if err != nil {
		return nil, err
	}
	if len(data) > maxWholeFile {
		return nil, connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("%s is larger than %d MiB: use ReadFileStream", req.Msg.GetPath(), maxWholeFile>>20))
	}
	return connect.NewResponse(&pb.ReadFileResponse{Content: data}), nil
}

// WriteFileStream takes the header first, then chunks; the file appears whole when
// the stream ends cleanly, never half-written.
func (s service) WriteFileStream(_ context.Context, stream *connect.ClientStream[pb.WriteFileStreamRequest]) (*connect.Response[pb.WriteFileResponse], error) {
	if !stream.Receive() {
		if err := stream.Err(); err != nil {
			return nil, err
		}
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("empty stream: the first message must be the header"))
	}
	hdr := stream.Msg().GetHeader()
	if hdr == nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("the first message must be the header"))
	}
	b, p, err := s.file(hdr.GetSandboxId(), hdr.GetPath())
	if err != nil {
		return nil, err
	}
	data := bytes.Clone(hdr.GetContent())
	for stream.Receive() {
		if stream.Msg().GetHeader() != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("a second header in the stream"))
		}
		data = append(data, stream.Msg().GetChunk()...)
	}
	if err := stream.Err(); err != nil {
		return nil, err
	}
	if data == nil {
		data = []byte{}
	}
	b.store(p, data)
	return connect.NewResponse(&pb.WriteFileResponse{Path: hdr.GetPath(), Size: int64(len(data))}), nil
}

// ReadFileStream sends the file in 64 KiB chunks (none for an empty file).
func (s service) ReadFileStream(_ context.Context, req *connect.Request[pb.ReadFileRequest], stream *connect.ServerStream[pb.ReadFileStreamResponse]) error {
	b, p, err := s.file(req.Msg.GetSandboxId(), req.Msg.GetPath())
	if err != nil {
		return err
	}
	data, err := b.load(p)
	if err != nil {
		return err
	}
	for len(data) > 0 {
		n := min(len(data), streamChunk)
		if err := stream.Send(&pb.ReadFileStreamResponse{Chunk: data[:n]}); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}
