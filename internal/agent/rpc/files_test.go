package rpc_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
)

// writeStream sends data in chunks of at most chunk bytes after a header for path.
func writeStream(t *testing.T, c hostagentv1connect.HostAgentServiceClient, id, path string, data []byte, chunk int) (*pb.WriteFileResponse, error) {
	t.Helper()
	ws := c.WriteFileStream(ctxT(t))
	// io.EOF from Send means the agent already answered (an error): CloseAndReceive
	// returns it.
	err := ws.Send(&pb.WriteFileStreamRequest{Part: &pb.WriteFileStreamRequest_Header{Header: &pb.WriteFileRequest{SandboxId: id, Path: path}}})
	for rest := data; len(rest) > 0 && err == nil; {
		n := min(len(rest), chunk)
		err = ws.Send(&pb.WriteFileStreamRequest{Part: &pb.WriteFileStreamRequest_Chunk{Chunk: rest[:n]}})
		rest = rest[n:]
	}
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	resp, err := ws.CloseAndReceive()
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

// readStream returns a file's content and the number of chunks it came in.
func readStream(t *testing.T, c hostagentv1connect.HostAgentServiceClient, id, path string) ([]byte, int, error) {
	t.Helper()
	rs, err := c.ReadFileStream(ctxT(t), connect.NewRequest(&pb.ReadFileRequest{SandboxId: id, Path: path}))
	if err != nil {
		return nil, 0, err
	}
	var got bytes.Buffer
	chunks := 0
	for rs.Receive() {
		if n := len(rs.Msg().GetChunk()); n > 1<<20 {
			t.Fatalf("chunk of %d bytes", n)
		}
		got.Write(rs.Msg().GetChunk())
		chunks++
	}
	return got.Bytes(), chunks, rs.Err()
}

func TestFileStreams(t *testing.T) {
	a := startAgent(t)
	c, ctx := a.Client, ctxT(t)
	id := create(t, c, nil)

	// 2.5 MiB, so the read comes back in several 1 MiB chunks.
	data := make([]byte, 5<<19+7)
	for i := range data {
		data[i] = byte(i * 7)
	}
	wr, err := writeStream(t, c, id, "/home/user/big.bin", data, 50<<10)
	if err != nil || wr.GetSize() != int64(len(data)) || wr.GetPath() != "/home/user/big.bin" {
		t.Fatalf("write stream: %v %v", wr, err)
	}
	got, chunks, err := readStream(t, c, id, "/home/user/big.bin")
	if err != nil || !bytes.Equal(got, data) || chunks != 3 {
		t.Fatalf("read stream: %d bytes in %d chunks, err %v", len(got), chunks, err)
	}
	// The unary read, and a command (relative to the default cwd), see the same file.
	rf, err := c.ReadFile(ctx, connect.NewRequest(&pb.ReadFileRequest{SandboxId: id, Path: "/home/user/big.bin"}))
	if err != nil || !bytes.Equal(rf.Msg.GetContent(), data) {
		t.Fatalf("read: %v", err)
	}
	// (2.5 MiB is more than Exec keeps by default: the command asks for more.)
	ex, err := c.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: id, Cmd: "cat", Args: []string{"big.bin"}, MaxOutputBytes: 4 << 20}))
	if err != nil || !bytes.Equal(ex.Msg.GetStdout(), data) || ex.Msg.GetStdoutTruncated() {
		t.Fatalf("cat: %d bytes, truncated %v, %v", len(ex.Msg.GetStdout()), ex.Msg.GetStdoutTruncated(), err)
	}

	// An empty file round-trips as no chunks.
	if _, err := c.WriteFile(ctx, connect.NewRequest(&pb.WriteFileRequest{SandboxId: id, Path: "/home/user/empty"})); err != nil {
		t.Fatal(err)
	}
	if got, chunks, err := readStream(t, c, id, "/home/user/empty"); err != nil || len(got) != 0 || chunks != 0 {
		t.Fatalf("empty file: %d bytes in %d chunks, %v", len(got), chunks, err)
	}
}

func TestFileErrors(t *testing.T) {
	a := startAgent(t)
	c, ctx := a.Client, ctxT(t)
	id := create(t, c, nil)

	_, err := c.ReadFile(ctx, connect.NewRequest(&pb.ReadFileRequest{SandboxId: id, Path: "/absent"}))
	wantCode(t, err, connect.CodeNotFound, "/absent")
	_, _, err = readStream(t, c, id, "/absent")
	wantCode(t, err, connect.CodeNotFound, "/absent")

	_, err = c.WriteFile(ctx, connect.NewRequest(&pb.WriteFileRequest{SandboxId: id}))
	wantCode(t, err, connect.CodeInvalidArgument, "path is required")
	_, err = c.ReadFile(ctx, connect.NewRequest(&pb.ReadFileRequest{SandboxId: id}))
	wantCode(t, err, connect.CodeInvalidArgument, "path is required")
	_, err = writeStream(t, c, id, "", []byte("x"), 1)
	wantCode(t, err, connect.CodeInvalidArgument, "path is required")
	// The agent answers before it has read the whole request, so now and then the
	// client's write loses that race and connect reports the write's EOF instead of the
	// answer ("unknown: write envelope: EOF"): try again then.
	for attempt := 1; ; attempt++ {
		ws := c.WriteFileStream(ctx)
		_ = ws.Send(&pb.WriteFileStreamRequest{Part: &pb.WriteFileStreamRequest_Chunk{Chunk: []byte("no header")}})
		_, err = ws.CloseAndReceive()
		if attempt < 3 && connect.CodeOf(err) == connect.CodeUnknown && strings.Contains(err.Error(), "write envelope") {
			continue
		}
		break
	}
	wantCode(t, err, connect.CodeInvalidArgument, "header")
}
