package envd_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/envd/process"
	"github.com/wrennhq/wrenn/gen/envd/process/processconnect"
	"github.com/wrennhq/wrenn/internal/envd/envdtest"
	"github.com/wrennhq/wrenn/internal/testutil"
)

// result is everything one Start or Connect stream delivered.
type result struct {
	pid                 uint32
	stdout, stderr, pty bytes.Buffer
	end                 *pb.ProcessEvent_EndEvent
	keepalives          int
	err                 error
}

func collect[T interface{ GetEvent() *pb.ProcessEvent }](t *testing.T, s interface {
	Receive() bool
	Msg() T
	Err() error
}) *result {
	t.Helper()
	return collectFrom(t, s, true)
}

// collectFrom reads a stream to its end; wantStart is false when the caller already
// consumed the start event.
func collectFrom[T interface{ GetEvent() *pb.ProcessEvent }](t *testing.T, s interface {
	Receive() bool
	Msg() T
	Err() error
}, wantStart bool) *result {
	t.Helper()
	r := &result{}
	first := wantStart
	for s.Receive() {
		ev := s.Msg().GetEvent()
		if first {
			if ev.GetStart() == nil {
				t.Fatalf("first event is %v, want start", ev)
			}
			first = false
		}
		switch e := ev.GetEvent().(type) {
		case *pb.ProcessEvent_Start:
			r.pid = e.Start.GetPid()
		case *pb.ProcessEvent_Data:
			r.stdout.Write(e.Data.GetStdout())
			r.stderr.Write(e.Data.GetStderr())
			r.pty.Write(e.Data.GetPty())
		case *pb.ProcessEvent_End:
			if r.end != nil {
				t.Fatalf("second end event")
			}
			r.end = e.End
		case *pb.ProcessEvent_Keepalive:
			r.keepalives++
		}
	}
	r.err = s.Err()
	return r
}

func bash(script string) *pb.StartRequest {
	return &pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "/bin/bash", Args: []string{"-l", "-c", script}}, Stdin: ptr(false)}
}

func ptr[T any](v T) *T { return &v }

func run(t *testing.T, c processconnect.ProcessClient, msg *pb.StartRequest, header ...string) *result {
	t.Helper()
	req := connect.NewRequest(msg)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header().Set(header[i], header[i+1])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stream, err := c.Start(ctx, req)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	defer stream.Close()
	return collect(t, stream)
}

func mustExit(t *testing.T, r *result, code int32) {
	t.Helper()
	out, errOut := clip(r.stdout.String()), clip(r.stderr.String())
	if r.err != nil {
		t.Fatalf("stream error: %v (stdout %q stderr %q)", r.err, out, errOut)
	}
	if r.end == nil {
		t.Fatalf("no end event (stdout %q stderr %q)", out, errOut)
	}
	if r.end.GetExitCode() != code {
		t.Fatalf("exit code %d (%s), want %d; stdout %q stderr %q", r.end.GetExitCode(), r.end.GetStatus(), code, out, errOut)
	}
}

// clip keeps failure messages readable when a test produced megabytes of output.
func clip(s string) string {
	if len(s) > 512 {
		return s[:256] + fmt.Sprintf("…(%d bytes)…", len(s)-512) + s[len(s)-256:]
	}
	return s
}

// userEnvd is an envd initialised the way the host agent will: default user `user`.
func userEnvd(t *testing.T) *envdtest.Envd {
	e := envdtest.Start(t)
	e.Init(t, `{"defaultUser":"user","defaultWorkdir":"/home/user","envVars":{"GLOBAL_VAR":"from-init"}}`)
	return e
}

