package hostagenttest_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
	"github.com/wrennhq/wrenn/internal/hostagenttest"
	"github.com/wrennhq/wrenn/internal/server/hostclient"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func create(t *testing.T, c hostagentv1connect.HostAgentServiceClient, id string, env map[string]string) *pb.Sandbox {
	t.Helper()
	resp, err := c.CreateSandbox(ctxT(t), connect.NewRequest(&pb.CreateSandboxRequest{SandboxId: id, Template: "base", EnvVars: env, TimeoutSec: 30}))
	if err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	return resp.Msg.GetSandbox()
}

func wantCode(t *testing.T, err error, code connect.Code) {
	t.Helper()
	if connect.CodeOf(err) != code {
		t.Fatalf("got %v, want code %v", err, code)
	}
}

func TestLifecycle(t *testing.T) {
	f := hostagenttest.New(t)
	c := f.Client()
	ctx := ctxT(t)

	sb := create(t, c, "sbaaaa", map[string]string{"A": "1"})
	if sb.GetState() != pb.SandboxState_SANDBOX_STATE_RUNNING || sb.GetTemplate() != "base" || sb.GetVcpus() != 1 ||
		sb.GetMemoryMb() != 512 || sb.GetTimeoutSec() != 30 || sb.GetHostIp() != "10.11.0.1" || sb.GetCreatedAt() == nil {
		t.Fatalf("created %v", sb)
	}
	create(t, c, "sbbbbb", nil)
	if got := f.Sandboxes(); !slices.Equal(got, []string{"sbaaaa", "sbbbbb"}) {
		t.Fatalf("Sandboxes() = %v", got)
	}

	_, err := c.CreateSandbox(ctx, connect.NewRequest(&pb.CreateSandboxRequest{SandboxId: "sbaaaa", Template: "base"}))
	wantCode(t, err, connect.CodeAlreadyExists)
	for _, bad := range []*pb.CreateSandboxRequest{
		{SandboxId: "", Template: "base"},
		{SandboxId: "sbcccc", Template: "x"},
		{SandboxId: "sbcccc", Vcpus: 17},
		{SandboxId: "sbcccc", Vcpus: -1},
		{SandboxId: "sbcccc", MemoryMb: 64},
		{SandboxId: "sbcccc", MemoryMb: 16385},
	} {
		_, err := c.CreateSandbox(ctx, connect.NewRequest(bad))
		wantCode(t, err, connect.CodeInvalidArgument)
	}
	_, err = c.CreateSandbox(ctx, connect.NewRequest(&pb.CreateSandboxRequest{SandboxId: "sbcccc", Template: "x"}))
	if ce := new(connect.Error); !errors.As(err, &ce) || ce.Message() != `invalid request: template "x": not found` {
		t.Fatalf("unknown template: %v", err)
	}

	list, err := c.ListSandboxes(ctx, connect.NewRequest(&pb.ListSandboxesRequest{}))
	if err != nil || len(list.Msg.GetSandboxes()) != 2 || list.Msg.GetSandboxes()[0].GetId() != "sbaaaa" {
		t.Fatalf("list: %v %v", list, err)
	}
	got, err := c.GetSandbox(ctx, connect.NewRequest(&pb.GetSandboxRequest{SandboxId: "sbbbbb"}))
	if err != nil || got.Msg.GetSandbox().GetHostIp() != "10.11.0.2" {
		t.Fatalf("get: %v %v", got, err)
	}
	if _, err := c.Ping(ctx, connect.NewRequest(&pb.PingRequest{SandboxId: "sbbbbb"})); err != nil {
		t.Fatal(err)
	}

	if _, err := c.DestroySandbox(ctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: "sbaaaa"})); err != nil {
		t.Fatal(err)
	}
	if got := f.Sandboxes(); !slices.Equal(got, []string{"sbbbbb"}) {
		t.Fatalf("after destroy: %v", got)
	}
	_, err = c.DestroySandbox(ctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: "sbaaaa"}))
	wantCode(t, err, connect.CodeNotFound)
	_, err = c.GetSandbox(ctx, connect.NewRequest(&pb.GetSandboxRequest{SandboxId: "sbaaaa"}))
	wantCode(t, err, connect.CodeNotFound)
	_, err = c.Ping(ctx, connect.NewRequest(&pb.PingRequest{SandboxId: "sbaaaa"}))
	wantCode(t, err, connect.CodeNotFound)
	_, err = c.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: "sbaaaa", Cmd: "true"}))
	wantCode(t, err, connect.CodeNotFound)
	_, err = c.ReadFile(ctx, connect.NewRequest(&pb.ReadFileRequest{SandboxId: "sbaaaa", Path: "/x"}))
	wantCode(t, err, connect.CodeNotFound)

	if n := f.Calls("CreateSandbox"); n != 10 {
		t.Fatalf("Calls(CreateSandbox) = %d, want 10", n)
	}
	if n := f.Calls("DestroySandbox"); n != 2 {
		t.Fatalf("Calls(DestroySandbox) = %d, want 2", n)
	}
	if n := f.Calls("NoSuchMethod"); n != 0 {
		t.Fatalf("Calls(NoSuchMethod) = %d", n)
	}
}

