package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
	"github.com/wrennhq/wrenn/internal/ident"
	"github.com/wrennhq/wrenn/internal/server/hostclient"
	"github.com/wrennhq/wrenn/internal/testutil"
)

const agentSecret = "e2e-agent-secret-0123456789"

// Slots from here on belong to the agent tests.
const agentSlots = 62000

var (
	wrennOnce sync.Once
	wrennBin  string
	wrennErr  error
)

// wrennBinary builds cmd/wrenn once per test run.
func wrennBinary(t *testing.T) string {
	t.Helper()
	wrennOnce.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			wrennErr = err
			return
		}
		dir, err := os.MkdirTemp("", "e2e-wrenn-")
		if err != nil {
			wrennErr = err
			return
		}
		wrennBin = filepath.Join(dir, "wrenn")
		cmd := exec.Command("go", "build", "-o", wrennBin, "./cmd/wrenn")
		cmd.Dir = filepath.Dir(strings.TrimSpace(string(out)))
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			wrennErr = fmt.Errorf("build wrenn: %v\n%s", err, out)
		}
	})
	if wrennErr != nil {
		t.Fatal(wrennErr)
	}
	return wrennBin
}

// agentProc is a running `wrenn agent`.
type agentProc struct {
	cmd  *exec.Cmd
	addr string
	logs *bytes.Buffer
	// logPath is the file that also gets its log (logFile), for reading while it runs.
	logPath string
	client  hostagentv1connect.HostAgentServiceClient
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startAgent runs the agent binary against the tests' WRENN_DIR (internet off, as in
// every test here) and waits until it answers.
func startAgent(t *testing.T, addr string, extraEnv ...string) *agentProc {
	t.Helper()
	a := &agentProc{addr: addr, logs: &bytes.Buffer{}}
	a.cmd = exec.Command(wrennBinary(t), "agent", "--listen", addr, "--first-slot", strconv.Itoa(agentSlots))
	// Warm starts off unless a test asks: their background boots would slow the others.
	a.cmd.Env = append(append(os.Environ(), "WRENN_DIR="+env.dir, "WRENN_AGENT_SECRET="+agentSecret,
		"WRENN_ALLOW_INTERNET_DEFAULT=false", egressAllowEnv, "WRENN_AGENT_WARM_START=false"), extraEnv...)
	out, logPath := logFile(t, "agent-"+addr, a.logs)
	a.logPath = logPath
	a.cmd.Stdout, a.cmd.Stderr = out, out
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if a.cmd.ProcessState == nil {
			_ = a.cmd.Process.Signal(syscall.SIGTERM)
			_ = a.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", a.logs.String())
		}
	})
	a.client = agentClient(addr, agentSecret)
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := a.client.ListSandboxes(context.Background(), connect.NewRequest(&pb.ListSandboxesRequest{}))
		if err == nil {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent did not come up: %v\n%s", err, a.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the agent gracefully: its ready (unused) network slots go with it, while
// sandboxes would keep running.
func (a *agentProc) stop(t *testing.T) {
	t.Helper()
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Wait(); err != nil {
		t.Errorf("agent exit: %v", err)
	}
}

// kill9 kills the agent the hard way.
func (a *agentProc) kill9(t *testing.T) {
	t.Helper()
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = a.cmd.Wait()
}

// agentClient is the control plane's own client of an agent.
func agentClient(addr, secret string) hostagentv1connect.HostAgentServiceClient {
	return hostclient.New(addr, secret)
}

func create(t *testing.T, c hostagentv1connect.HostAgentServiceClient, req *pb.CreateSandboxRequest) *pb.CreateSandboxResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	resp, err := c.CreateSandbox(ctx, connect.NewRequest(req))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	id := resp.Msg.GetSandbox().GetId()
	t.Cleanup(func() {
		_, _ = c.DestroySandbox(context.Background(), connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: id}))
	})
	tm := resp.Msg.GetTimings()
	t.Logf("created %s: slot %dµs disk %dµs vm %dµs boot %dms init %dms total %dms", id, tm.GetSlotUs(), tm.GetDiskUs(), tm.GetVmStartUs(), tm.GetBootUs()/1000, tm.GetInitUs()/1000, tm.GetTotalUs()/1000)
	return resp.Msg
}