func TestStartStreamsOutputAndExit(t *testing.T) {
	e := userEnvd(t)
	for _, codec := range envdtest.Codecs {
		t.Run(string(codec), func(t *testing.T) {
			c := e.Process(codec)
			r := run(t, c, bash("echo Hello, World!"))
			mustExit(t, r, 0)
			if got := r.stdout.String(); got != "Hello, World!\n" {
				t.Errorf("stdout %q", got)
			}
			if !r.end.GetExited() || r.end.GetStatus() != "exit status 0" || r.end.Error != nil {
				t.Errorf("end %v, want exited, status 'exit status 0', no error", r.end)
			}
			if r.pid == 0 {
				t.Error("start event without pid")
			}

			r = run(t, c, bash("echo out; echo err >&2; exit 3"))
			mustExit(t, r, 3)
			if r.stdout.String() != "out\n" || r.stderr.String() != "err\n" {
				t.Errorf("stdout %q stderr %q", r.stdout.String(), r.stderr.String())
			}
			if r.end.GetStatus() != "exit status 3" || r.end.GetError() != "exit status 3" {
				t.Errorf("end %v", r.end)
			}
		})
	}
}

func TestStartUserEnvAndCwd(t *testing.T) {
	e := userEnvd(t)
	c := e.Process(envdtest.JSON)

	r := run(t, c, bash(`echo "$(whoami) $(pwd) $HOME $USER $(id -u) $(id -G) $GLOBAL_VAR $E2B_SANDBOX"`))
	mustExit(t, r, 0)
	want := fmt.Sprintf("user /home/user /home/user user %d %d %d from-init true\n", envdtest.UserUID, envdtest.UserGID, envdtest.ExtraGID)
	if r.stdout.String() != want {
		t.Errorf("default user view %q, want %q", r.stdout.String(), want)
	}

	r = run(t, c, bash(`echo "$(whoami) $HOME $(pwd)"`), "Authorization", envdtest.BasicUser("root"))
	mustExit(t, r, 0)
	if r.stdout.String() != "root /root /home/user\n" {
		t.Errorf("root view %q", r.stdout.String())
	}

	msg := bash(`echo "$PER_CMD|$GLOBAL_VAR"; pwd`)
	msg.Process.Envs = map[string]string{"PER_CMD": "only-here", "GLOBAL_VAR": "overridden"}
	msg.Process.Cwd = ptr("/tmp")
	r = run(t, c, msg)
	mustExit(t, r, 0)
	if r.stdout.String() != "only-here|overridden\n/tmp\n" {
		t.Errorf("per-command env/cwd: %q", r.stdout.String())
	}
	r = run(t, c, bash(`echo "[$PER_CMD]$GLOBAL_VAR"`))
	mustExit(t, r, 0)
	if r.stdout.String() != "[]from-init\n" {
		t.Errorf("per-command env leaked into the next command: %q", r.stdout.String())
	}

	// Relative cwd resolves against the home directory.
	r = run(t, c, &pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "pwd", Cwd: ptr(".")}})
	mustExit(t, r, 0)
	if r.stdout.String() != "/home/user\n" {
		t.Errorf("relative cwd: %q", r.stdout.String())
	}
}

func TestStartRejectsBadInput(t *testing.T) {
	e := userEnvd(t)
	for _, codec := range envdtest.Codecs {
		t.Run(string(codec), func(t *testing.T) {
			c := e.Process(codec)
			cases := []struct {
				name   string
				msg    *pb.StartRequest
				header []string
				code   connect.Code
				text   string
			}{
				{"no process", &pb.StartRequest{}, nil, connect.CodeInvalidArgument, "process.cmd is required"},
				{"missing cwd", &pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "true", Cwd: ptr("/nope")}}, nil, connect.CodeInvalidArgument, "cwd '/nope' does not exist"},
				{"unknown binary", &pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "no-such-binary-xyz"}}, nil, connect.CodeInvalidArgument, "executable file not found"},
				{"not executable", &pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "/etc/passwd"}}, nil, connect.CodeInvalidArgument, "permission denied"},
				{"unknown user", bash("true"), []string{"Authorization", envdtest.BasicUser("ghost")}, connect.CodeUnauthenticated, "invalid username: 'ghost'"},
				{"other home", &pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "true", Cwd: ptr("~root/x")}}, nil, connect.CodeInvalidArgument, "another user's home"},
			}
			for _, tc := range cases {
				r := run(t, c, tc.msg, tc.header...)
				if connect.CodeOf(r.err) != tc.code || !strings.Contains(r.err.Error(), tc.text) {
					t.Errorf("%s: err %v, want %v containing %q", tc.name, r.err, tc.code, tc.text)
				}
			}
		})
	}
}

