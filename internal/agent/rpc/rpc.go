// Package rpc serves the host agent's Connect API (hostagent.v1.HostAgentService) on
// top of the sandbox manager, behind a check of the caller's bearer credential.
package rpc

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
	"github.com/wrennhq/wrenn/internal/agent"
	"github.com/wrennhq/wrenn/internal/envdclient"
	"github.com/wrennhq/wrenn/internal/hostproto"
	"github.com/wrennhq/wrenn/internal/lifecycle"
	"github.com/wrennhq/wrenn/internal/metrics"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// MaxWholeFile bounds the unary ReadFile/WriteFile payload; larger files use the
// streaming RPCs.
const MaxWholeFile = 64 << 20

// streamChunk is the size of ReadFileStream messages.
const streamChunk = 1 << 20

// Sandboxes is what the RPC server needs of the sandbox manager; *agent.Manager is the
// implementation. The server only translates between the wire and these calls.
type Sandboxes interface {
	Create(ctx context.Context, spec agent.Spec) (*agent.Info, string, agent.Timings, error)
	Destroy(ctx context.Context, id string) error
	Pause(ctx context.Context, id string) (*agent.Info, agent.PauseStats, error)
	Resume(ctx context.Context, id string, timeoutSec int) (*agent.Info, string, time.Duration, error)
	CreateSnapshot(ctx context.Context, id, name string, overwrite bool) (*agent.SnapshotInfo, time.Duration, error)
	DeleteSnapshot(name string) error
	ListSnapshots() ([]*agent.SnapshotInfo, error)
	Get(id string) (*agent.Info, error)
	List() []*agent.Info
	Ping(id string) error
	AllowInternetDefault() bool
	Exec(ctx context.Context, id string, cmd envdclient.Command, timeout time.Duration, onStart func(uint32), stdout, stderr io.Writer) (*agent.ExecResult, error)
	Input(ctx context.Context, id string, pid uint32, data []byte, eof bool) error
	Resize(ctx context.Context, id string, pid uint32, size envdclient.PTYSize) error
	WriteFile(ctx context.Context, id, path, user string, r io.Reader) error
	ReadFile(ctx context.Context, id, path, user string) (io.ReadCloser, error)
	ListDir(ctx context.Context, id, path string, depth uint32, user string) ([]envdclient.Entry, bool, error)
	MakeDir(ctx context.Context, id, path, user string) (envdclient.Entry, error)
	RemovePath(ctx context.Context, id, path, user string) error
	Metrics(id string, d time.Duration) (metrics.Series, error)
	FlushMetrics(id string) ([]metrics.Series, error)
	ConsoleLog(id string, offset, limit int64) (*agent.ConsoleChunk, error)
}

var _ Sandboxes = (*agent.Manager)(nil)

// Server implements hostagentv1connect.HostAgentServiceHandler.
type Server struct {
	m Sandboxes
}

var _ hostagentv1connect.HostAgentServiceHandler = (*Server)(nil)

// Handler returns the agent's HTTP handler: the Connect service behind a check of
// `Authorization: Bearer <credential>` by allowed.
func Handler(m Sandboxes, allowed func(bearer string) bool) (string, http.Handler) {
	path, h := hostagentv1connect.NewHostAgentServiceHandler(&Server{m: m},
		connect.WithInterceptors(bearer{allowed: allowed}),
		connect.WithReadMaxBytes(MaxWholeFile+1<<20))
	return path, h
}

// SharedSecret accepts exactly secret, in constant time (a standalone agent).
func SharedSecret(secret string) func(string) bool {
	return func(tok string) bool { return subtle.ConstantTimeCompare([]byte(tok), []byte(secret)) == 1 }
}

// bearer checks the caller's credential on every call.
type bearer struct{ allowed func(string) bool }

func (b bearer) check(h http.Header) error {
	tok, ok := strings.CutPrefix(h.Get("Authorization"), "Bearer ")
	if !ok || !b.allowed(tok) {
		return connect.NewError(connect.CodeUnauthenticated, errors.New("missing or wrong agent credentials"))
	}
	return nil
}

