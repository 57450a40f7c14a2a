package rpc_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
	"github.com/wrennhq/wrenn/internal/agent/agenttest"
	"github.com/wrennhq/wrenn/internal/ident"
	"github.com/wrennhq/wrenn/internal/vmm"
)

// These tests are of the wire: what a caller of hostagent.v1 (the control plane) gets
// back — codes, messages, stream events — from the real agent. The manager's own
// behaviour (rollback, locking, recovery) is internal/agent's tests.

func startAgent(t *testing.T) *agenttest.Agent { return agenttest.Start(t, agenttest.Options{}) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func create(t *testing.T, c hostagentv1connect.HostAgentServiceClient, env map[string]string) string {
	t.Helper()
	id := ident.NewSandboxID()
	if _, err := c.CreateSandbox(ctxT(t), connect.NewRequest(&pb.CreateSandboxRequest{SandboxId: id, Template: agenttest.Template, EnvVars: env, TimeoutSec: 30})); err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	return id
}

// wantCode fails unless err has code and, when msg is not empty, a message containing it.
func wantCode(t *testing.T, err error, code connect.Code, msg string) {
	t.Helper()
	if connect.CodeOf(err) != code {
		t.Fatalf("got %v, want code %v", err, code)
	}
	if ce := new(connect.Error); msg != "" && (!errors.As(err, &ce) || !strings.Contains(ce.Message(), msg)) {
		t.Fatalf("message of %v does not say %q", err, msg)
	}
}

func TestCreateAnswers(t *testing.T) {
	a := startAgent(t)
	c, ctx := a.Client, ctxT(t)

	id := ident.NewSandboxID()
	resp, err := c.CreateSandbox(ctx, connect.NewRequest(&pb.CreateSandboxRequest{SandboxId: id, Template: agenttest.Template, TimeoutSec: 30}))
	if err != nil {
		t.Fatal(err)
	}
	info, _ := a.Manager.Get(id)
	sb := resp.Msg.GetSandbox()
	if sb.GetState() != pb.SandboxState_SANDBOX_STATE_RUNNING || sb.GetTemplate() != agenttest.Template || sb.GetVcpus() != 1 ||
		sb.GetMemoryMb() != 512 || sb.GetTimeoutSec() != 30 || sb.GetHostIp() != info.HostIP.String() || sb.GetCreatedAt() == nil ||
		resp.Msg.GetEnvdAccessToken() == "" || resp.Msg.GetTimings().GetTotalUs() <= 0 {
		t.Fatalf("created: %v", resp.Msg)
	}
	second := create(t, c, nil)
	list, err := c.ListSandboxes(ctx, connect.NewRequest(&pb.ListSandboxesRequest{}))
	if err != nil || len(list.Msg.GetSandboxes()) != 2 || list.Msg.GetSandboxes()[0].GetId() != id || list.Msg.GetSandboxes()[1].GetId() != second {
		t.Fatalf("list, oldest first: %v %v", list, err)
	}

	_, err = c.CreateSandbox(ctx, connect.NewRequest(&pb.CreateSandboxRequest{SandboxId: id}))
	wantCode(t, err, connect.CodeAlreadyExists, id)
	// Refused requests say what is wrong; nothing of them remains.
	for _, bad := range []struct {
		req *pb.CreateSandboxRequest
		msg string
	}{
		{&pb.CreateSandboxRequest{SandboxId: "sb_bad"}, "invalid sandbox id"},
		{&pb.CreateSandboxRequest{Template: "../etc"}, "template: invalid template name"},
		{&pb.CreateSandboxRequest{Vcpus: 17}, "vcpus 17 out of range 1..16"},
		{&pb.CreateSandboxRequest{Vcpus: -1}, "vcpus -1"},
		{&pb.CreateSandboxRequest{MemoryMb: 64}, "memory 64 MiB out of range"},
		{&pb.CreateSandboxRequest{TimeoutSec: -1}, "timeout -1 s"},
		{&pb.CreateSandboxRequest{EnvVars: map[string]string{"1X": "y"}}, `environment variable name "1X"`},
	} {
		_, err := c.CreateSandbox(ctx, connect.NewRequest(bad.req))
		wantCode(t, err, connect.CodeInvalidArgument, "invalid request: "+bad.msg)
	}
	// A template the host does not have is not found there, saying which.
	_, err = c.CreateSandbox(ctx, connect.NewRequest(&pb.CreateSandboxRequest{Template: "nope"}))
	wantCode(t, err, connect.CodeNotFound, `template not found: template "nope"`)
	// A token the control plane chose is the one envd requires; a malformed one is refused.
	_, err = c.CreateSandbox(ctx, connect.NewRequest(&pb.CreateSandboxRequest{EnvdAccessToken: "short"}))
	wantCode(t, err, connect.CodeInvalidArgument, "invalid request: envd access token")
	// A failure of the host itself is Internal, with what failed (the control plane
	// keeps it on the sandbox's record and shows callers a generic error).
	a.Driver.SetHooks(func(context.Context, vmm.Config) error { return errors.New("out of memory") }, nil)
	_, err = c.CreateSandbox(ctx, connect.NewRequest(&pb.CreateSandboxRequest{}))
	wantCode(t, err, connect.CodeInternal, "out of memory")
	a.Driver.SetHooks(nil, nil)
	if n := len(a.Manager.List()); n != 2 {
		t.Errorf("%d sandboxes after the refused creates, want 2", n)
	}
}

// Every call about a sandbox the agent does not have is NotFound, naming it.
func TestNotFound(t *testing.T) {
	a := startAgent(t)
	c, ctx := a.Client, ctxT(t)
	id := create(t, c, nil)
	if _, err := c.DestroySandbox(ctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: id})); err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"DestroySandbox": func() error {
			_, err := c.DestroySandbox(ctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: id}))
			return err
		},
		"GetSandbox": func() error {
			_, err := c.GetSandbox(ctx, connect.NewRequest(&pb.GetSandboxRequest{SandboxId: id}))
			return err
		},
		"Ping": func() error { _, err := c.Ping(ctx, connect.NewRequest(&pb.PingRequest{SandboxId: id})); return err },
		"Exec": func() error {
			_, err := c.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: id, Cmd: "true"}))
			return err
		},
		"ExecStream": func() error {
			return collect(c.ExecStream(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: id, Cmd: "true"}))).err
		},
		"ExecInput": func() error {
			_, err := c.ExecInput(ctx, connect.NewRequest(&pb.ExecInputRequest{SandboxId: id, Pid: 1, Data: []byte("x")}))
			return err
		},
		"ReadFile": func() error {
			_, err := c.ReadFile(ctx, connect.NewRequest(&pb.ReadFileRequest{SandboxId: id, Path: "/x"}))
			return err
		},
		"WriteFile": func() error {
			_, err := c.WriteFile(ctx, connect.NewRequest(&pb.WriteFileRequest{SandboxId: id, Path: "/x"}))
			return err
		},
	}
	for name, call := range calls {
		if err := call(); connect.CodeOf(err) != connect.CodeNotFound || !strings.Contains(err.Error(), "sandbox not found: "+id) {
			t.Errorf("%s of a destroyed sandbox: %v", name, err)
		}
	}
}

