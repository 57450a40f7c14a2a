package sandboxes

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
	"github.com/wrennhq/wrenn/internal/hostproto"
	"github.com/wrennhq/wrenn/internal/ident"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// Command is a command to run in a sandbox.
type Command struct {
	Cmd        string
	Args       []string
	Env        map[string]string
	Cwd        string
	TimeoutSec int
	// Stdin keeps stdin open for ExecInput; PTY runs the command in a terminal of
	// that size. Both only for ExecStream.
	Stdin bool
	PTY   *PTYSize
}

// PTYSize is a terminal's size in characters.
type PTYSize struct {
	Cols uint32 `json:"cols"`
	Rows uint32 `json:"rows"`
}

// maxPTY bounds a terminal's columns and rows.
const maxPTY = 1000

func (c PTYSize) valid() error {
	if c.Cols < 1 || c.Cols > maxPTY || c.Rows < 1 || c.Rows > maxPTY {
		return fmt.Errorf("%w: pty cols and rows must be 1..%d", core.ErrInvalid, maxPTY)
	}
	return nil
}

// MaxCommandBytes bounds a command's cmd, args and env together, counted as the
// kernel counts them for execve (each string plus its NUL, env as "K=V"). Linux's
// ARG_MAX is a quarter of the stack limit (2 MiB with the usual 8 MiB stack) and a
// single string may be at most 128 KiB; the whole command within 128 KiB keeps every
// request well inside what any guest can exec, so a command is refused here with a
// 400 instead of failing in the guest.
const MaxCommandBytes = 128 << 10

// check explains why the command cannot be passed to the guest: a NUL byte would
// truncate (or be refused in) execve's C strings, invalid UTF-8 cannot travel in
// protobuf strings, and the whole must fit MaxCommandBytes.
func (c Command) check() error {
	bad := func(err error) error { return fmt.Errorf("%w: %v", core.ErrInvalid, err) }
	if c.Cmd == "" {
		return fmt.Errorf("%w: cmd is required", core.ErrInvalid)
	}
	if err := ident.CheckText("cmd", c.Cmd, -1); err != nil {
		return bad(err)
	}
	if err := ident.CheckText("cwd", c.Cwd, 4096); err != nil {
		return bad(err)
	}
	size := len(c.Cmd) + 1
	for i, a := range c.Args {
		if err := ident.CheckText(fmt.Sprintf("args[%d]", i), a, -1); err != nil {
			return bad(err)
		}
		size += len(a) + 1
	}
	if err := ident.CheckEnvVars(c.Env); err != nil {
		return bad(err)
	}
	for k, v := range c.Env {
		size += len(k) + len(v) + 2
	}
	if size > MaxCommandBytes {
		return fmt.Errorf("%w: cmd, args and env_vars together are %d bytes, more than %d (128 KiB)", core.ErrInvalid, size, MaxCommandBytes)
	}
	return nil
}

func (c Command) request(id string) (*pb.ExecRequest, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	if c.TimeoutSec < 0 || c.TimeoutSec > 24*3600 {
		return nil, fmt.Errorf("%w: timeout_sec out of range 0..86400", core.ErrInvalid)
	}
	req := &pb.ExecRequest{SandboxId: id, Cmd: c.Cmd, Args: c.Args, EnvVars: c.Env, Cwd: c.Cwd, TimeoutSec: int32(c.TimeoutSec), Stdin: c.Stdin}
	if c.PTY != nil {
		if err := c.PTY.valid(); err != nil {
			return nil, err
		}
		req.Pty = &pb.PtySize{Cols: c.PTY.Cols, Rows: c.PTY.Rows}
	}
	return req, nil
}

// ExecResult is a finished command. Stdout and Stderr are the first maxOutput bytes
// of each; the totals count every byte the command wrote.
type ExecResult struct {
	Stdout           []byte
	Stderr           []byte
	ExitCode         int
	DurationMS       int64
	TimedOut         bool
	StdoutTruncated  bool
	StderrTruncated  bool
	StdoutTotalBytes int64
	StderrTotalBytes int64
}

// Exec runs a command in a running sandbox of the principal's team to its end (a
// paused one is a conflict: resume it first),
// keeping at most maxOutput bytes of each of stdout and stderr (0 = the default,
// hostproto.DefaultExecOutputBytes; at most hostproto.MaxExecOutputBytes). The cap is
// what bounds the memory one exec takes here: the agent's answer is at most twice it.
func (s *Service) Exec(ctx context.Context, p *core.Principal, id string, c Command, maxOutput int64) (*ExecResult, error) {
	if c.Stdin || c.PTY != nil {
		return nil, fmt.Errorf("%w: stdin and pty need the exec stream", core.ErrInvalid)
	}
	if maxOutput < 0 || maxOutput > hostproto.MaxExecOutputBytes {
		return nil, fmt.Errorf("%w: max_output_bytes must be 1..%d (16 MiB), or 0 for the default (%d); use the exec stream for more", core.ErrInvalid, hostproto.MaxExecOutputBytes, hostproto.DefaultExecOutputBytes)
	}
	req, err := c.request(id)
	if err != nil {
		return nil, err
	}
	req.MaxOutputBytes = maxOutput
	row, agent, err := s.liveAgent(ctx, p, id)
	if err != nil {
		return nil, err
	}
	resp, err := agent.Exec(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, s.opError(ctx, row, agent, "exec in "+id, err)
	}
	m := resp.Msg
	return &ExecResult{
		Stdout: m.GetStdout(), Stderr: m.GetStderr(), ExitCode: int(m.GetExitCode()), DurationMS: m.GetDurationMs(), TimedOut: m.GetTimedOut(),
		StdoutTruncated: m.GetStdoutTruncated(), StderrTruncated: m.GetStderrTruncated(),
		StdoutTotalBytes: m.GetStdoutTotalBytes(), StderrTotalBytes: m.GetStderrTotalBytes(),
	}, nil
}