func (b bearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if err := b.check(req.Header()); err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (b bearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (b bearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if err := b.check(conn.RequestHeader()); err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

// toConnect maps manager errors to API codes; messages stay as the manager wrote them.
// The guest's (envd's) answers keep their meaning: a file status or a Connect code
// that blames the request is passed on as such, so the control plane can tell the
// user what was wrong instead of answering 500.
func toConnect(err error) error {
	var stateErr *agent.ErrState
	var fileErr *envdclient.FileError
	var fsErr *envdclient.FSError
	var guestErr *connect.Error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, agent.ErrNotFound), errors.Is(err, agent.ErrSnapshotNotFound), errors.Is(err, agent.ErrNoTemplate):
		return connect.NewError(connect.CodeNotFound, err)
	case errors.Is(err, agent.ErrAlreadyExists), errors.Is(err, agent.ErrSnapshotExists):
		return connect.NewError(connect.CodeAlreadyExists, err)
	case errors.Is(err, agent.ErrInvalid):
		return connect.NewError(connect.CodeInvalidArgument, err)
	case errors.Is(err, agent.ErrUnsupported):
		return connect.NewError(connect.CodeUnimplemented, err)
	case errors.As(err, &stateErr):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	case errors.Is(err, syscall.ENOSPC):
		return connect.NewError(connect.CodeResourceExhausted, err)
	case errors.As(err, &fileErr):
		switch fileErr.Status {
		case http.StatusNotFound:
			return connect.NewError(connect.CodeNotFound, err)
		case http.StatusBadRequest:
			return connect.NewError(connect.CodeInvalidArgument, err)
		case http.StatusUnauthorized, http.StatusForbidden:
			return connect.NewError(connect.CodePermissionDenied, err)
		case http.StatusInsufficientStorage:
			return connect.NewError(connect.CodeResourceExhausted, err)
		}
		return connect.NewError(connect.CodeInternal, err)
	case errors.As(err, &fsErr):
		return fsConnect(err)
	case errors.As(err, &guestErr):
		return guestError(err, guestErr)
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err)
	}
	return connect.NewError(connect.CodeInternal, err)
}

// guestError maps a Connect error from the guest's envd. Codes that blame the request
// pass through with envd's message; anything else (its credentials, a dead VM, its
// own failures) is ours. envd answers every command that cannot start with
// InvalidArgument (E2B's contract, pinned by envd's tests) and the errno's text; a
// refused permission is the caller's 403, so it is told apart here.
func guestError(err error, ce *connect.Error) error {
	switch code := ce.Code(); code {
	case connect.CodeInvalidArgument:
		if strings.Contains(ce.Message(), "permission denied") {
			return connect.NewError(connect.CodePermissionDenied, errors.New(ce.Message()))
		}
		return connect.NewError(code, errors.New(ce.Message()))
	case connect.CodeNotFound, connect.CodePermissionDenied, connect.CodeFailedPrecondition,
		connect.CodeOutOfRange, connect.CodeAlreadyExists, connect.CodeResourceExhausted:
		return connect.NewError(code, errors.New(ce.Message()))
	case connect.CodeDeadlineExceeded, connect.CodeCanceled:
		return connect.NewError(code, err)
	}
	return connect.NewError(connect.CodeInternal, err)
}

var stateNames = map[lifecycle.State]pb.SandboxState{
	lifecycle.Starting: pb.SandboxState_SANDBOX_STATE_STARTING,
	lifecycle.Running:  pb.SandboxState_SANDBOX_STATE_RUNNING,
	lifecycle.Pausing:  pb.SandboxState_SANDBOX_STATE_PAUSING,
	lifecycle.Paused:   pb.SandboxState_SANDBOX_STATE_PAUSED,
	lifecycle.Resuming: pb.SandboxState_SANDBOX_STATE_RESUMING,
	lifecycle.Stopping: pb.SandboxState_SANDBOX_STATE_STOPPING,
	lifecycle.Stopped:  pb.SandboxState_SANDBOX_STATE_STOPPED,
	lifecycle.Error:    pb.SandboxState_SANDBOX_STATE_ERROR,
}