func execIn(t *testing.T, c hostagentv1connect.HostAgentServiceClient, id, script string) *pb.ExecResponse {
	t.Helper()
	resp, err := c.Exec(context.Background(), connect.NewRequest(&pb.ExecRequest{SandboxId: id, Cmd: "/bin/bash", Args: []string{"-c", script}, TimeoutSec: 30}))
	if err != nil {
		t.Fatalf("exec %q in %s: %v", script, id, err)
	}
	return resp.Msg
}

func TestAgentCreateExecFilesDestroy(t *testing.T) {
	needVM(t)
	a := startAgent(t, freeAddr(t))
	c := a.client

	if _, err := agentClient(a.addr, "wrong-secret-wrong-secret").ListSandboxes(context.Background(), connect.NewRequest(&pb.ListSandboxesRequest{})); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("wrong secret: %v", err)
	}

	sb := create(t, c, &pb.CreateSandboxRequest{Template: "base", EnvVars: map[string]string{"GREETING": "hi"}})
	id := sb.GetSandbox().GetId()
	if sb.GetSandbox().GetState() != pb.SandboxState_SANDBOX_STATE_RUNNING || sb.GetEnvdAccessToken() == "" || len(id) != 20 {
		t.Fatalf("create: %v", sb)
	}
	out := execIn(t, c, id, `echo "$GREETING $(whoami) $(hostname)"; echo err >&2; exit 7`)
	if string(out.GetStdout()) != "hi user "+id+"\n" || string(out.GetStderr()) != "err\n" || out.GetExitCode() != 7 {
		t.Fatalf("exec: %v", out)
	}

	// The token reached envd: it refuses a request without it.
	resp, err := http.Get("http://" + sb.GetSandbox().GetHostIp() + ":49983/envs")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("envd without token: %d", resp.StatusCode)
	}

	// Streamed exec: pid first, output as it is produced, exit last.
	stream, err := c.ExecStream(context.Background(), connect.NewRequest(&pb.ExecRequest{SandboxId: id, Cmd: "/bin/bash", Args: []string{"-c", "echo one; sleep 0.3; echo two >&2; exit 3"}}))
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	for stream.Receive() {
		switch ev := stream.Msg().GetEvent().(type) {
		case *pb.ExecStreamResponse_StartPid:
			events = append(events, "start")
		case *pb.ExecStreamResponse_Stdout:
			events = append(events, "out:"+string(ev.Stdout))
		case *pb.ExecStreamResponse_Stderr:
			events = append(events, "err:"+string(ev.Stderr))
		case *pb.ExecStreamResponse_Exit:
			events = append(events, fmt.Sprintf("exit:%d", ev.Exit.GetExitCode()))
		}
	}
	if got := strings.Join(events, "|"); stream.Err() != nil || got != "start|out:one\n|err:two\n|exit:3" {
		t.Errorf("exec stream: %q %v", got, stream.Err())
	}

	// Timeout kills the command.
	tr, err := c.Exec(context.Background(), connect.NewRequest(&pb.ExecRequest{SandboxId: id, Cmd: "sleep", Args: []string{"30"}, TimeoutSec: 1}))
	if err != nil || !tr.Msg.GetTimedOut() {
		t.Errorf("exec past its timeout: %v %v", tr, err)
	}

	// 10 MB round trip through the streaming file RPCs.
	payload := make([]byte, 10<<20)
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	ws := c.WriteFileStream(context.Background())
	if err := ws.Send(&pb.WriteFileStreamRequest{Part: &pb.WriteFileStreamRequest_Header{Header: &pb.WriteFileRequest{SandboxId: id, Path: "/home/user/big.bin"}}}); err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(payload); off += 1 << 20 {
		if err := ws.Send(&pb.WriteFileStreamRequest{Part: &pb.WriteFileStreamRequest_Chunk{Chunk: payload[off : off+1<<20]}}); err != nil {
			t.Fatal(err)
		}
	}
	wr, err := ws.CloseAndReceive()
	if err != nil || wr.Msg.GetSize() != int64(len(payload)) {
		t.Fatalf("write stream: %v %v", wr, err)
	}
	rs, err := c.ReadFileStream(context.Background(), connect.NewRequest(&pb.ReadFileRequest{SandboxId: id, Path: "/home/user/big.bin"}))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	for rs.Receive() {
		h.Write(rs.Msg().GetChunk())
	}
	if rs.Err() != nil || !bytes.Equal(h.Sum(nil), sha256Of(payload)) {
		t.Fatalf("read stream: %v, content differs", rs.Err())
	}
	sum := execIn(t, c, id, "sha256sum /home/user/big.bin | cut -d' ' -f1")
	if strings.TrimSpace(string(sum.GetStdout())) != fmt.Sprintf("%x", sha256Of(payload)) {
		t.Errorf("guest sees a different file: %s", sum.GetStdout())
	}
	// Unary file RPCs and their errors.
	if _, err := c.WriteFile(context.Background(), connect.NewRequest(&pb.WriteFileRequest{SandboxId: id, Path: "small.txt", Content: []byte("x")})); err != nil {
		t.Fatal(err)
	}
	rf, err := c.ReadFile(context.Background(), connect.NewRequest(&pb.ReadFileRequest{SandboxId: id, Path: "/home/user/small.txt"}))
	if err != nil || string(rf.Msg.GetContent()) != "x" {
		t.Fatalf("read small: %v %v", rf, err)
	}
	if _, err := c.ReadFile(context.Background(), connect.NewRequest(&pb.ReadFileRequest{SandboxId: id, Path: "/nope"})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("read missing file: %v", err)
	}
	if _, err := c.Ping(context.Background(), connect.NewRequest(&pb.PingRequest{SandboxId: id})); err != nil {
		t.Error(err)
	}

	dir := filepath.Join(env.dir, "sandboxes", id)
	ns := netnsOf(t, sb.GetSandbox())
	if _, err := c.DestroySandbox(context.Background(), connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: id})); err != nil {
		t.Fatal(err)
	}
	assertGone(t, dir, ns)
	if _, err := c.GetSandbox(context.Background(), connect.NewRequest(&pb.GetSandboxRequest{SandboxId: id})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("get after destroy: %v", err)
	}
	if _, err := c.Exec(context.Background(), connect.NewRequest(&pb.ExecRequest{SandboxId: id, Cmd: "true"})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("exec after destroy: %v", err)
	}
}

