// Package process implements envd's `process.Process` Connect service: it starts commands
// as the requested user, with pipes or a pseudo-terminal, streams their output to any
// number of listeners, and lets clients reconnect, send input and signals to them.
package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/envd/process"
	"github.com/wrennhq/wrenn/gen/envd/process/processconnect"
	"github.com/wrennhq/wrenn/internal/envd/state"
	"github.com/wrennhq/wrenn/internal/envd/streamx"
	"google.golang.org/protobuf/proto"
)

// defaultPath is the PATH of started processes when envd's own is empty.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Service implements processconnect.ProcessHandler.
type Service struct {
	st  *state.State
	log *slog.Logger

	mu    sync.Mutex
	seq   uint64
	procs map[uint32]*proc
	ended map[uint32]*proc // recently ended, for a late Connect; see endedRetention
}

// endedRetention is how long an ended process's end event stays available to Connect,
// so a client that reconnects just after the end still learns the exit code.
const endedRetention = 30 * time.Second

var _ processconnect.ProcessHandler = (*Service)(nil)

// New returns a process service acting on behalf of st's users.
func New(st *state.State, log *slog.Logger) *Service {
	return &Service{st: st, log: log, procs: map[uint32]*proc{}, ended: map[uint32]*proc{}}
}

// Close kills every process envd started and waits (bounded) for them to be reaped.
func (s *Service) Close() {
	s.mu.Lock()
	procs := make([]*proc, 0, len(s.procs))
	for _, p := range s.procs {
		procs = append(procs, p)
	}
	s.mu.Unlock()
	for _, p := range procs {
		_ = p.signal(syscall.SIGKILL)
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
	}
}

func (s *Service) List(context.Context, *connect.Request[pb.ListRequest]) (*connect.Response[pb.ListResponse], error) {
	s.mu.Lock()
	procs := make([]*proc, 0, len(s.procs))
	for _, p := range s.procs {
		procs = append(procs, p)
	}
	s.mu.Unlock()
	sort.Slice(procs, func(i, j int) bool { return procs[i].seq < procs[j].seq })
	out := &pb.ListResponse{}
	for _, p := range procs {
		out.Processes = append(out.Processes, &pb.ProcessInfo{Config: p.cfg, Pid: p.pid, Tag: p.tag})
	}
	return connect.NewResponse(out), nil
}

func (s *Service) Start(ctx context.Context, req *connect.Request[pb.StartRequest], stream *connect.ServerStream[pb.StartResponse]) error {
	cfg := req.Msg.GetProcess()
	if cfg == nil || cfg.GetCmd() == "" {
		return connect.NewError(connect.CodeInvalidArgument, errors.New("process.cmd is required"))
	}
	u, err := s.st.UserFromHeader(req.Header())
	if err != nil {
		return connect.NewError(connect.CodeUnauthenticated, err)
	}
	cwd, err := s.st.ResolvePath(cfg.GetCwd(), u)
	if err != nil {
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	if fi, err := os.Stat(cwd); err != nil || !fi.IsDir() {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("cwd '%s' does not exist", cwd))
	}
	env := s.environment(u, cfg.GetEnvs())
	path, err := lookPath(cfg.GetCmd(), env, cwd)
	if err != nil {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("start %q: %w", cfg.GetCmd(), err))
	}

	first := newSubscriber()
	defer close(first.gone)
	spec := spawnSpec{
		path: path,
		args: cfg.GetArgs(),
		env:  env,
		dir:  cwd,
		cred: &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups},
		pty:  req.Msg.Pty,
		// Absent means a stdin pipe; a PTY has its own input.
		stdin:    req.Msg.Pty == nil && (req.Msg.Stdin == nil || req.Msg.GetStdin()),
		onExited: s.forget,
	}
	// Register under the lock so List and Connect see the process from its first byte.
	s.mu.Lock()
	p, err := spawn(spec, first)
	if err != nil {
		s.mu.Unlock()
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("start %q: %w", cfg.GetCmd(), err))
	}
	s.seq++
	p.seq = s.seq
	p.cfg = proto.Clone(cfg).(*pb.ProcessConfig)
	p.tag = req.Msg.Tag
	s.procs[p.pid] = p
	s.mu.Unlock()
	s.log.Debug("process started", "pid", p.pid, "cmd", cfg.GetCmd(), "user", u.Name)

	// Connect-Timeout-Ms is also the process's lifetime: it outlives a dropped stream,
	// but not its deadline.
	if deadline, ok := ctx.Deadline(); ok {
		timer := time.AfterFunc(time.Until(deadline), func() { _ = p.signal(syscall.SIGKILL) })
		go func() { <-p.done; timer.Stop() }()
	}
	send := func(ev *pb.ProcessEvent) error { return stream.Send(&pb.StartResponse{Event: ev}) }
	return s.follow(ctx, req.Header(), p, first, send)
}