// ExecEvent is one step of a running command: output or exit.
type ExecEvent struct {
	Stdout   []byte
	Stderr   []byte
	Exited   bool
	ExitCode int
	Status   string
	TimedOut bool
}

// ExecSession is a command started in a sandbox the caller was authorised for; input
// and resizes go to that command only.
type ExecSession struct {
	agent  hostagentv1connect.HostAgentServiceClient
	id     string
	pid    uint32
	stream *connect.ServerStreamForClient[pb.ExecStreamResponse]
}

// StartExec starts a command in a sandbox of the principal's team and returns once it
// runs (or failed to start); Events then delivers its output and exit.
func (s *Service) StartExec(ctx context.Context, p *core.Principal, id string, c Command) (*ExecSession, error) {
	req, err := c.request(id)
	if err != nil {
		return nil, err
	}
	row, agent, err := s.liveAgent(ctx, p, id)
	if err != nil {
		return nil, err
	}
	stream, err := agent.ExecStream(ctx, connect.NewRequest(req))
	if err != nil {
		return nil, s.opError(ctx, row, agent, "exec in "+id, err)
	}
	// The agent sends the start event first; anything else means it failed to start.
	if !stream.Receive() {
		err := stream.Err()
		stream.Close()
		if err == nil {
			err = errors.New("stream ended before the command started")
		}
		return nil, s.opError(ctx, row, agent, "exec in "+id, err)
	}
	pid, ok := stream.Msg().GetEvent().(*pb.ExecStreamResponse_StartPid)
	if !ok {
		stream.Close()
		return nil, fmt.Errorf("exec in %s: the agent sent %T before the start event", id, stream.Msg().GetEvent())
	}
	return &ExecSession{agent: agent, id: id, pid: pid.StartPid, stream: stream}, nil
}

// PID is the command's process id in the guest.
func (e *ExecSession) PID() uint32 { return e.pid }

// Events calls emit for each output and the exit event as they happen; it returns
// when the command ended, emit failed or the stream broke.
func (e *ExecSession) Events(emit func(ExecEvent) error) error {
	for e.stream.Receive() {
		var ev ExecEvent
		switch m := e.stream.Msg().GetEvent().(type) {
		case *pb.ExecStreamResponse_Stdout:
			ev.Stdout = m.Stdout
		case *pb.ExecStreamResponse_Stderr:
			ev.Stderr = m.Stderr
		case *pb.ExecStreamResponse_Exit:
			ev = ExecEvent{Exited: true, ExitCode: int(m.Exit.GetExitCode()), Status: m.Exit.GetStatus(), TimedOut: m.Exit.GetTimedOut()}
		default:
			continue
		}
		if err := emit(ev); err != nil {
			return err
		}
	}
	if err := e.stream.Err(); err != nil {
		return fmt.Errorf("exec in %s: %w", e.id, agentError(err))
	}
	return nil
}

// Input sends data to the command's stdin or pty; eof ends its input afterwards.
func (e *ExecSession) Input(ctx context.Context, data []byte, eof bool) error {
	req := &pb.ExecInputRequest{SandboxId: e.id, Pid: e.pid, Data: data, Eof: eof}
	if _, err := e.agent.ExecInput(ctx, connect.NewRequest(req)); err != nil {
		return fmt.Errorf("input to %d in %s: %w", e.pid, e.id, agentError(err))
	}
	return nil
}

// Resize changes the size of the command's pty.
func (e *ExecSession) Resize(ctx context.Context, size PTYSize) error {
	if err := size.valid(); err != nil {
		return err
	}
	req := &pb.ExecResizeRequest{SandboxId: e.id, Pid: e.pid, Size: &pb.PtySize{Cols: size.Cols, Rows: size.Rows}}
	if _, err := e.agent.ExecResize(ctx, connect.NewRequest(req)); err != nil {
		return fmt.Errorf("resize %d in %s: %w", e.pid, e.id, agentError(err))
	}
	return nil
}

// Close ends the session's stream (the agent then stops waiting for the command).
func (e *ExecSession) Close() error { return e.stream.Close() }