func sha256Of(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// netnsOf finds a sandbox's namespace from its host address (slot i ↔ 10.11.i>>8.i&255).
func netnsOf(t *testing.T, sb *pb.Sandbox) string {
	t.Helper()
	ip := net.ParseIP(sb.GetHostIp()).To4()
	if ip == nil {
		t.Fatalf("sandbox without a host address: %v", sb)
	}
	return "wrenn-ns-" + strconv.Itoa(int(ip[2])<<8|int(ip[3]))
}

func TestAgentRejectsBadInputAndLeavesNothing(t *testing.T) {
	needVM(t)
	a := startAgent(t, freeAddr(t))
	before, _ := os.ReadDir(filepath.Join(env.dir, "sandboxes"))
	cases := map[string]*pb.CreateSandboxRequest{
		"path in template": {Template: "../../etc"},
		"upper case":       {Template: "Base"},
		"absurd vcpus":     {Vcpus: 999},
		"absurd memory":    {MemoryMb: 10_000_000},
		"tiny memory":      {MemoryMb: 16},
		"negative disk":    {DiskMb: -1},
		"bad id":           {SandboxId: "../x"},
		"bad env name":     {EnvVars: map[string]string{"A=B": "1"}},
		"negative timeout": {TimeoutSec: -5},
	}
	for name, req := range cases {
		_, err := a.client.CreateSandbox(context.Background(), connect.NewRequest(req))
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("%s: %v, want invalid_argument", name, err)
		}
	}
	if _, err := a.client.CreateSandbox(context.Background(), connect.NewRequest(&pb.CreateSandboxRequest{Template: "nosuch"})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("unknown template: %v, want not_found", err)
	}
	for _, id := range []string{"", "nosuchsandbox"} {
		if _, err := a.client.DestroySandbox(context.Background(), connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: id})); connect.CodeOf(err) != connect.CodeNotFound {
			t.Errorf("destroy %q: %v", id, err)
		}
	}
	after, _ := os.ReadDir(filepath.Join(env.dir, "sandboxes"))
	if len(after) != len(before) {
		t.Errorf("failed creates left directories: %d before, %d after", len(before), len(after))
	}
	a.stop(t)
	assertNoAgentSlots(t)
}

// assertNoAgentSlots checks no namespace of the agent tests' range remains.
func assertNoAgentSlots(t *testing.T) {
	t.Helper()
	nss, _ := os.ReadDir("/var/run/netns")
	for _, n := range nss {
		if i, err := strconv.Atoi(strings.TrimPrefix(n.Name(), "wrenn-ns-")); err == nil && i >= agentSlots {
			t.Errorf("network namespace %s remains", n.Name())
		}
	}
}

