package sandboxes

import (
	"context"
	"errors"
	"fmt"
	"io"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/internal/ident"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// fileChunk is the size of the messages a file is streamed to the agent in.
const fileChunk = 1 << 20

// Ping marks a sandbox of the principal's team active, postponing its idle timeout.
// A paused sandbox has no idle timeout to postpone: that is a conflict (resume it).
func (s *Service) Ping(ctx context.Context, p *core.Principal, id string) error {
	row, agent, err := s.liveAgent(ctx, p, id)
	if err != nil {
		return err
	}
	if _, err := agent.Ping(ctx, connect.NewRequest(&pb.PingRequest{SandboxId: id})); err != nil {
		return s.opError(ctx, row, agent, "ping "+id, err)
	}
	return nil
}

// WriteFile streams r to path in a sandbox of the principal's team; it returns the
// number of bytes written.
func (s *Service) WriteFile(ctx context.Context, p *core.Principal, id, path string, r io.Reader) (int64, error) {
	if err := checkPath(path); err != nil {
		return 0, err
	}
	row, agent, err := s.liveAgent(ctx, p, id)
	if err != nil {
		return 0, err
	}
	stream := agent.WriteFileStream(ctx)
	if err := stream.Send(&pb.WriteFileStreamRequest{Part: &pb.WriteFileStreamRequest_Header{Header: &pb.WriteFileRequest{SandboxId: id, Path: path}}}); err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("write %s in %s: %w", path, id, err)
	}
	buf := make([]byte, fileChunk)
	for {
		n, rerr := io.ReadFull(r, buf)
		// A broken upload (the client stalled or left) is reported as such: its request
		// context is gone with it, so sending what arrived would only fail for that.
		if rerr != nil && !errors.Is(rerr, io.EOF) && !errors.Is(rerr, io.ErrUnexpectedEOF) {
			return 0, fmt.Errorf("%w: read upload: %w", core.ErrInvalid, rerr)
		}
		if n > 0 {
			if err := stream.Send(&pb.WriteFileStreamRequest{Part: &pb.WriteFileStreamRequest_Chunk{Chunk: buf[:n]}}); err != nil {
				break // the agent ended the stream; CloseAndReceive says why
			}
		}
		if rerr != nil {
			break // io.EOF or io.ErrUnexpectedEOF: the whole upload arrived
		}
	}
	resp, err := stream.CloseAndReceive()
	if err != nil {
		return 0, s.opError(ctx, row, agent, fmt.Sprintf("write %s in %s", path, id), err)
	}
	return resp.Msg.GetSize(), nil
}

// ReadFile streams path from a sandbox of the principal's team into w; start is called
// once the file is known to exist, before the first byte (to set response headers).
func (s *Service) ReadFile(ctx context.Context, p *core.Principal, id, path string, start func(), w io.Writer) error {
	if err := checkPath(path); err != nil {
		return err
	}
	row, agent, err := s.liveAgent(ctx, p, id)
	if err != nil {
		return err
	}
	stream, err := agent.ReadFileStream(ctx, connect.NewRequest(&pb.ReadFileRequest{SandboxId: id, Path: path}))
	if err != nil {
		return s.opError(ctx, row, agent, fmt.Sprintf("read %s in %s", path, id), err)
	}
	defer stream.Close()
	started := false
	for stream.Receive() {
		if !started {
			start()
			started = true
		}
		if _, err := w.Write(stream.Msg().GetChunk()); err != nil {
			return err
		}
	}
	if err := stream.Err(); err != nil {
		if started {
			return fmt.Errorf("read %s in %s: %w", path, id, agentError(err))
		}
		return s.opError(ctx, row, agent, fmt.Sprintf("read %s in %s", path, id), err)
	}
	if !started {
		start() // an empty file
	}
	return nil
}

// checkPath refuses a guest path no file can have (a NUL byte, not UTF-8, longer
// than Linux's PATH_MAX) before it travels to the agent.
func checkPath(path string) error {
	if path == "" {
		return fmt.Errorf("%w: path is required", core.ErrInvalid)
	}
	if err := ident.CheckText("path", path, 4096); err != nil {
		return fmt.Errorf("%w: %v", core.ErrInvalid, err)
	}
	return nil
}