func TestFailNextCreate(t *testing.T) {
	f := hostagenttest.New(t)
	c := f.Client()
	f.FailNextCreate(connect.CodeResourceExhausted, "no capacity")
	_, err := c.CreateSandbox(ctxT(t), connect.NewRequest(&pb.CreateSandboxRequest{SandboxId: "sbaaaa", Template: "base"}))
	wantCode(t, err, connect.CodeResourceExhausted)
	if ce := new(connect.Error); !errors.As(err, &ce) || ce.Message() != "no capacity" {
		t.Fatalf("message: %v", err)
	}
	if len(f.Sandboxes()) != 0 {
		t.Fatal("a failed create left a sandbox")
	}
	create(t, c, "sbaaaa", nil) // only the next one fails
}

func TestUnauthenticated(t *testing.T) {
	f := hostagenttest.New(t)
	ctx := ctxT(t)
	for _, secret := range []string{"wrong", ""} {
		c := hostclient.New(f.Addr(), secret)
		_, err := c.ListSandboxes(ctx, connect.NewRequest(&pb.ListSandboxesRequest{}))
		wantCode(t, err, connect.CodeUnauthenticated)
		_, err = c.CreateSandbox(ctx, connect.NewRequest(&pb.CreateSandboxRequest{SandboxId: "sbaaaa", Template: "base"}))
		wantCode(t, err, connect.CodeUnauthenticated)
		stream, err := c.ExecStream(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: "sbaaaa", Cmd: "true"}))
		if err == nil {
			for stream.Receive() {
			}
			err = stream.Err()
		}
		wantCode(t, err, connect.CodeUnauthenticated)
		ws := c.WriteFileStream(ctx)
		_ = ws.Send(&pb.WriteFileStreamRequest{Part: &pb.WriteFileStreamRequest_Header{Header: &pb.WriteFileRequest{SandboxId: "sbaaaa", Path: "/x"}}})
		_, err = ws.CloseAndReceive()
		wantCode(t, err, connect.CodeUnauthenticated)
	}
	if len(f.Sandboxes()) != 0 {
		t.Fatal("an unauthenticated create made a sandbox")
	}
	if f.Secret() == "" {
		t.Fatal("empty secret")
	}
}

