package rpc_test

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
)

func TestExec(t *testing.T) {
	a := startAgent(t)
	c, ctx := a.Client, ctxT(t)
	id := create(t, c, map[string]string{"FROM_SANDBOX": "box", "BOTH": "box"})
	for _, tc := range []struct {
		cmd            string
		args           []string
		env            map[string]string
		cwd            string
		stdout, stderr string
		code           int32
	}{
		{cmd: "echo", args: []string{"hi", "there"}, stdout: "hi there\n"},
		{cmd: "/bin/sh", args: []string{"-c", "echo oops >&2; exit 42"}, stderr: "oops\n", code: 42},
		{cmd: "printenv", args: []string{"FROM_SANDBOX"}, stdout: "box\n"},
		{cmd: "printenv", args: []string{"BOTH"}, env: map[string]string{"BOTH": "req"}, stdout: "req\n"},
		{cmd: "printenv", args: []string{"UNSET"}, code: 1},
		{cmd: "pwd", stdout: "/home/user\n"},
		{cmd: "pwd", cwd: "/tmp", stdout: "/tmp\n"},
		{cmd: "id", args: []string{"-un"}, stdout: "user\n"},
	} {
		resp, err := c.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: id, Cmd: tc.cmd, Args: tc.args, EnvVars: tc.env, Cwd: tc.cwd}))
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
	resp, err := c.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: id, Cmd: "sleep", Args: []string{"30"}, TimeoutSec: 1}))
	if err != nil || !resp.Msg.GetTimedOut() || resp.Msg.GetExitCode() != -1 {
		t.Fatalf("sleep past the timeout: %v %v", resp, err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the timeout took %v", d)
	}
	for _, bad := range []*pb.ExecRequest{
		{SandboxId: id, Cmd: "cat", Stdin: true},
		{SandboxId: id, Cmd: "tty", Pty: &pb.PtySize{Cols: 80, Rows: 24}},
		{SandboxId: id},
	} {
		_, err = c.Exec(ctx, connect.NewRequest(bad))
		wantCode(t, err, connect.CodeInvalidArgument, "")
	}
}

// Unary Exec keeps at most max_output_bytes of each stream and reads the rest without
// keeping it: a command printing 64 MiB on each runs to its end, and the answer says
// how much it printed.
func TestExecOutputCap(t *testing.T) {
	a := startAgent(t)
	c, ctx := a.Client, ctxT(t)
	id := create(t, c, nil)
	const big = 64 << 20
	script := "head -c 67108864 /dev/zero; head -c 67108864 /dev/zero >&2; exit 4"
	for _, tc := range []struct {
		max, want int64
	}{
		{0, 1 << 20}, // the default
		{1000, 1000},
		{16 << 20, 16 << 20},
	} {
		resp, err := c.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: id, Cmd: "sh", Args: []string{"-c", script}, MaxOutputBytes: tc.max, TimeoutSec: 300}))
		if err != nil {
			t.Fatalf("max %d: %v", tc.max, err)
		}
		m := resp.Msg
		if int64(len(m.GetStdout())) != tc.want || int64(len(m.GetStderr())) != tc.want || m.GetExitCode() != 4 || m.GetTimedOut() ||
			!m.GetStdoutTruncated() || !m.GetStderrTruncated() || m.GetStdoutTotalBytes() != big || m.GetStderrTotalBytes() != big {
			t.Errorf("max %d: kept %d and %d bytes, exit %d, truncated %v %v, totals %d %d; want %d each of %d, exit 4",
				tc.max, len(m.GetStdout()), len(m.GetStderr()), m.GetExitCode(), m.GetStdoutTruncated(), m.GetStderrTruncated(),
				m.GetStdoutTotalBytes(), m.GetStderrTotalBytes(), tc.want, big)
		}
	}
	// Output up to the cap is whole and not truncated.
	resp, err := c.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: id, Cmd: "printf", Args: []string{"12345"}, MaxOutputBytes: 5}))
	if err != nil || string(resp.Msg.GetStdout()) != "12345" || resp.Msg.GetStdoutTruncated() || resp.Msg.GetStdoutTotalBytes() != 5 || resp.Msg.GetStderrTotalBytes() != 0 {
		t.Errorf("output at the cap: %v %v", resp, err)
	}
	for _, bad := range []int64{-1, 16<<20 + 1} {
		_, err := c.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: id, Cmd: "true", MaxOutputBytes: bad}))
		wantCode(t, err, connect.CodeInvalidArgument, "max_output_bytes")
	}
}