func toProto(i *agent.Info) *pb.Sandbox {
	s := &pb.Sandbox{
		Id: i.Spec.ID, Template: i.Spec.Template, State: stateNames[i.State],
		Vcpus: int32(i.Spec.VCPUs), MemoryMb: int32(i.Spec.MemoryMiB), DiskMb: int32(i.Spec.DiskMiB),
		TimeoutSec: int32(i.Spec.TimeoutSec), AllowInternetAccess: i.Spec.AllowInternet,
		CreatedAt: timestamppb.New(i.CreatedAt), LastActiveAt: timestamppb.New(i.LastActive), Error: i.Error,
		Snapshot: i.Spec.Snapshot,
	}
	if i.HostIP.IsValid() {
		s.HostIp = i.HostIP.String()
	}
	if v := i.VMM; v != nil {
		s.Limits = &pb.SandboxLimits{Cpus: v.CPUs, MemoryBytes: v.MemoryBytes, Pids: v.Pids, JailUid: v.JailUID,
			DiskBytesPerSec: v.DiskRate.BytesPerSec, DiskOpsPerSec: v.DiskRate.OpsPerSec}
	}
	return s
}

func (s *Server) CreateSandbox(ctx context.Context, req *connect.Request[pb.CreateSandboxRequest]) (*connect.Response[pb.CreateSandboxResponse], error) {
	r := req.Msg
	spec := agent.Spec{
		ID: r.GetSandboxId(), Template: r.GetTemplate(), VCPUs: int(r.GetVcpus()), MemoryMiB: int(r.GetMemoryMb()),
		DiskMiB: int(r.GetDiskMb()), EnvVars: r.GetEnvVars(), TimeoutSec: int(r.GetTimeoutSec()), Metadata: r.GetMetadata(),
		AllowInternet: s.m.AllowInternetDefault(), Snapshot: r.GetSnapshot(), AccessToken: r.GetEnvdAccessToken(),
	}
	if r.AllowInternetAccess != nil {
		spec.AllowInternet = r.GetAllowInternetAccess()
	}
	info, token, tm, err := s.m.Create(ctx, spec)
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.CreateSandboxResponse{
		Sandbox: toProto(info), EnvdAccessToken: token,
		Timings: &pb.CreateTimings{
			SlotUs: tm.Slot.Microseconds(), DiskUs: tm.Disk.Microseconds(), VmStartUs: tm.VMStart.Microseconds(),
			BootUs: tm.Boot.Microseconds(), InitUs: tm.Init.Microseconds(), TotalUs: tm.Total.Microseconds(),
			Restored: tm.Restored,
		},
	}), nil
}

func (s *Server) DestroySandbox(ctx context.Context, req *connect.Request[pb.DestroySandboxRequest]) (*connect.Response[pb.DestroySandboxResponse], error) {
	if err := s.m.Destroy(ctx, req.Msg.GetSandboxId()); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.DestroySandboxResponse{}), nil
}

func (s *Server) GetSandbox(_ context.Context, req *connect.Request[pb.GetSandboxRequest]) (*connect.Response[pb.GetSandboxResponse], error) {
	info, err := s.m.Get(req.Msg.GetSandboxId())
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.GetSandboxResponse{Sandbox: toProto(info)}), nil
}

func (s *Server) ListSandboxes(context.Context, *connect.Request[pb.ListSandboxesRequest]) (*connect.Response[pb.ListSandboxesResponse], error) {
	out := &pb.ListSandboxesResponse{}
	for _, i := range s.m.List() {
		out.Sandboxes = append(out.Sandboxes, toProto(i))
	}
	return connect.NewResponse(out), nil
}

func command(r *pb.ExecRequest) (envdclient.Command, time.Duration, error) {
	cmd := envdclient.Command{Cmd: r.GetCmd(), Args: r.GetArgs(), Env: r.GetEnvVars(), Cwd: r.GetCwd(), User: r.GetUser(), Stdin: r.GetStdin()}
	if r.Pty != nil {
		size, err := ptySize(r.GetPty())
		if err != nil {
			return cmd, 0, err
		}
		cmd.PTY = &size
	}
	return cmd, time.Duration(r.GetTimeoutSec()) * time.Second, nil
}

// maxPTY bounds a terminal's columns and rows.
const maxPTY = 1000

func ptySize(p *pb.PtySize) (envdclient.PTYSize, error) {
	if p.GetCols() < 1 || p.GetCols() > maxPTY || p.GetRows() < 1 || p.GetRows() > maxPTY {
		return envdclient.PTYSize{}, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("pty size %dx%d: cols and rows must be 1..%d", p.GetCols(), p.GetRows(), maxPTY))
	}
	return envdclient.PTYSize{Cols: p.GetCols(), Rows: p.GetRows()}, nil
}