func TestExec(t *testing.T) {
	f := hostagenttest.New(t)
	c := f.Client()
	ctx := ctxT(t)
	create(t, c, "sbaaaa", map[string]string{"FROM_SANDBOX": "box", "BOTH": "box"})
	bin := []byte{0, 1, 2, 0xff, 0xfe, '\n', 0}
	if _, err := c.WriteFile(ctx, connect.NewRequest(&pb.WriteFileRequest{SandboxId: "sbaaaa", Path: "/tmp/bin", Content: bin})); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cmd            string
		args           []string
		env            map[string]string
		stdout, stderr string
		code           int32
	}{
		{cmd: "echo", args: []string{"hi", "there"}, stdout: "hi there\n"},
		{cmd: "echo", stdout: "\n"},
		{cmd: "true"},
		{cmd: "false", code: 1},
		{cmd: "exit", args: []string{"42"}, code: 42},
		{cmd: "env", args: []string{"FROM_SANDBOX"}, stdout: "box\n"},
		{cmd: "env", args: []string{"BOTH"}, env: map[string]string{"BOTH": "req"}, stdout: "req\n"},
		{cmd: "env", args: []string{"ONLY_REQ"}, env: map[string]string{"ONLY_REQ": "r"}, stdout: "r\n"},
		{cmd: "env", args: []string{"UNSET"}, code: 1},
		{cmd: "cat", args: []string{"/tmp/bin"}, stdout: string(bin)},
		{cmd: "cat", args: []string{"/nope"}, stderr: "cat: /nope: No such file or directory\n", code: 1},
		{cmd: "tty", stdout: "not a tty\n", code: 1},
		{cmd: "stderr", args: []string{"oh", "no"}, stderr: "oh no\n"},
		{cmd: "sleep", args: []string{"0.01"}},
		{cmd: "frobnicate", stderr: "fake: frobnicate: command not found\n", code: 127},
	} {
		resp, err := c.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: "sbaaaa", Cmd: tc.cmd, Args: tc.args, EnvVars: tc.env}))
		if err != nil {
			t.Fatalf("%s %v: %v", tc.cmd, tc.args, err)
		}
		m := resp.Msg
		if string(m.GetStdout()) != tc.stdout || string(m.GetStderr()) != tc.stderr || m.GetExitCode() != tc.code || m.GetTimedOut() {
			t.Errorf("%s %v: stdout %q stderr %q exit %d timed out %v; want %q %q %d", tc.cmd, tc.args,
				m.GetStdout(), m.GetStderr(), m.GetExitCode(), m.GetTimedOut(), tc.stdout, tc.stderr, tc.code)
		}
	}

	start := time.Now()
	resp, err := c.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: "sbaaaa", Cmd: "sleep", Args: []string{"30"}, TimeoutSec: 1}))
	if err != nil || !resp.Msg.GetTimedOut() || resp.Msg.GetExitCode() != -1 {
		t.Fatalf("sleep past the timeout: %v %v", resp, err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the timeout took %v", d)
	}

	_, err = c.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: "sbaaaa", Cmd: "cat", Stdin: true}))
	wantCode(t, err, connect.CodeInvalidArgument)
	_, err = c.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: "sbaaaa", Cmd: "tty", Pty: &pb.PtySize{Cols: 80, Rows: 24}}))
	wantCode(t, err, connect.CodeInvalidArgument)
	_, err = c.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: "sbaaaa"}))
	wantCode(t, err, connect.CodeInvalidArgument)
	_, err = c.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: "nosuch", Cmd: "true"}))
	wantCode(t, err, connect.CodeNotFound)

	// A client that gives up ends the command.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = c.Exec(short, connect.NewRequest(&pb.ExecRequest{SandboxId: "sbaaaa", Cmd: "sleep", Args: []string{"30"}}))
	if err == nil {
		t.Fatal("exec outlived its context")
	}
}

// streamEvents collects an ExecStream's events.
type streamResult struct {
	pid            uint32
	stdout, stderr []byte
	exit           *pb.ExecExit
	err            error
}

func collect(stream *connect.ServerStreamForClient[pb.ExecStreamResponse], started chan<- uint32) streamResult {
	var r streamResult
	for stream.Receive() {
		switch ev := stream.Msg().GetEvent().(type) {
		case *pb.ExecStreamResponse_StartPid:
			r.pid = ev.StartPid
			if started != nil {
				started <- ev.StartPid
			}
		case *pb.ExecStreamResponse_Stdout:
			r.stdout = append(r.stdout, ev.Stdout...)
		case *pb.ExecStreamResponse_Stderr:
			r.stderr = append(r.stderr, ev.Stderr...)
		case *pb.ExecStreamResponse_Exit:
			r.exit = ev.Exit
		}
	}
	r.err = stream.Err()
	return r
}