func TestLargeOutputInOrder(t *testing.T) {
	e := userEnvd(t)
	for _, codec := range envdtest.Codecs {
		t.Run(string(codec), func(t *testing.T) {
			// seq prints ~100 MB of numbered lines; any loss or reordering breaks the count.
			const n = 12_500_000
			r := run(t, e.Process(codec), bash("seq 1 "+strconv.Itoa(n)))
			mustExit(t, r, 0)
			out := r.stdout.Bytes()
			if len(out) < 100_000_000 {
				t.Fatalf("only %d bytes of output", len(out))
			}
			next := 1
			for len(out) > 0 {
				i := bytes.IndexByte(out, '\n')
				if i < 0 {
					t.Fatalf("unterminated tail after line %d", next-1)
				}
				if got, _ := strconv.Atoi(string(out[:i])); got != next {
					t.Fatalf("line %d reads %q", next, out[:i])
				}
				out = out[i+1:]
				next++
			}
			if next-1 != n {
				t.Fatalf("%d lines, want %d", next-1, n)
			}
		})
	}
}

func TestManyParallelCommands(t *testing.T) {
	e := userEnvd(t)
	c := e.Process(envdtest.JSON)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream, err := c.Start(context.Background(), connect.NewRequest(&pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "/bin/echo", Args: []string{"n" + strconv.Itoa(i)}}}))
			if err != nil {
				errs <- err
				return
			}
			defer stream.Close()
			var out bytes.Buffer
			var end *pb.ProcessEvent_EndEvent
			for stream.Receive() {
				ev := stream.Msg().GetEvent()
				out.Write(ev.GetData().GetStdout())
				if ev.GetEnd() != nil {
					end = ev.GetEnd()
				}
			}
			if stream.Err() != nil || end == nil || end.GetExitCode() != 0 || out.String() != fmt.Sprintf("n%d\n", i) {
				errs <- fmt.Errorf("command %d: err %v end %v out %q", i, stream.Err(), end, out.String())
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// startBackground starts a process and returns its pid once the start event arrived,
// leaving the stream open until the test ends.
func startBackground(t *testing.T, c processconnect.ProcessClient, msg *pb.StartRequest) (uint32, *connect.ServerStreamForClient[pb.StartResponse], context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := c.Start(ctx, connect.NewRequest(msg))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if !stream.Receive() || stream.Msg().GetEvent().GetStart() == nil {
		cancel()
		t.Fatalf("no start event: %v", stream.Err())
	}
	t.Cleanup(func() { cancel(); stream.Close() })
	return stream.Msg().GetEvent().GetStart().GetPid(), stream, cancel
}

func TestReconnectListAndSignals(t *testing.T) {
	e := userEnvd(t)
	for _, codec := range envdtest.Codecs {
		t.Run(string(codec), func(t *testing.T) {
			c := e.Process(codec)
			msg := bash(`for i in $(seq 1 100); do echo tick$i; sleep 0.1; done`)
			msg.Tag = ptr("ticker-" + string(codec))
			pid, stream, cancel := startBackground(t, c, msg)
			cancel() // drop the stream: the process must live on
			stream.Close()

			list, err := c.List(context.Background(), connect.NewRequest(&pb.ListRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			var found *pb.ProcessInfo
			for _, p := range list.Msg.GetProcesses() {
				if p.GetPid() == pid {
					found = p
				}
			}
			if found == nil || found.GetTag() != *msg.Tag || found.GetConfig().GetCmd() != "/bin/bash" || len(found.GetConfig().GetArgs()) != 3 {
				t.Fatalf("list: %v, want pid %d with its config and tag", list.Msg, pid)
			}

			// Reconnect by tag: output keeps coming.
			ctx, stop := context.WithCancel(context.Background())
			conn, err := c.Connect(ctx, connect.NewRequest(&pb.ConnectRequest{Process: &pb.ProcessSelector{Selector: &pb.ProcessSelector_Tag{Tag: *msg.Tag}}}))
			if err != nil {
				t.Fatal(err)
			}
			if !conn.Receive() || conn.Msg().GetEvent().GetStart().GetPid() != pid {
				t.Fatalf("connect: first event %v err %v", conn.Msg(), conn.Err())
			}
			gotTick := false
			for !gotTick && conn.Receive() {
				gotTick = bytes.Contains(conn.Msg().GetEvent().GetData().GetStdout(), []byte("tick"))
			}
			if !gotTick {
				t.Fatalf("no output after reconnect: %v", conn.Err())
			}

			// A second listener by pid sees the end too; SIGTERM ends the process.
			conn2, err := c.Connect(context.Background(), connect.NewRequest(&pb.ConnectRequest{Process: &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: pid}}}))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.SendSignal(context.Background(), connect.NewRequest(&pb.SendSignalRequest{Process: &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: pid}}, Signal: pb.Signal_SIGNAL_SIGTERM})); err != nil {
				t.Fatal(err)
			}
			r := collect(t, conn2)
			if r.end == nil || r.end.GetExited() || r.end.GetExitCode() != -1 || r.end.GetStatus() != "signal: terminated" {
				t.Fatalf("end after SIGTERM: %v (err %v)", r.end, r.err)
			}
			stop()
			conn.Close()

			// Reaped: the pid is gone from the guest and from List.
			waitGone(t, pid)
			list, err = c.List(context.Background(), connect.NewRequest(&pb.ListRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range list.Msg.GetProcesses() {
				if p.GetPid() == pid {
					t.Errorf("ended process %d still listed", pid)
				}
			}
			// A late Connect still learns how it ended: start, then end at once.
			late, err := c.Connect(context.Background(), connect.NewRequest(&pb.ConnectRequest{Process: &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: pid}}}))
			if err != nil {
				t.Fatal(err)
			}
			r = collect(t, late)
			if r.err != nil || r.pid != pid || r.end.GetStatus() != "signal: terminated" {
				t.Errorf("late connect: pid %d end %v err %v", r.pid, r.end, r.err)
			}
		})
	}
}