func (s *Server) ExecInput(ctx context.Context, req *connect.Request[pb.ExecInputRequest]) (*connect.Response[pb.ExecInputResponse], error) {
	r := req.Msg
	if err := s.m.Input(ctx, r.GetSandboxId(), r.GetPid(), r.GetData(), r.GetEof()); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.ExecInputResponse{}), nil
}

func (s *Server) ExecResize(ctx context.Context, req *connect.Request[pb.ExecResizeRequest]) (*connect.Response[pb.ExecResizeResponse], error) {
	size, err := ptySize(req.Msg.GetSize())
	if err != nil {
		return nil, err
	}
	if err := s.m.Resize(ctx, req.Msg.GetSandboxId(), req.Msg.GetPid(), size); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.ExecResizeResponse{}), nil
}

// cappedBuffer keeps the first limit bytes written to it and counts the rest. Writes
// never fail or block past the limit: the command's output is still read (and
// dropped), so a chatty command runs to its end as it would have without the cap.
type cappedBuffer struct {
	buf   []byte
	limit int
	total int64
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.total += int64(len(p))
	keep := p[:min(len(p), c.limit-len(c.buf))]
	if len(keep) == 0 {
		return len(p), nil
	}
	if need := len(c.buf) + len(keep); need > cap(c.buf) {
		// Grow by doubling as append would, but never past the limit: a buffer that
		// reaches it holds exactly limit bytes instead of up to twice as many.
		grown := make([]byte, len(c.buf), min(max(need, 2*cap(c.buf), 4096), c.limit))
		copy(grown, c.buf)
		c.buf = grown
	}
	c.buf = append(c.buf, keep...)
	return len(p), nil
}

func (c *cappedBuffer) truncated() bool { return c.total > int64(len(c.buf)) }

// outputLimit is the request's max_output_bytes, defaulted and checked.
func outputLimit(r *pb.ExecRequest) (int, error) {
	n := r.GetMaxOutputBytes()
	switch {
	case n == 0:
		return hostproto.DefaultExecOutputBytes, nil
	case n < 0 || n > hostproto.MaxExecOutputBytes:
		return 0, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("max_output_bytes %d: want 1..%d (16 MiB), or 0 for the default", n, hostproto.MaxExecOutputBytes))
	}
	return int(n), nil
}

func (s *Server) Exec(ctx context.Context, req *connect.Request[pb.ExecRequest]) (*connect.Response[pb.ExecResponse], error) {
	if req.Msg.GetStdin() || req.Msg.Pty != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("stdin and pty need ExecStream"))
	}
	cmd, timeout, err := command(req.Msg)
	if err != nil {
		return nil, err
	}
	limit, err := outputLimit(req.Msg)
	if err != nil {
		return nil, err
	}
	stdout, stderr := &cappedBuffer{limit: limit}, &cappedBuffer{limit: limit}
	res, err := s.m.Exec(ctx, req.Msg.GetSandboxId(), cmd, timeout, nil, stdout, stderr)
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.ExecResponse{
		Stdout: stdout.buf, Stderr: stderr.buf, ExitCode: int32(res.ExitCode),
		DurationMs: res.Duration.Milliseconds(), TimedOut: res.TimedOut,
		StdoutTruncated: stdout.truncated(), StderrTruncated: stderr.truncated(),
		StdoutTotalBytes: stdout.total, StderrTotalBytes: stderr.total,
	}), nil
}

// streamWriter sends each write as one stream message; Send is not safe for concurrent
// use, and stdout and stderr arrive from one goroutine, but the mutex keeps it safe.
type streamWriter struct {
	mu     *sync.Mutex
	stream *connect.ServerStream[pb.ExecStreamResponse]
	stderr bool
}