func TestExecStream(t *testing.T) {
	f := hostagenttest.New(t)
	c := f.Client()
	ctx := ctxT(t)
	create(t, c, "sbaaaa", nil)

	stream, err := c.ExecStream(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: "sbaaaa", Cmd: "exit", Args: []string{"3"}}))
	if err != nil {
		t.Fatal(err)
	}
	r := collect(stream, nil)
	if r.err != nil || r.pid < 100 || r.exit.GetExitCode() != 3 || r.exit.GetStatus() != "exit status 3" {
		t.Fatalf("exit 3: %+v", r)
	}

	// stdin: every chunk is echoed as it arrives, eof ends cat.
	stream, err = c.ExecStream(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: "sbaaaa", Cmd: "cat", Stdin: true}))
	if err != nil {
		t.Fatal(err)
	}
	if !stream.Receive() {
		t.Fatal(stream.Err())
	}
	pid := stream.Msg().GetStartPid()
	for _, chunk := range []string{"hello ", "world\n"} {
		if _, err := c.ExecInput(ctx, connect.NewRequest(&pb.ExecInputRequest{SandboxId: "sbaaaa", Pid: pid, Data: []byte(chunk)})); err != nil {
			t.Fatal(err)
		}
		if !stream.Receive() || string(stream.Msg().GetStdout()) != chunk {
			t.Fatalf("echo of %q: %v %v", chunk, stream.Msg(), stream.Err())
		}
	}
	_, err = c.ExecResize(ctx, connect.NewRequest(&pb.ExecResizeRequest{SandboxId: "sbaaaa", Pid: pid, Size: &pb.PtySize{Cols: 80, Rows: 24}}))
	wantCode(t, err, connect.CodeInvalidArgument) // no pty
	if _, err := c.ExecInput(ctx, connect.NewRequest(&pb.ExecInputRequest{SandboxId: "sbaaaa", Pid: pid, Eof: true})); err != nil {
		t.Fatal(err)
	}
	r = collect(stream, nil)
	if r.err != nil || r.exit.GetExitCode() != 0 || len(r.stdout) != 0 {
		t.Fatalf("cat after eof: %+v", r)
	}
	// The command is gone, so is its pid.
	_, err = c.ExecInput(ctx, connect.NewRequest(&pb.ExecInputRequest{SandboxId: "sbaaaa", Pid: pid, Data: []byte("x")}))
	wantCode(t, err, connect.CodeNotFound)
	_, err = c.ExecInput(ctx, connect.NewRequest(&pb.ExecInputRequest{SandboxId: "sbaaaa", Pid: 1, Data: []byte("x")}))
	wantCode(t, err, connect.CodeNotFound)

	// Bad pty sizes.
	for _, size := range []*pb.PtySize{{Cols: 0, Rows: 24}, {Cols: 80, Rows: 1001}} {
		stream, err = c.ExecStream(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: "sbaaaa", Cmd: "tty", Pty: size}))
		if err == nil {
			err = collect(stream, nil).err
		}
		wantCode(t, err, connect.CodeInvalidArgument)
	}
}