func waitGone(t *testing.T, pid uint32) {
	t.Helper()
	testutil.WaitFor(t, 5*time.Second, fmt.Sprintf("pid %d to be gone (reaped)", pid), func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
		return err != nil
	})
}

func TestKillAndUnknownProcesses(t *testing.T) {
	e := userEnvd(t)
	c := e.Process(envdtest.JSON)
	pid, stream, _ := startBackground(t, c, bash("sleep 30"))
	sel := &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: pid}}
	if _, err := c.SendSignal(context.Background(), connect.NewRequest(&pb.SendSignalRequest{Process: sel, Signal: pb.Signal_SIGNAL_SIGKILL})); err != nil {
		t.Fatal(err)
	}
	r := collectFrom(t, stream, false)
	if r.end == nil || r.end.GetStatus() != "signal: killed" || r.end.GetError() != "signal: killed" {
		t.Fatalf("end after SIGKILL: %v err %v", r.end, r.err)
	}
	waitGone(t, pid)
	// `kill -0 <pid>` from inside the sandbox fails, as the SDK tests check.
	r = run(t, c, bash(fmt.Sprintf("kill -0 %d", pid)))
	if r.end == nil || r.end.GetExitCode() == 0 {
		t.Fatalf("kill -0 of a killed pid succeeded")
	}

	missing := &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: 999999}}
	checks := map[string]error{}
	_, checks["signal"] = c.SendSignal(context.Background(), connect.NewRequest(&pb.SendSignalRequest{Process: missing, Signal: pb.Signal_SIGNAL_SIGKILL}))
	_, checks["input"] = c.SendInput(context.Background(), connect.NewRequest(&pb.SendInputRequest{Process: missing, Input: &pb.ProcessInput{Input: &pb.ProcessInput_Stdin{Stdin: []byte("x")}}}))
	_, checks["close"] = c.CloseStdin(context.Background(), connect.NewRequest(&pb.CloseStdinRequest{Process: missing}))
	_, checks["update"] = c.Update(context.Background(), connect.NewRequest(&pb.UpdateRequest{Process: missing}))
	for name, err := range checks {
		if connect.CodeOf(err) != connect.CodeNotFound || !strings.Contains(err.Error(), "process with pid 999999 not found") {
			t.Errorf("%s on a missing pid: %v", name, err)
		}
	}
	_, err := c.SendSignal(context.Background(), connect.NewRequest(&pb.SendSignalRequest{Process: &pb.ProcessSelector{}, Signal: pb.Signal_SIGNAL_SIGKILL}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("empty selector: %v", err)
	}
	pid2, _, _ := startBackground(t, c, bash("sleep 30"))
	_, err = c.SendSignal(context.Background(), connect.NewRequest(&pb.SendSignalRequest{Process: &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: pid2}}, Signal: pb.Signal(2)}))
	if connect.CodeOf(err) != connect.CodeUnimplemented {
		t.Errorf("unsupported signal: %v", err)
	}
}