type streamResult struct {
	pid            uint32
	stdout, stderr []byte
	exit           *pb.ExecExit
	err            error
}

// collect reads an ExecStream to its end; started, when set, receives the pid.
func collect(stream *connect.ServerStreamForClient[pb.ExecStreamResponse], err error, started ...chan<- uint32) streamResult {
	r := streamResult{err: err}
	if err != nil {
		return r
	}
	for stream.Receive() {
		switch ev := stream.Msg().GetEvent().(type) {
		case *pb.ExecStreamResponse_StartPid:
			r.pid = ev.StartPid
			for _, c := range started {
				c <- ev.StartPid
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

func TestExecStreamStdin(t *testing.T) {
	a := startAgent(t)
	c, ctx := a.Client, ctxT(t)
	id := create(t, c, nil)

	r := collect(c.ExecStream(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: id, Cmd: "sh", Args: []string{"-c", "exit 3"}})))
	if r.err != nil || r.pid == 0 || r.exit.GetExitCode() != 3 || r.exit.GetStatus() != "exit status 3" {
		t.Fatalf("exit 3: %+v", r)
	}

	// stdin: each chunk comes back as it is sent, eof ends cat.
	stream, err := c.ExecStream(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: id, Cmd: "cat", Stdin: true}))
	if err != nil {
		t.Fatal(err)
	}
	if !stream.Receive() {
		t.Fatal(stream.Err())
	}
	pid := stream.Msg().GetStartPid()
	for _, chunk := range []string{"hello ", "world\n"} {
		if _, err := c.ExecInput(ctx, connect.NewRequest(&pb.ExecInputRequest{SandboxId: id, Pid: pid, Data: []byte(chunk)})); err != nil {
			t.Fatal(err)
		}
		if !stream.Receive() || string(stream.Msg().GetStdout()) != chunk {
			t.Fatalf("echo of %q: %v %v", chunk, stream.Msg(), stream.Err())
		}
	}
	_, err = c.ExecResize(ctx, connect.NewRequest(&pb.ExecResizeRequest{SandboxId: id, Pid: pid, Size: &pb.PtySize{Cols: 80, Rows: 24}}))
	wantCode(t, err, connect.CodeInvalidArgument, "has no pty")
	if _, err := c.ExecInput(ctx, connect.NewRequest(&pb.ExecInputRequest{SandboxId: id, Pid: pid, Eof: true})); err != nil {
		t.Fatal(err)
	}
	if r := collect(stream, nil); r.err != nil || r.exit.GetExitCode() != 0 || len(r.stdout) != 0 {
		t.Fatalf("cat after eof: %+v", r)
	}
	// The command is gone, and so is its pid; pids of other processes were never ours.
	for _, p := range []uint32{pid, 1} {
		_, err = c.ExecInput(ctx, connect.NewRequest(&pb.ExecInputRequest{SandboxId: id, Pid: p, Data: []byte("x")}))
		wantCode(t, err, connect.CodeNotFound, "no command with stdin or a pty")
	}
	for _, size := range []*pb.PtySize{{Cols: 0, Rows: 24}, {Cols: 80, Rows: 1001}} {
		r := collect(c.ExecStream(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: id, Cmd: "tty", Pty: size})))
		wantCode(t, r.err, connect.CodeInvalidArgument, "pty size")
	}
}