func (s *Service) Connect(ctx context.Context, req *connect.Request[pb.ConnectRequest], stream *connect.ServerStream[pb.ConnectResponse]) error {
	p, err := s.find(req.Msg.GetProcess())
	if connect.CodeOf(err) == connect.CodeNotFound {
		p = s.findEnded(req.Msg.GetProcess())
	}
	if p == nil {
		return err
	}
	send := func(ev *pb.ProcessEvent) error { return stream.Send(&pb.ConnectResponse{Event: ev}) }
	sub, end := p.subscribe()
	if sub == nil {
		// Ended between lookup and subscribe: the client still sees a whole life.
		if err := send(startEvent(p.pid)); err != nil {
			return err
		}
		return send(&pb.ProcessEvent{Event: &pb.ProcessEvent_End{End: end}})
	}
	defer close(sub.gone)
	return s.follow(ctx, req.Header(), p, sub, send)
}

func startEvent(pid uint32) *pb.ProcessEvent {
	return &pb.ProcessEvent{Event: &pb.ProcessEvent_Start{Start: &pb.ProcessEvent_StartEvent{Pid: pid}}}
}

var keepaliveEvent = &pb.ProcessEvent{Event: &pb.ProcessEvent_Keepalive{Keepalive: &pb.ProcessEvent_KeepAlive{}}}

// follow sends start, then the subscriber's events with keepalives when idle, until the
// end event, the client leaving or the stream deadline.
func (s *Service) follow(ctx context.Context, h http.Header, p *proc, sub *subscriber, send func(*pb.ProcessEvent) error) error {
	defer p.unsubscribe(sub)
	if err := send(startEvent(p.pid)); err != nil {
		return err
	}
	ka := streamx.NewKeepalive(h)
	defer ka.Stop()
	for {
		select {
		case ev := <-sub.ch:
			if err := send(ev); err != nil {
				return err
			}
			if ev.GetEnd() != nil {
				return nil
			}
			ka.Reset()
		case <-ka.C():
			if err := send(keepaliveEvent); err != nil {
				return err
			}
			ka.Reset()
		case <-ctx.Done():
			return streamx.ContextError(ctx)
		}
	}
}

// forget moves an ended process from the live table to the recently ended one.
func (s *Service) forget(p *proc) {
	p.endedAt = time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.procs[p.pid] == p {
		delete(s.procs, p.pid)
	}
	s.ended[p.pid] = p
	for pid, e := range s.ended {
		if time.Since(e.endedAt) > endedRetention {
			delete(s.ended, pid)
		}
	}
}

// findEnded returns a process that ended within endedRetention, or nil.
func (s *Service) findEnded(sel *pb.ProcessSelector) *proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	var found *proc
	for _, p := range s.ended {
		if time.Since(p.endedAt) > endedRetention {
			continue
		}
		switch v := sel.GetSelector().(type) {
		case *pb.ProcessSelector_Pid:
			if p.pid == v.Pid {
				return p
			}
		case *pb.ProcessSelector_Tag:
			if p.tag != nil && *p.tag == v.Tag && (found == nil || p.seq > found.seq) {
				found = p
			}
		}
	}
	return found
}

// find resolves a selector to a live process.
func (s *Service) find(sel *pb.ProcessSelector) (*proc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch v := sel.GetSelector().(type) {
	case *pb.ProcessSelector_Pid:
		if p, ok := s.procs[v.Pid]; ok {
			return p, nil
		}
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("process with pid %d not found", v.Pid))
	case *pb.ProcessSelector_Tag:
		var found *proc
		for _, p := range s.procs {
			if p.tag != nil && *p.tag == v.Tag && (found == nil || p.seq < found.seq) {
				found = p
			}
		}
		if found == nil {
			return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("process with tag %s not found", v.Tag))
		}
		return found, nil
	default:
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("process selector (pid or tag) is required"))
	}
}

func (s *Service) Update(_ context.Context, req *connect.Request[pb.UpdateRequest]) (*connect.Response[pb.UpdateResponse], error) {
	p, err := s.find(req.Msg.GetProcess())
	if err != nil {
		return nil, err
	}
	if req.Msg.Pty != nil {
		if err := p.resize(req.Msg.GetPty().GetSize()); err != nil {
			return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("resize pty of %d: %w", p.pid, err))
		}
	}
	return connect.NewResponse(&pb.UpdateResponse{}), nil
}