func TestPTY(t *testing.T) {
	f := hostagenttest.New(t)
	c := f.Client()
	ctx := ctxT(t)
	create(t, c, "sbaaaa", nil)
	pty := &pb.PtySize{Cols: 80, Rows: 24}

	stream, err := c.ExecStream(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: "sbaaaa", Cmd: "tty", Pty: pty}))
	if err != nil {
		t.Fatal(err)
	}
	if r := collect(stream, nil); r.err != nil || string(r.stdout) != "/dev/pts/0\n" || r.exit.GetExitCode() != 0 {
		t.Fatalf("tty: %+v", r)
	}

	stream, err = c.ExecStream(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: "sbaaaa", Cmd: "cat", Pty: pty}))
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan uint32, 1)
	done := make(chan streamResult, 1)
	go func() { done <- collect(stream, started) }()
	pid := <-started
	if _, err := c.ExecResize(ctx, connect.NewRequest(&pb.ExecResizeRequest{SandboxId: "sbaaaa", Pid: pid, Size: &pb.PtySize{Cols: 120, Rows: 40}})); err != nil {
		t.Fatal(err)
	}
	_, err = c.ExecResize(ctx, connect.NewRequest(&pb.ExecResizeRequest{SandboxId: "sbaaaa", Pid: pid, Size: &pb.PtySize{Cols: 0, Rows: 40}}))
	wantCode(t, err, connect.CodeInvalidArgument)
	if _, err := c.ExecInput(ctx, connect.NewRequest(&pb.ExecInputRequest{SandboxId: "sbaaaa", Pid: pid, Data: []byte("typed\n"), Eof: true})); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.err != nil || string(r.stdout) != "typed\n" || r.exit.GetExitCode() != 0 {
		t.Fatalf("cat in a pty: %+v", r)
	}
}

func TestExecStreamEnds(t *testing.T) {
	f := hostagenttest.New(t)
	c := f.Client()
	ctx := ctxT(t)
	create(t, c, "sbaaaa", nil)

	// Destroying the sandbox ends its commands.
	stream, err := c.ExecStream(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: "sbaaaa", Cmd: "cat", Stdin: true}))
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan uint32, 1)
	done := make(chan streamResult, 1)
	go func() { done <- collect(stream, started) }()
	<-started
	if _, err := c.DestroySandbox(ctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: "sbaaaa"})); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err == nil {
			t.Fatalf("command of a destroyed sandbox ended cleanly: %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("command outlived its sandbox")
	}

	// A stream timeout is reported in the exit event.
	create(t, c, "sbbbbb", nil)
	stream, err = c.ExecStream(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: "sbbbbb", Cmd: "sleep", Args: []string{"30"}, TimeoutSec: 1}))
	if err != nil {
		t.Fatal(err)
	}
	if r := collect(stream, nil); r.err != nil || !r.exit.GetTimedOut() || r.exit.GetExitCode() != -1 || r.exit.GetStatus() != "timed out" {
		t.Fatalf("timed out stream: %+v", r)
	}

	// A client that goes away leaves no command behind: the test's cleanup would hang.
	short, cancel := context.WithCancel(ctx)
	stream, err = c.ExecStream(short, connect.NewRequest(&pb.ExecRequest{SandboxId: "sbbbbb", Cmd: "cat", Stdin: true}))
	if err != nil {
		t.Fatal(err)
	}
	if !stream.Receive() {
		t.Fatal(stream.Err())
	}
	cancel()
	collect(stream, nil)
}

