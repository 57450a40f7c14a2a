// Package hostagenttest is a test double of the host agent: an in-memory
// implementation of hostagent.v1.HostAgentService that runs no VMs. It lets the
// control plane's own behaviour (records, authorisation, error mapping, streaming
// plumbing) be tested and its overhead be measured without KVM, QEMU or root; sandboxes
// are map entries, commands are a tiny built-in set (echo, cat, env, sleep, tty, …) and
// files live in a per-sandbox map. It is not an agent: real VMs, envd and the real
// agent are covered by test/e2e.
//
// The fake speaks Connect over h2c like `wrenn agent`, checks the bearer secret the
// same way and answers with the same error codes as internal/agent/rpc. It keeps no
// logs and never sleeps except when told to (`sleep`), so benchmarks through it
// measure the control plane.
package hostagenttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
	"github.com/wrennhq/wrenn/internal/agent/proxy"
	"github.com/wrennhq/wrenn/internal/hostproto"
	"github.com/wrennhq/wrenn/internal/server/hostclient"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Limits, as the real agent has them (vCPU and memory maxima are the fake host's).
const (
	maxVCPUs     = 16
	maxMemoryMB  = 16384
	maxDiskMB    = 1 << 20
	maxTimeout   = 7 * 24 * 3600
	maxPTY       = 1000
	maxWholeFile = 64 << 20
	streamChunk  = 64 << 10
	// defaultExecTimeout applies to commands without stdin or a pty, as in the agent.
	defaultExecTimeout = 60 * time.Second
	// firstPID is the pid of the first command; later ones count up.
	firstPID = 100
)

// Fake is a running in-memory host agent. Its methods are safe for concurrent use.
type Fake struct {
	srv    *httptest.Server
	secret string

	clientOnce sync.Once
	client     hostagentv1connect.HostAgentServiceClient

	// ctx ends when the test ends, which ends every running command.
	ctx    context.Context
	cancel context.CancelFunc

	calls   map[string]*atomic.Int64 // by method name; filled at start, read-only after
	nextPID atomic.Uint32

	mu       sync.RWMutex
	boxes    map[string]*box
	seq      int64 // creation order, for List
	slot     int   // last host IP slot handed out
	failNext error
	guest    netip.Addr // where the port proxy finds every guest; zero = 127.0.0.1
}

// box is one fake sandbox.
type box struct {
	id         string
	seq        int64
	template   string
	vcpus      int32
	memoryMB   int32
	diskMB     int32
	timeoutSec int32
	internet   bool
	env        map[string]string
	hostIP     string
	createdAt  time.Time

	// ctx ends when the sandbox is destroyed (or the fake closed).
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu         sync.Mutex
	lastActive time.Time
	files      map[string][]byte
	procs      map[uint32]*proc // running commands with stdin or a pty
}

var errDestroyed = errors.New("the sandbox was destroyed")

// New starts a fake agent on a loopback port (HTTP/1.1 and h2c) with a random secret;
// it stops when the test ends.
func New(t testing.TB) *Fake {
	t.Helper()
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	f := &Fake{secret: hex.EncodeToString(secret), boxes: map[string]*box{}, calls: map[string]*atomic.Int64{}}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.nextPID.Store(firstPID - 1)
	methods := pb.File_hostagent_v1_hostagent_proto.Services().ByName("HostAgentService").Methods()
	for i := 0; i < methods.Len(); i++ {
		f.calls[string(methods.Get(i).Name())] = new(atomic.Int64)
	}
	path, h := hostagentv1connect.NewHostAgentServiceHandler(&service{f},
		connect.WithInterceptors(interceptor{f}),
		connect.WithReadMaxBytes(maxWholeFile+1<<20))
	mux := http.NewServeMux()
	mux.Handle(path, h)
	// The real agent's port proxy, with every sandbox's guest at 127.0.0.1: a test
	// serves "sandbox port" P by listening on 127.0.0.1:P.
	mux.Handle(hostproto.ProxyPrefix, proxy.New(f, func(c string) bool { return c == f.secret }, slog.New(slog.DiscardHandler)))
	f.srv = httptest.NewUnstartedServer(mux)
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	f.srv.Config.Protocols = &p
	f.srv.Start()
	t.Cleanup(f.close)
	return f
}

// ProxyTarget is the proxy's view of a live sandbox: its guest is 127.0.0.1 here (or
// SetGuestAddr's address), and proxied connections end when it is destroyed.
func (f *Fake) ProxyTarget(id string) (netip.Addr, <-chan struct{}, error) {
	f.mu.RLock()
	b, ok := f.boxes[id]
	guest := f.guest
	f.mu.RUnlock()
	if !ok {
		return netip.Addr{}, nil, fmt.Errorf("sandbox %s not found", id)
	}
	if !guest.IsValid() {
		guest = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	return guest, b.ctx.Done(), nil
}

// SetGuestAddr makes the port proxy find every sandbox's guest at a instead of
// 127.0.0.1 (e.g. a server in another network namespace); the zero Addr restores
// 127.0.0.1.
func (f *Fake) SetGuestAddr(a netip.Addr) {
	f.mu.Lock()
	f.guest = a
	f.mu.Unlock()
}

// close ends running commands first, so no handler keeps the server's Close waiting.
func (f *Fake) close() {
	f.cancel()
	f.srv.CloseClientConnections()
	f.srv.Close()
}

// Addr is the fake's host:port.
func (f *Fake) Addr() string { return f.srv.Listener.Addr().String() }

// Secret is the bearer secret every call must present.
func (f *Fake) Secret() string { return f.secret }

// Client returns a client of the fake made by hostclient.New, as the control plane
// makes its clients; it is made once and shared.
func (f *Fake) Client() hostagentv1connect.HostAgentServiceClient {
	f.clientOnce.Do(func() { f.client = hostclient.New(f.Addr(), f.Secret()) })
	return f.client
}

// FailNextCreate makes the next CreateSandbox fail with code and msg (before any
// validation); the call after it behaves normally again.
func (f *Fake) FailNextCreate(code connect.Code, msg string) {
	f.mu.Lock()
	f.failNext = connect.NewError(code, errors.New(msg))
	f.mu.Unlock()
}

// Sandboxes returns the ids of the live sandboxes, sorted.
func (f *Fake) Sandboxes() []string {
	f.mu.RLock()
	ids := make([]string, 0, len(f.boxes))
	for id := range f.boxes {
		ids = append(ids, id)
	}
	f.mu.RUnlock()
	sort.Strings(ids)
	return ids
}

// Calls reports how many times the RPC named method (e.g. "CreateSandbox") reached
// the fake, refused calls (bad secret, bad request) included.
func (f *Fake) Calls(method string) int {
	if c, ok := f.calls[method]; ok {
		return int(c.Load())
	}
	return 0
}

// interceptor counts every call and checks the bearer secret in constant time, for
// unary and streaming handlers alike (as internal/agent/rpc does).
type interceptor struct{ f *Fake }

func (i interceptor) check(procedure string, h http.Header) error {
	if c, ok := i.f.calls[procedure[strings.LastIndexByte(procedure, '/')+1:]]; ok {
		c.Add(1)
	}
	tok, ok := strings.CutPrefix(h.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(i.f.secret)) != 1 {
		return connect.NewError(connect.CodeUnauthenticated, errors.New("missing or wrong agent credentials"))
	}
	return nil
}

func (i interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if err := i.check(req.Spec().Procedure, req.Header()); err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (i interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if err := i.check(conn.Spec().Procedure, conn.RequestHeader()); err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

// Errors worded as the agent's manager words them ("sandbox not found: ID", …).
func invalid(format string, args ...any) error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("invalid request: "+format, args...))
}

func notFound(id string) error {
	return connect.NewError(connect.CodeNotFound, fmt.Errorf("sandbox not found: %s", id))
}

// lookup returns a live sandbox.
func (f *Fake) lookup(id string) (*box, error) {
	f.mu.RLock()
	b, ok := f.boxes[id]
	f.mu.RUnlock()
	if !ok {
		return nil, notFound(id)
	}
	return b, nil
}

func (b *box) touch() {
	now := time.Now()
	b.mu.Lock()
	if now.After(b.lastActive) {
		b.lastActive = now
	}
	b.mu.Unlock()
}

func (b *box) proto() *pb.Sandbox {
	b.mu.Lock()
	active := b.lastActive
	b.mu.Unlock()
	return &pb.Sandbox{
		Id: b.id, Template: b.template, State: pb.SandboxState_SANDBOX_STATE_RUNNING,
		Vcpus: b.vcpus, MemoryMb: b.memoryMB, DiskMb: b.diskMB, TimeoutSec: b.timeoutSec,
		AllowInternetAccess: b.internet, HostIp: b.hostIP,
		CreatedAt: timestamppb.New(b.createdAt), LastActiveAt: timestamppb.New(active),
	}
}

var (
	sandboxIDPattern = regexp.MustCompile(`^[a-z0-9]{4,40}$`)
	envNamePattern   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// service implements the RPCs; it is a separate type so Fake's own methods stay the
// test-facing API.
type service struct{ f *Fake }

var _ hostagentv1connect.HostAgentServiceHandler = service{}

func (s service) CreateSandbox(_ context.Context, req *connect.Request[pb.CreateSandboxRequest]) (*connect.Response[pb.CreateSandboxResponse], error) {
	start := time.Now()
	f, r := s.f, req.Msg
	f.mu.Lock()
	if err := f.failNext; err != nil {
		f.failNext = nil
		f.mu.Unlock()
		return nil, err
	}
	f.mu.Unlock()

	b := &box{
		id: r.GetSandboxId(), template: r.GetTemplate(), vcpus: r.GetVcpus(), memoryMB: r.GetMemoryMb(),
		diskMB: r.GetDiskMb(), timeoutSec: r.GetTimeoutSec(), internet: r.GetAllowInternetAccess(),
	}
	// Unlike the agent, the fake wants the id from its caller: the control plane
	// records a sandbox before it asks for it, so it must always send one.
	if b.id == "" {
		return nil, invalid("sandbox_id is required")
	}
	if !sandboxIDPattern.MatchString(b.id) {
		return nil, invalid("sandbox id %q must be 4–40 characters of [a-z0-9]", b.id)
	}
	if b.template == "" {
		b.template = "base"
	}
	if b.vcpus == 0 {
		b.vcpus = 1
	}
	if b.vcpus < 1 || b.vcpus > maxVCPUs {
		return nil, invalid("vcpus %d out of range 1..%d", b.vcpus, maxVCPUs)
	}
	if b.memoryMB == 0 {
		b.memoryMB = 512
	}
	if b.memoryMB < 128 || b.memoryMB > maxMemoryMB {
		return nil, invalid("memory %d MiB out of range 128..%d", b.memoryMB, maxMemoryMB)
	}
	if b.diskMB < 0 || b.diskMB > maxDiskMB {
		return nil, invalid("disk %d MiB out of range 0..%d", b.diskMB, maxDiskMB)
	}
	if b.timeoutSec < 0 || b.timeoutSec > maxTimeout {
		return nil, invalid("timeout %d s out of range 0..%d", b.timeoutSec, maxTimeout)
	}
	b.env = make(map[string]string, len(r.GetEnvVars()))
	for k, v := range r.GetEnvVars() {
		if !envNamePattern.MatchString(k) {
			return nil, invalid("environment variable name %q", k)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return nil, invalid("environment variable %s contains a NUL byte", k)
		}
		b.env[k] = v
	}
	if b.template != "base" {
		return nil, invalid("template %q: not found", b.template)
	}
	b.createdAt = time.Now()
	b.lastActive = b.createdAt
	b.files = map[string][]byte{}
	b.procs = map[uint32]*proc{}

	f.mu.Lock()
	if _, dup := f.boxes[b.id]; dup {
		f.mu.Unlock()
		return nil, connect.NewError(connect.CodeAlreadyExists, fmt.Errorf("sandbox already exists: %s", b.id))
	}
	f.seq++
	b.seq = f.seq
	f.slot = f.slot%65534 + 1
	b.hostIP = fmt.Sprintf("10.11.%d.%d", f.slot>>8, f.slot&255)
	b.ctx, b.cancel = context.WithCancelCause(f.ctx)
	f.boxes[b.id] = b
	f.mu.Unlock()

	total := time.Since(start).Microseconds()
	return connect.NewResponse(&pb.CreateSandboxResponse{
		Sandbox: b.proto(), EnvdAccessToken: "fake-envd-token-" + b.id,
		Timings: &pb.CreateTimings{TotalUs: total},
	}), nil
}

func (s service) DestroySandbox(_ context.Context, req *connect.Request[pb.DestroySandboxRequest]) (*connect.Response[pb.DestroySandboxResponse], error) {
	id := req.Msg.GetSandboxId()
	s.f.mu.Lock()
	b, ok := s.f.boxes[id]
	delete(s.f.boxes, id)
	s.f.mu.Unlock()
	if !ok {
		return nil, notFound(id)
	}
	b.cancel(errDestroyed) // ends its running commands
	return connect.NewResponse(&pb.DestroySandboxResponse{}), nil
}

func (s service) GetSandbox(_ context.Context, req *connect.Request[pb.GetSandboxRequest]) (*connect.Response[pb.GetSandboxResponse], error) {
	b, err := s.f.lookup(req.Msg.GetSandboxId())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.GetSandboxResponse{Sandbox: b.proto()}), nil
}

// ListSandboxes returns every sandbox, oldest first, as the agent does.
func (s service) ListSandboxes(context.Context, *connect.Request[pb.ListSandboxesRequest]) (*connect.Response[pb.ListSandboxesResponse], error) {
	s.f.mu.RLock()
	boxes := make([]*box, 0, len(s.f.boxes))
	for _, b := range s.f.boxes {
		boxes = append(boxes, b)
	}
	s.f.mu.RUnlock()
	sort.Slice(boxes, func(i, j int) bool { return boxes[i].seq < boxes[j].seq })
	out := &pb.ListSandboxesResponse{Sandboxes: make([]*pb.Sandbox, 0, len(boxes))}
	for _, b := range boxes {
		out.Sandboxes = append(out.Sandboxes, b.proto())
	}
	return connect.NewResponse(out), nil
}

func (s service) Ping(_ context.Context, req *connect.Request[pb.PingRequest]) (*connect.Response[pb.PingResponse], error) {
	b, err := s.f.lookup(req.Msg.GetSandboxId())
	if err != nil {
		return nil, err
	}
	b.touch()
	return connect.NewResponse(&pb.PingResponse{}), nil
}

// ptySize checks a terminal size as the agent does.
func ptySize(p *pb.PtySize) error {
	if p.GetCols() < 1 || p.GetCols() > maxPTY || p.GetRows() < 1 || p.GetRows() > maxPTY {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("pty size %dx%d: cols and rows must be 1..%d", p.GetCols(), p.GetRows(), maxPTY))
	}
	return nil
}

// sandboxFor checks an exec request and returns its sandbox.
func (s service) sandboxFor(r *pb.ExecRequest) (*box, error) {
	if r.Pty != nil {
		if err := ptySize(r.GetPty()); err != nil {
			return nil, err
		}
	}
	if r.GetCmd() == "" {
		return nil, invalid("cmd is required")
	}
	return s.f.lookup(r.GetSandboxId())
}

func (s service) Exec(ctx context.Context, req *connect.Request[pb.ExecRequest]) (*connect.Response[pb.ExecResponse], error) {
	r := req.Msg
	if r.GetStdin() || r.Pty != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("stdin and pty need ExecStream"))
	}
	b, err := s.sandboxFor(r)
	if err != nil {
		return nil, err
	}
	var stdout, stderr bytes.Buffer
	start := time.Now()
	res, err := b.run(ctx, r, nil, func(isErr bool, p []byte) error {
		if isErr {
			stderr.Write(p)
		} else {
			stdout.Write(p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.ExecResponse{
		Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: res.code,
		DurationMs: time.Since(start).Milliseconds(), TimedOut: res.timedOut,
	}), nil
}

func (s service) ExecStream(ctx context.Context, req *connect.Request[pb.ExecRequest], stream *connect.ServerStream[pb.ExecStreamResponse]) error {
	r := req.Msg
	b, err := s.sandboxFor(r)
	if err != nil {
		return err
	}
	var p *proc
	pid := s.f.nextPID.Add(1)
	if r.GetStdin() || r.Pty != nil {
		// Registered before the start event goes out, so input sent as soon as the
		// client knows the pid finds the command.
		p = &proc{pty: r.Pty != nil, wake: make(chan struct{}, 1)}
		b.mu.Lock()
		b.procs[pid] = p
		b.mu.Unlock()
		defer func() {
			b.mu.Lock()
			delete(b.procs, pid)
			b.mu.Unlock()
		}()
	}
	if err := stream.Send(&pb.ExecStreamResponse{Event: &pb.ExecStreamResponse_StartPid{StartPid: pid}}); err != nil {
		return err
	}
	res, err := b.run(ctx, r, p, func(isErr bool, data []byte) error {
		msg := &pb.ExecStreamResponse{Event: &pb.ExecStreamResponse_Stdout{Stdout: data}}
		if isErr {
			msg.Event = &pb.ExecStreamResponse_Stderr{Stderr: data}
		}
		return stream.Send(msg)
	})
	if err != nil {
		return err
	}
	return stream.Send(&pb.ExecStreamResponse{Event: &pb.ExecStreamResponse_Exit{Exit: &pb.ExecExit{
		ExitCode: res.code, Status: res.status, TimedOut: res.timedOut,
	}}})
}

// interactive finds a running command started with stdin or a pty.
func (s service) interactive(id string, pid uint32) (*proc, error) {
	b, err := s.f.lookup(id)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	p, ok := b.procs[pid]
	b.mu.Unlock()
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("sandbox not found: no command with stdin or a pty has pid %d in %s", pid, id))
	}
	return p, nil
}

func (s service) ExecInput(_ context.Context, req *connect.Request[pb.ExecInputRequest]) (*connect.Response[pb.ExecInputResponse], error) {
	r := req.Msg
	p, err := s.interactive(r.GetSandboxId(), r.GetPid())
	if err != nil {
		return nil, err
	}
	data, eof := r.GetData(), r.GetEof()
	if eof && p.pty {
		data, eof = append(append([]byte(nil), data...), 0x04), false // a terminal's ^D
	}
	if err := p.input(data, eof); err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.ExecInputResponse{}), nil
}

func (s service) ExecResize(_ context.Context, req *connect.Request[pb.ExecResizeRequest]) (*connect.Response[pb.ExecResizeResponse], error) {
	r := req.Msg
	if err := ptySize(r.GetSize()); err != nil {
		return nil, err
	}
	p, err := s.interactive(r.GetSandboxId(), r.GetPid())
	if err != nil {
		return nil, err
	}
	if !p.pty {
		return nil, invalid("command %d has no pty", r.GetPid())
	}
	p.mu.Lock()
	p.cols, p.rows = r.GetSize().GetCols(), r.GetSize().GetRows()
	p.mu.Unlock()
	return connect.NewResponse(&pb.ExecResizeResponse{}), nil
}