// Every RPC — unary, server stream, client stream — needs the bearer secret.
func TestUnauthenticated(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t)
	for _, secret := range []string{"wrong", ""} {
		c := hostagentv1connect.NewHostAgentServiceClient(agenttest.H2CClient(secret), a.URL)
		_, err := c.ListSandboxes(ctx, connect.NewRequest(&pb.ListSandboxesRequest{}))
		wantCode(t, err, connect.CodeUnauthenticated, "")
		_, err = c.CreateSandbox(ctx, connect.NewRequest(&pb.CreateSandboxRequest{}))
		wantCode(t, err, connect.CodeUnauthenticated, "")
		wantCode(t, collect(c.ExecStream(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: "sb0123456789abcdefgh", Cmd: "true"}))).err, connect.CodeUnauthenticated, "")
		ws := c.WriteFileStream(ctx)
		_ = ws.Send(&pb.WriteFileStreamRequest{Part: &pb.WriteFileStreamRequest_Header{Header: &pb.WriteFileRequest{SandboxId: "sb0123456789abcdefgh", Path: "/x"}}})
		_, err = ws.CloseAndReceive()
		wantCode(t, err, connect.CodeUnauthenticated, "")
	}
	if n := len(a.Manager.List()); n != 0 {
		t.Fatalf("unauthenticated creates made %d sandboxes", n)
	}
	if n := a.Calls("CreateSandbox"); n != 2 {
		t.Errorf("Calls(CreateSandbox) = %d, want the 2 refused ones", n)
	}
}