func TestFiles(t *testing.T) {
	f := hostagenttest.New(t)
	c := f.Client()
	ctx := ctxT(t)
	create(t, c, "sbaaaa", nil)

	// 200 KiB + a bit, so the read comes back in several 64 KiB chunks.
	data := make([]byte, 200<<10+7)
	for i := range data {
		data[i] = byte(i * 7)
	}
	ws := c.WriteFileStream(ctx)
	if err := ws.Send(&pb.WriteFileStreamRequest{Part: &pb.WriteFileStreamRequest_Header{Header: &pb.WriteFileRequest{SandboxId: "sbaaaa", Path: "/home/user/big.bin"}}}); err != nil {
		t.Fatal(err)
	}
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 50<<10)
		if err := ws.Send(&pb.WriteFileStreamRequest{Part: &pb.WriteFileStreamRequest_Chunk{Chunk: rest[:n]}}); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	wr, err := ws.CloseAndReceive()
	if err != nil || wr.Msg.GetSize() != int64(len(data)) || wr.Msg.GetPath() != "/home/user/big.bin" {
		t.Fatalf("write stream: %v %v", wr, err)
	}

	rs, err := c.ReadFileStream(ctx, connect.NewRequest(&pb.ReadFileRequest{SandboxId: "sbaaaa", Path: "/home/user/big.bin"}))
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	chunks := 0
	for rs.Receive() {
		if len(rs.Msg().GetChunk()) > 64<<10 {
			t.Fatalf("chunk of %d bytes", len(rs.Msg().GetChunk()))
		}
		got.Write(rs.Msg().GetChunk())
		chunks++
	}
	if rs.Err() != nil || !bytes.Equal(got.Bytes(), data) || chunks != 4 {
		t.Fatalf("read stream: %d bytes in %d chunks, err %v", got.Len(), chunks, rs.Err())
	}

	// Unary read of the same file, and cat sees it too (relative to the default cwd).
	rf, err := c.ReadFile(ctx, connect.NewRequest(&pb.ReadFileRequest{SandboxId: "sbaaaa", Path: "/home/user/big.bin"}))
	if err != nil || !bytes.Equal(rf.Msg.GetContent(), data) {
		t.Fatalf("read: %v", err)
	}
	ex, err := c.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: "sbaaaa", Cmd: "cat", Args: []string{"big.bin"}}))
	if err != nil || !bytes.Equal(ex.Msg.GetStdout(), data) {
		t.Fatalf("cat: %v", err)
	}

	_, err = c.ReadFile(ctx, connect.NewRequest(&pb.ReadFileRequest{SandboxId: "sbaaaa", Path: "/absent"}))
	wantCode(t, err, connect.CodeNotFound)
	rs, err = c.ReadFileStream(ctx, connect.NewRequest(&pb.ReadFileRequest{SandboxId: "sbaaaa", Path: "/absent"}))
	if err == nil {
		for rs.Receive() {
		}
		err = rs.Err()
	}
	wantCode(t, err, connect.CodeNotFound)
	for _, p := range []string{"", "relative/path"} {
		_, err = c.WriteFile(ctx, connect.NewRequest(&pb.WriteFileRequest{SandboxId: "sbaaaa", Path: p}))
		wantCode(t, err, connect.CodeInvalidArgument)
		_, err = c.ReadFile(ctx, connect.NewRequest(&pb.ReadFileRequest{SandboxId: "sbaaaa", Path: p}))
		wantCode(t, err, connect.CodeInvalidArgument)
	}
	ws = c.WriteFileStream(ctx)
	_ = ws.Send(&pb.WriteFileStreamRequest{Part: &pb.WriteFileStreamRequest_Header{Header: &pb.WriteFileRequest{SandboxId: "sbaaaa"}}})
	_, err = ws.CloseAndReceive()
	wantCode(t, err, connect.CodeInvalidArgument)
	ws = c.WriteFileStream(ctx)
	_ = ws.Send(&pb.WriteFileStreamRequest{Part: &pb.WriteFileStreamRequest_Chunk{Chunk: []byte("no header")}})
	_, err = ws.CloseAndReceive()
	wantCode(t, err, connect.CodeInvalidArgument)

	// An empty file round-trips as no chunks.
	if _, err := c.WriteFile(ctx, connect.NewRequest(&pb.WriteFileRequest{SandboxId: "sbaaaa", Path: "/empty"})); err != nil {
		t.Fatal(err)
	}
	rs, err = c.ReadFileStream(ctx, connect.NewRequest(&pb.ReadFileRequest{SandboxId: "sbaaaa", Path: "/empty"}))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rs.Receive() {
		n++
	}
	if rs.Err() != nil || n != 0 {
		t.Fatalf("empty file: %d chunks, %v", n, rs.Err())
	}
}

// A command still running when the test ends does not hold up the fake's cleanup.
func TestCleanupEndsCommands(t *testing.T) {
	t.Run("inner", func(t *testing.T) {
		f := hostagenttest.New(t)
		c := f.Client()
		create(t, c, "sbaaaa", nil)
		stream, err := c.ExecStream(context.Background(), connect.NewRequest(&pb.ExecRequest{SandboxId: "sbaaaa", Cmd: "cat", Stdin: true}))
		if err != nil {
			t.Fatal(err)
		}
		if !stream.Receive() {
			t.Fatal(stream.Err())
		}
	})
}