func (s *Service) SendInput(_ context.Context, req *connect.Request[pb.SendInputRequest]) (*connect.Response[pb.SendInputResponse], error) {
	p, err := s.find(req.Msg.GetProcess())
	if err != nil {
		return nil, err
	}
	if err := inputError(p.pid, p.writeInput(req.Msg.GetInput())); err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.SendInputResponse{}), nil
}

func (s *Service) StreamInput(_ context.Context, stream *connect.ClientStream[pb.StreamInputRequest]) (*connect.Response[pb.StreamInputResponse], error) {
	var p *proc
	for stream.Receive() {
		switch ev := stream.Msg().GetEvent().(type) {
		case *pb.StreamInputRequest_Start:
			found, err := s.find(ev.Start.GetProcess())
			if err != nil {
				return nil, err
			}
			p = found
		case *pb.StreamInputRequest_Data:
			if p == nil {
				return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("the first message must be start"))
			}
			if err := inputError(p.pid, p.writeInput(ev.Data.GetInput())); err != nil {
				return nil, err
			}
		case *pb.StreamInputRequest_Keepalive:
		default:
			return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("stream input event is not set"))
		}
	}
	if err := stream.Err(); err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.StreamInputResponse{}), nil
}

func inputError(pid uint32, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errNoInput):
		return connect.NewError(connect.CodeUnimplemented, err)
	default:
		return connect.NewError(connect.CodeInternal, fmt.Errorf("write input of %d: %w", pid, err))
	}
}

func (s *Service) SendSignal(_ context.Context, req *connect.Request[pb.SendSignalRequest]) (*connect.Response[pb.SendSignalResponse], error) {
	p, err := s.find(req.Msg.GetProcess())
	if err != nil {
		return nil, err
	}
	var sig syscall.Signal
	switch req.Msg.GetSignal() {
	case pb.Signal_SIGNAL_SIGKILL:
		sig = syscall.SIGKILL
	case pb.Signal_SIGNAL_SIGTERM:
		sig = syscall.SIGTERM
	default:
		return nil, connect.NewError(connect.CodeUnimplemented, fmt.Errorf("signal %v is not supported", req.Msg.GetSignal()))
	}
	if err := p.signal(sig); err != nil {
		return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("signal %d: %w", p.pid, err))
	}
	return connect.NewResponse(&pb.SendSignalResponse{}), nil
}

func (s *Service) CloseStdin(_ context.Context, req *connect.Request[pb.CloseStdinRequest]) (*connect.Response[pb.CloseStdinResponse], error) {
	p, err := s.find(req.Msg.GetProcess())
	if err != nil {
		return nil, err
	}
	if p.tty != nil {
		return nil, connect.NewError(connect.CodeUnknown, errors.New("cannot close stdin of a pty process: send Ctrl-D (0x04) instead"))
	}
	p.closeStdin()
	return connect.NewResponse(&pb.CloseStdinResponse{}), nil
}

// environment builds a process's environment, later entries winning: PATH and the
// user's identity, then envd's global variables, then the request's own.
func (s *Service) environment(u *state.User, extra map[string]string) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = defaultPath
	}
	vars := map[string]string{"PATH": path, "HOME": u.Home, "USER": u.Name, "LOGNAME": u.Name}
	for k, v := range s.st.Env() {
		vars[k] = v
	}
	for k, v := range extra {
		vars[k] = v
	}
	env := make([]string, 0, len(vars))
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env
}

// lookPath resolves cmd the way a shell would for the process being started: with the
// process's PATH, not envd's, and relative to its cwd.
func lookPath(cmd string, env []string, cwd string) (string, error) {
	if strings.Contains(cmd, "/") {
		if !filepath.IsAbs(cmd) {
			cmd = filepath.Join(cwd, cmd)
		}
		return cmd, nil
	}
	for _, kv := range env {
		path, ok := strings.CutPrefix(kv, "PATH=")
		if !ok {
			continue
		}
		for _, dir := range filepath.SplitList(path) {
			if !filepath.IsAbs(dir) {
				dir = filepath.Join(cwd, dir)
			}
			cand := filepath.Join(dir, cmd)
			if fi, err := os.Stat(cand); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
				return cand, nil
			}
		}
	}
	return "", exec.ErrNotFound
}