func (w streamWriter) Write(p []byte) (int, error) {
	b := append([]byte(nil), p...)
	msg := &pb.ExecStreamResponse{Event: &pb.ExecStreamResponse_Stdout{Stdout: b}}
	if w.stderr {
		msg.Event = &pb.ExecStreamResponse_Stderr{Stderr: b}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.stream.Send(msg); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (s *Server) ExecStream(ctx context.Context, req *connect.Request[pb.ExecRequest], stream *connect.ServerStream[pb.ExecStreamResponse]) error {
	cmd, timeout, err := command(req.Msg)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	onStart := func(pid uint32) {
		mu.Lock()
		defer mu.Unlock()
		_ = stream.Send(&pb.ExecStreamResponse{Event: &pb.ExecStreamResponse_StartPid{StartPid: pid}})
	}
	res, err := s.m.Exec(ctx, req.Msg.GetSandboxId(), cmd, timeout, onStart, streamWriter{&mu, stream, false}, streamWriter{&mu, stream, true})
	if err != nil {
		return toConnect(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return stream.Send(&pb.ExecStreamResponse{Event: &pb.ExecStreamResponse_Exit{Exit: &pb.ExecExit{
		ExitCode: int32(res.ExitCode), Status: res.Status, TimedOut: res.TimedOut,
	}}})
}

func (s *Server) WriteFile(ctx context.Context, req *connect.Request[pb.WriteFileRequest]) (*connect.Response[pb.WriteFileResponse], error) {
	r := req.Msg
	if err := s.m.WriteFile(ctx, r.GetSandboxId(), r.GetPath(), r.GetUser(), bytes.NewReader(r.GetContent())); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.WriteFileResponse{Path: r.GetPath(), Size: int64(len(r.GetContent()))}), nil
}

func (s *Server) ReadFile(ctx context.Context, req *connect.Request[pb.ReadFileRequest]) (*connect.Response[pb.ReadFileResponse], error) {
	rc, err := s.m.ReadFile(ctx, req.Msg.GetSandboxId(), req.Msg.GetPath(), req.Msg.GetUser())
	if err != nil {
		return nil, toConnect(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, MaxWholeFile+1))
	if err != nil {
		return nil, toConnect(fmt.Errorf("read %s: %w", req.Msg.GetPath(), err))
	}
	if len(b) > MaxWholeFile {
		return nil, connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("%s is larger than %d MiB: use ReadFileStream", req.Msg.GetPath(), MaxWholeFile>>20))
	}
	return connect.NewResponse(&pb.ReadFileResponse{Content: b}), nil
}

func (s *Server) WriteFileStream(ctx context.Context, stream *connect.ClientStream[pb.WriteFileStreamRequest]) (*connect.Response[pb.WriteFileResponse], error) {
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
	pr, pw := io.Pipe()
	var size int64
	go func() {
		if len(hdr.GetContent()) > 0 {
			n, _ := pw.Write(hdr.GetContent())
			size += int64(n)
		}
		for stream.Receive() {
			chunk := stream.Msg().GetChunk()
			if stream.Msg().GetHeader() != nil {
				pw.CloseWithError(errors.New("a second header in the stream"))
				return
			}
			n, err := pw.Write(chunk)
			size += int64(n)
			if err != nil {
				return
			}
		}
		pw.CloseWithError(stream.Err()) // nil → EOF
	}()
	err := s.m.WriteFile(ctx, hdr.GetSandboxId(), hdr.GetPath(), hdr.GetUser(), pr)
	pr.CloseWithError(io.ErrClosedPipe) // unblock the receiver if the write ended early
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.WriteFileResponse{Path: hdr.GetPath(), Size: size}), nil
}

func (s *Server) ReadFileStream(ctx context.Context, req *connect.Request[pb.ReadFileRequest], stream *connect.ServerStream[pb.ReadFileStreamResponse]) error {
	rc, err := s.m.ReadFile(ctx, req.Msg.GetSandboxId(), req.Msg.GetPath(), req.Msg.GetUser())
	if err != nil {
		return toConnect(err)
	}
	defer rc.Close()
	buf := make([]byte, streamChunk)
	for {
		n, err := io.ReadFull(rc, buf)
		if n > 0 {
			if serr := stream.Send(&pb.ReadFileStreamResponse{Chunk: buf[:n]}); serr != nil {
				return serr
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return toConnect(fmt.Errorf("read %s: %w", req.Msg.GetPath(), err))
		}
	}
}

func (s *Server) Ping(_ context.Context, req *connect.Request[pb.PingRequest]) (*connect.Response[pb.PingResponse], error) {
	if err := s.m.Ping(req.Msg.GetSandboxId()); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.PingResponse{}), nil
}