func TestStdin(t *testing.T) {
	e := userEnvd(t)
	for _, codec := range envdtest.Codecs {
		t.Run(string(codec), func(t *testing.T) {
			c := e.Process(codec)
			// The shell outlives cat's EOF briefly, so a second CloseStdin finds it alive.
			pid, stream, _ := startBackground(t, c, &pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "/bin/bash", Args: []string{"-c", "cat; sleep 0.5"}}})
			sel := &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: pid}}
			for _, chunk := range []string{"hello ", "", "world"} {
				if _, err := c.SendInput(context.Background(), connect.NewRequest(&pb.SendInputRequest{Process: sel, Input: &pb.ProcessInput{Input: &pb.ProcessInput_Stdin{Stdin: []byte(chunk)}}})); err != nil {
					t.Fatal(err)
				}
			}
			_, err := c.SendInput(context.Background(), connect.NewRequest(&pb.SendInputRequest{Process: sel, Input: &pb.ProcessInput{Input: &pb.ProcessInput_Pty{Pty: []byte("x")}}}))
			if connect.CodeOf(err) != connect.CodeInternal {
				t.Errorf("pty input to a pipe process: %v", err)
			}
			_, err = c.SendInput(context.Background(), connect.NewRequest(&pb.SendInputRequest{Process: sel}))
			if connect.CodeOf(err) != connect.CodeUnimplemented {
				t.Errorf("input unset: %v", err)
			}
			_, err = c.Update(context.Background(), connect.NewRequest(&pb.UpdateRequest{Process: sel, Pty: &pb.PTY{Size: &pb.PTY_Size{Cols: 10, Rows: 10}}}))
			if connect.CodeOf(err) != connect.CodeInternal {
				t.Errorf("resize of a pipe process: %v", err)
			}
			for range 2 { // closing twice is fine
				if _, err := c.CloseStdin(context.Background(), connect.NewRequest(&pb.CloseStdinRequest{Process: sel})); err != nil {
					t.Fatal(err)
				}
			}
			r := collectFrom(t, stream, false)
			mustExit(t, r, 0)
			if r.stdout.String() != "hello world" {
				t.Errorf("cat echoed %q", r.stdout.String())
			}
		})
	}

	// Client-streaming input.
	c := e.Process(envdtest.Proto)
	pid, stream, _ := startBackground(t, c, &pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "cat"}})
	sel := &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: pid}}
	in := c.StreamInput(context.Background())
	must(t, in.Send(&pb.StreamInputRequest{Event: &pb.StreamInputRequest_Start{Start: &pb.StreamInputRequest_StartEvent{Process: sel}}}))
	must(t, in.Send(&pb.StreamInputRequest{Event: &pb.StreamInputRequest_Keepalive{Keepalive: &pb.StreamInputRequest_KeepAlive{}}}))
	for _, s := range []string{"a", "b", "c"} {
		must(t, in.Send(&pb.StreamInputRequest{Event: &pb.StreamInputRequest_Data{Data: &pb.StreamInputRequest_DataEvent{Input: &pb.ProcessInput{Input: &pb.ProcessInput_Stdin{Stdin: []byte(s)}}}}}))
	}
	if _, err := in.CloseAndReceive(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CloseStdin(context.Background(), connect.NewRequest(&pb.CloseStdinRequest{Process: sel})); err != nil {
		t.Fatal(err)
	}
	r := collectFrom(t, stream, false)
	mustExit(t, r, 0)
	if r.stdout.String() != "abc" {
		t.Errorf("stream input echoed %q", r.stdout.String())
	}

	// stdin:false gives the process /dev/null: cat ends at once, and input is refused.
	r = run(t, c, &pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "cat"}, Stdin: ptr(false)})
	mustExit(t, r, 0)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestPTY(t *testing.T) {
	e := userEnvd(t)
	for _, codec := range envdtest.Codecs {
		t.Run(string(codec), func(t *testing.T) {
			c := e.Process(codec)
			msg := &pb.StartRequest{
				Process: &pb.ProcessConfig{Cmd: "/bin/bash", Args: []string{"-i", "-l"}, Envs: map[string]string{"ABC": "123", "TERM": "xterm-256color"}},
				Pty:     &pb.PTY{Size: &pb.PTY_Size{Cols: 80, Rows: 24}},
			}
			pid, stream, _ := startBackground(t, c, msg)
			sel := &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: pid}}
			send := func(s string) {
				t.Helper()
				if _, err := c.SendInput(context.Background(), connect.NewRequest(&pb.SendInputRequest{Process: sel, Input: &pb.ProcessInput{Input: &pb.ProcessInput_Pty{Pty: []byte(s)}}})); err != nil {
					t.Fatal(err)
				}
			}
			var out bytes.Buffer
			waitFor := func(want string) {
				t.Helper()
				for !strings.Contains(out.String(), want) {
					if !stream.Receive() {
						t.Fatalf("stream ended before %q appeared: %v\n%s", want, stream.Err(), out.String())
					}
					out.Write(stream.Msg().GetEvent().GetData().GetPty())
					if stream.Msg().GetEvent().GetData().GetStdout() != nil {
						t.Fatal("pty process sent stdout data")
					}
				}
			}
			send("echo val=$ABC\n")
			waitFor("val=123")
			if _, err := c.Update(context.Background(), connect.NewRequest(&pb.UpdateRequest{Process: sel, Pty: &pb.PTY{Size: &pb.PTY_Size{Cols: 123, Rows: 45}}})); err != nil {
				t.Fatal(err)
			}
			send("stty size\n")
			waitFor("45 123")
			_, err := c.CloseStdin(context.Background(), connect.NewRequest(&pb.CloseStdinRequest{Process: sel}))
			if connect.CodeOf(err) != connect.CodeUnknown {
				t.Errorf("CloseStdin on a pty: %v", err)
			}
			send("exit\n")
			r := collectFrom(t, stream, false)
			mustExit(t, r, 0)
		})
	}
}