func TestAgentThreeSandboxesAndIdleReaper(t *testing.T) {
	needVM(t)
	a := startAgent(t, freeAddr(t))
	var wg sync.WaitGroup
	ids := make([]string, 3)
	hostnames := make([]string, 3)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			timeout := int32(0)
			if i == 2 {
				timeout = 8 // paused once idle
			}
			ids[i] = create(t, a.client, &pb.CreateSandboxRequest{TimeoutSec: timeout}).GetSandbox().GetId()
			// Right after its create, before the idle clock of the timed one can run out.
			hostnames[i] = strings.TrimSpace(string(execIn(t, a.client, ids[i], "hostname").GetStdout()))
		}()
	}
	wg.Wait()
	for i, id := range ids {
		if hostnames[i] != id {
			t.Errorf("sandbox %s answers as %q", id, hostnames[i])
		}
	}
	list, err := a.client.ListSandboxes(context.Background(), connect.NewRequest(&pb.ListSandboxesRequest{}))
	if err != nil || len(list.Msg.GetSandboxes()) < 2 { // the timed one may already be reaped
		t.Fatalf("list: %v %v", list, err)
	}
	testutil.WaitFor(t, 30*time.Second, "the idle sandbox with an 8 s timeout to be paused", func() bool {
		got, err := a.client.GetSandbox(context.Background(), connect.NewRequest(&pb.GetSandboxRequest{SandboxId: ids[2]}))
		if err != nil {
			t.Fatalf("the idle sandbox is gone (destroyed instead of paused?): %v", err)
		}
		return got.Msg.GetSandbox().GetState() == pb.SandboxState_SANDBOX_STATE_PAUSED
	})
	// The others were not reaped: no timeout.
	for _, id := range ids[:2] {
		if _, err := a.client.GetSandbox(context.Background(), connect.NewRequest(&pb.GetSandboxRequest{SandboxId: id})); err != nil {
			t.Errorf("sandbox %s without timeout vanished: %v", id, err)
		}
	}
}

func TestAgentRestartKeepsSandboxes(t *testing.T) {
	needVM(t)
	addr := freeAddr(t)
	a := startAgent(t, addr)
	ids := []string{
		create(t, a.client, &pb.CreateSandboxRequest{}).GetSandbox().GetId(),
		create(t, a.client, &pb.CreateSandboxRequest{}).GetSandbox().GetId(),
	}
	execIn(t, a.client, ids[0], "echo state > /home/user/marker")
	a.kill9(t)

	b := startAgent(t, addr)
	for _, id := range ids {
		got, err := b.client.GetSandbox(context.Background(), connect.NewRequest(&pb.GetSandboxRequest{SandboxId: id}))
		if err != nil || got.Msg.GetSandbox().GetState() != pb.SandboxState_SANDBOX_STATE_RUNNING {
			t.Fatalf("sandbox %s after agent restart: %v %v\n%s", id, got, err, b.logs.String())
		}
	}
	if out := execIn(t, b.client, ids[0], "cat /home/user/marker"); string(out.GetStdout()) != "state\n" {
		t.Errorf("state lost across agent restart: %q", out.GetStdout())
	}
	for _, id := range ids {
		if _, err := b.client.DestroySandbox(context.Background(), connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: id})); err != nil {
			t.Error(err)
		}
	}
	// The first agent's ready slots died with it; the second reclaimed them.
	b.stop(t)
	assertNoAgentSlots(t)
}

func TestAgentKilledMidCreateCleansUp(t *testing.T) {
	needVM(t)
	addr := freeAddr(t)
	a := startAgent(t, addr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	id := ident.NewSandboxID()
	go func() {
		_, err := a.client.CreateSandbox(ctx, connect.NewRequest(&pb.CreateSandboxRequest{SandboxId: id}))
		done <- err
	}()
	// Wait until the create is under way: its directory and VM exist, envd not yet up.
	dir := filepath.Join(env.dir, "sandboxes", id)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "qemu.pid")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("create never got to starting the VM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.kill9(t)
	cancel()
	<-done

	b := startAgent(t, addr)
	if _, err := b.client.GetSandbox(context.Background(), connect.NewRequest(&pb.GetSandboxRequest{SandboxId: id})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("half-made sandbox after restart: %v", err)
	}
	assertGone(t, dir, "")
	b.stop(t)
	assertNoAgentSlots(t)
}