func TestExecStreamPTY(t *testing.T) {
	a := startAgent(t)
	c, ctx := a.Client, ctxT(t)
	id := create(t, c, nil)
	pty := &pb.PtySize{Cols: 80, Rows: 24}

	if r := collect(c.ExecStream(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: id, Cmd: "tty", Pty: pty}))); r.err != nil ||
		!strings.HasPrefix(string(r.stdout), "/dev/pts/") || r.exit.GetExitCode() != 0 {
		t.Fatalf("tty: %+v", r)
	}
	stream, err := c.ExecStream(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: id, Cmd: "sh", Args: []string{"-c", "read line; stty size; echo got $line"}, Pty: pty}))
	started, done := make(chan uint32, 1), make(chan streamResult, 1)
	go func() { done <- collect(stream, err, started) }()
	pid := <-started
	if _, err := c.ExecResize(ctx, connect.NewRequest(&pb.ExecResizeRequest{SandboxId: id, Pid: pid, Size: &pb.PtySize{Cols: 120, Rows: 40}})); err != nil {
		t.Fatal(err)
	}
	_, err = c.ExecResize(ctx, connect.NewRequest(&pb.ExecResizeRequest{SandboxId: id, Pid: pid, Size: &pb.PtySize{Cols: 0, Rows: 40}}))
	wantCode(t, err, connect.CodeInvalidArgument, "pty size")
	if _, err := c.ExecInput(ctx, connect.NewRequest(&pb.ExecInputRequest{SandboxId: id, Pid: pid, Data: []byte("typed\n")})); err != nil {
		t.Fatal(err)
	}
	// The terminal echoes the input, then the command prints its size and the line.
	if r := <-done; r.err != nil || !strings.Contains(string(r.stdout), "40 120") || !strings.Contains(string(r.stdout), "got typed") || r.exit.GetExitCode() != 0 {
		t.Fatalf("sh in a pty: %+v (stdout %q)", r, r.stdout)
	}
}

// Streams end: with their sandbox, at their timeout, and with their caller (which
// also ends the command).
func TestExecStreamEnds(t *testing.T) {
	a := startAgent(t)
	c, ctx := a.Client, ctxT(t)
	id := create(t, c, nil)

	r := collect(c.ExecStream(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: id, Cmd: "sleep", Args: []string{"30"}, TimeoutSec: 1})))
	if r.err != nil || !r.exit.GetTimedOut() || r.exit.GetExitCode() != -1 || r.exit.GetStatus() != "timed out" {
		t.Fatalf("timed out stream: %+v", r)
	}

	short, cancel := context.WithCancel(ctx)
	stream, err := c.ExecStream(short, connect.NewRequest(&pb.ExecRequest{SandboxId: id, Cmd: "cat", Stdin: true}))
	if err != nil || !stream.Receive() {
		t.Fatalf("cat: %v %v", err, stream.Err())
	}
	pid := stream.Msg().GetStartPid()
	cancel()
	collect(stream, nil)
	// envd shares the test's pid namespace, so the guest pid is the process's here.
	waitGone(t, int(pid))

	stream, err = c.ExecStream(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: id, Cmd: "cat", Stdin: true}))
	started, done := make(chan uint32, 1), make(chan streamResult, 1)
	go func() { done <- collect(stream, err, started) }()
	<-started
	if _, err := c.DestroySandbox(ctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: id})); err != nil {
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
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d outlived the caller that left it", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A command still streaming when the test ends does not hold up the harness's cleanup
// (which would otherwise wait for the stream, and the stream for the cleanup).
func TestCleanupEndsStreams(t *testing.T) {
	t.Run("inner", func(t *testing.T) {
		a := startAgent(t)
		id := create(t, a.Client, nil)
		stream, err := a.Client.ExecStream(context.Background(), connect.NewRequest(&pb.ExecRequest{SandboxId: id, Cmd: "cat", Stdin: true}))
		if err != nil || !stream.Receive() {
			t.Fatalf("cat: %v %v", err, stream.Err())
		}
	})
}