func TestDeadlineKillsProcessAndKeepalive(t *testing.T) {
	e := userEnvd(t)
	c := e.Process(envdtest.JSON)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	stream, err := c.Start(ctx, connect.NewRequest(bash("sleep 30")))
	if err != nil {
		t.Fatal(err)
	}
	r := collect(t, stream)
	if connect.CodeOf(r.err) != connect.CodeDeadlineExceeded || r.end != nil {
		t.Fatalf("after the deadline: err %v end %v, want deadline_exceeded and no end", r.err, r.end)
	}
	waitGone(t, r.pid)

	req := connect.NewRequest(bash("sleep 2.5; echo done"))
	req.Header().Set("Keepalive-Ping-Interval", "1")
	stream, err = c.Start(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	r = collect(t, stream)
	mustExit(t, r, 0)
	if r.keepalives < 1 || r.stdout.String() != "done\n" {
		t.Fatalf("keepalives %d stdout %q, want ≥1 keepalive on an idle stream", r.keepalives, r.stdout.String())
	}
}

func TestBackgroundChildDoesNotHoldTheStream(t *testing.T) {
	e := userEnvd(t)
	start := time.Now()
	r := run(t, e.Process(envdtest.JSON), bash("sleep 20 & echo started"))
	mustExit(t, r, 0)
	if r.stdout.String() != "started\n" || time.Since(start) > 5*time.Second {
		t.Fatalf("stdout %q after %v", r.stdout.String(), time.Since(start))
	}
}
