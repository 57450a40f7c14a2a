package envdclient_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	fspb "github.com/wrennhq/wrenn/gen/envd/filesystem"
	fsconnect "github.com/wrennhq/wrenn/gen/envd/filesystem/filesystemconnect"
	pb "github.com/wrennhq/wrenn/gen/envd/process"
	"github.com/wrennhq/wrenn/gen/envd/process/processconnect"
	"github.com/wrennhq/wrenn/internal/envd/envdapi"
	"github.com/wrennhq/wrenn/internal/envd/jsoncodec"
	"github.com/wrennhq/wrenn/internal/envdclient"
)

// mute is an envd stand-in that accepts every request and never answers, until the
// client leaves or the test ends.
func mute(t *testing.T) *httptest.Server {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first, so Close can finish
	return srv
}

// within fails the test when call does not return within a generous bound, and
// returns its error.
func within(t *testing.T, name string, call func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- call() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: still waiting for a mute envd after 20 s", name)
		return nil
	}
}

// TestUnaryCallsToAMuteEnvdEnd: every unary call the agent makes ends at the unary
// limit when its caller set no deadline, saying what timed out, as a deadline.
func TestUnaryCallsToAMuteEnvdEnd(t *testing.T) {
	srv := mute(t)
	c := envdclient.New(srv.URL, "tok", nil, envdclient.WithUnaryTimeout(200*time.Millisecond))
	ctx := context.Background()
	tok := "t2"
	for _, tc := range []struct {
		name, says string
		connect    bool
		call       func() error
	}{
		{"health", "envd health: no answer within 200ms", false, func() error { return c.Health(ctx) }},
		{"init", "envd init: no answer within 200ms", false, func() error { return c.Init(ctx, envdapi.InitRequest{AccessToken: &tok}) }},
		{"metrics", "envd metrics: no answer within 200ms", false, func() error { _, err := c.Metrics(ctx); return err }},
		{"stat", "Stat: no answer within 200ms", true, func() error { _, err := c.Stat(ctx, "/x", ""); return err }},
		{"list", "ListDir: no answer within 200ms", true, func() error { _, err := c.ListDir(ctx, "/x", 1, ""); return err }},
		{"mkdir", "MakeDir: no answer within 200ms", true, func() error { _, err := c.MakeDir(ctx, "/x", ""); return err }},
		{"remove", "Remove: no answer within 200ms", true, func() error { return c.Remove(ctx, "/x", "") }},
		{"input", "SendInput: no answer within 200ms", true, func() error { return c.Input(ctx, 7, []byte("x"), false) }},
		{"close stdin", "CloseStdin: no answer within 200ms", true, func() error { return c.CloseStdin(ctx, 7) }},
		{"resize", "Update: no answer within 200ms", true, func() error { return c.Resize(ctx, 7, envdclient.PTYSize{Cols: 80, Rows: 24}) }},
		{"kill", "SendSignal: no answer within 200ms", true, func() error { return c.Kill(ctx, 7) }},
	} {
		start := time.Now()
		err := within(t, tc.name, tc.call)
		took := time.Since(start)
		switch {
		case err == nil:
			t.Errorf("%s: no error from a mute envd", tc.name)
		case !strings.Contains(err.Error(), tc.says):
			t.Errorf("%s: %v, want it to say %q", tc.name, err, tc.says)
		case !errors.Is(err, context.DeadlineExceeded):
			t.Errorf("%s: %v is not a deadline", tc.name, err)
		case tc.connect && connect.CodeOf(err) != connect.CodeDeadlineExceeded:
			t.Errorf("%s: code %v, want deadline_exceeded", tc.name, connect.CodeOf(err))
		case took > 5*time.Second:
			t.Errorf("%s took %v", tc.name, took)
		}
	}
}

// TestCallersDeadlineWins: a caller's own deadline, longer or shorter, is kept.
func TestCallersDeadlineWins(t *testing.T) {
	srv := mute(t)
	c := envdclient.New(srv.URL, "", nil, envdclient.WithUnaryTimeout(100*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := within(t, "stat", func() error { _, err := c.Stat(ctx, "/x", ""); return err })
	if took := time.Since(start); took < 500*time.Millisecond || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("stat with the caller's 600 ms: %v after %v", err, took)
	}
	if strings.Contains(err.Error(), "no answer within 100ms") {
		t.Errorf("the client's own limit replaced the caller's: %v", err)
	}
}

// TestTransfersEndWhenNothingMoves: an upload the guest stops taking and a download
// it stops sending end at the idle limit, saying so.
func TestTransfersEndWhenNothingMoves(t *testing.T) {
	srv := mute(t)
	c := envdclient.New(srv.URL, "", nil, envdclient.WithIdleTimeout(200*time.Millisecond))
	ctx := context.Background()
	err := within(t, "write", func() error { return c.WriteFile(ctx, "/f", "", strings.NewReader("data")) })
	if err == nil || !strings.Contains(err.Error(), "envd write /f: nothing moved for 200ms") || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("write to a mute envd: %v", err)
	}
	err = within(t, "read", func() error { _, err := c.ReadFile(ctx, "/f", ""); return err })
	if err == nil || !strings.Contains(err.Error(), "envd read /f: nothing moved for 200ms") {
		t.Errorf("read from a mute envd: %v", err)
	}

	// Headers, one byte, then silence: the read of the body ends.
	stall := make(chan struct{})
	half := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("x"))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-stall:
		}
	}))
	defer half.Close()
	defer close(stall)
	c = envdclient.New(half.URL, "", nil, envdclient.WithIdleTimeout(200*time.Millisecond))
	err = within(t, "read body", func() error {
		rc, err := c.ReadFile(ctx, "/f", "")
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.ReadAll(rc)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "envd read /f: nothing moved for 200ms") {
		t.Errorf("a download that stalls: %v", err)
	}
}

// slowReader yields its bytes one chunk per pause.
type slowReader struct {
	chunks int
	pause  time.Duration
}

func (r *slowReader) Read(p []byte) (int, error) {
	if r.chunks == 0 {
		return 0, io.EOF
	}
	time.Sleep(r.pause)
	r.chunks--
	return copy(p, "chunk"), nil
}

// TestSlowTransfersThatMoveWork: the idle limit is not a total time limit, and the
// time the caller's source or sink takes does not count against the guest.
func TestSlowTransfersThatMoveWork(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		for range 8 { // 8 × 100 ms, past the 300 ms idle limit in all
			_, _ = w.Write([]byte("chunk"))
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	}))
	defer srv.Close()
	c := envdclient.New(srv.URL, "", nil, envdclient.WithIdleTimeout(300*time.Millisecond))
	ctx := context.Background()
	// A source slower than the idle limit: its waits are not the guest's.
	if err := c.WriteFile(ctx, "/f", "", &slowReader{chunks: 3, pause: 400 * time.Millisecond}); err != nil {
		t.Errorf("a slow upload: %v", err)
	}
	rc, err := c.ReadFile(ctx, "/f", "")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var got bytes.Buffer
	buf := make([]byte, 5)
	for {
		n, err := rc.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("a slow download: %v", err)
		}
		time.Sleep(350 * time.Millisecond) // a sink slower than the idle limit
	}
	if got.Len() != 40 {
		t.Errorf("a slow download gave %d bytes, want 40", got.Len())
	}
}

// quietProcess is an envd process service stand-in: Start sends the start event
// when started is set, then a keepalive every keepalive (0: none), and nothing
// else until the client leaves.
type quietProcess struct {
	processconnect.UnimplementedProcessHandler
	started   bool
	keepalive time.Duration
	interval  chan string
}

func (p *quietProcess) Start(ctx context.Context, req *connect.Request[pb.StartRequest], stream *connect.ServerStream[pb.StartResponse]) error {
	p.interval <- req.Header().Get("Keepalive-Ping-Interval")
	if p.started {
		if err := stream.Send(&pb.StartResponse{Event: &pb.ProcessEvent{Event: &pb.ProcessEvent_Start{Start: &pb.ProcessEvent_StartEvent{Pid: 7}}}}); err != nil {
			return err
		}
	}
	var tick <-chan time.Time
	if p.keepalive > 0 {
		tk := time.NewTicker(p.keepalive)
		defer tk.Stop()
		tick = tk.C
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick:
			if err := stream.Send(&pb.StartResponse{Event: &pb.ProcessEvent{Event: &pb.ProcessEvent_Keepalive{Keepalive: &pb.ProcessEvent_KeepAlive{}}}}); err != nil {
				return err
			}
		}
	}
}

func quietEnvd(t *testing.T, p *quietProcess, opts ...envdclient.Option) *envdclient.Client {
	t.Helper()
	p.interval = make(chan string, 1)
	mux := http.NewServeMux()
	mux.Handle(processconnect.NewProcessHandler(p, jsoncodec.HandlerOptions()...))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return envdclient.New(srv.URL, "", nil, opts...)
}

// TestStreamOutlivesTheUnaryLimit: a started command whose envd then sends nothing
// stays open past the unary limit until its caller leaves, and asks envd for
// keepalives.
func TestStreamOutlivesTheUnaryLimit(t *testing.T) {
	p := &quietProcess{started: true}
	c := quietEnvd(t, p, envdclient.WithUnaryTimeout(100*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := c.Run(ctx, envdclient.Command{Cmd: "sleep"}, nil, nil, nil); done <- err }()
	if got := <-p.interval; got != "30" {
		t.Errorf("Keepalive-Ping-Interval %q, want 30", got)
	}
	select {
	case err := <-done:
		t.Fatalf("the stream ended at %v: %v", time.Now(), err)
	case <-time.After(time.Second):
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) && connect.CodeOf(err) != connect.CodeCanceled {
			t.Errorf("a stream the caller left: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream outlived its caller")
	}
}

// TestSilentStreamEnds: a stream with no event (not even a keepalive) for the
// stream-idle limit ends, saying so; keepalives keep a quiet one open; a command
// envd never starts ends at the unary limit.
func TestSilentStreamEnds(t *testing.T) {
	c := quietEnvd(t, &quietProcess{started: true}, envdclient.WithStreamIdleTimeout(300*time.Millisecond))
	err := within(t, "silent", func() error {
		_, err := c.Run(context.Background(), envdclient.Command{Cmd: "sleep"}, nil, nil, nil)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "envd run sleep: nothing moved for 300ms") {
		t.Errorf("a silent stream: %v", err)
	}
	if connect.CodeOf(err) == connect.CodeDeadlineExceeded {
		t.Errorf("a dead stream reads as the command's own timeout: %v", err)
	}

	c = quietEnvd(t, &quietProcess{started: true, keepalive: 50 * time.Millisecond}, envdclient.WithStreamIdleTimeout(300*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = c.Run(ctx, envdclient.Command{Cmd: "sleep"}, nil, nil, nil)
	if err == nil || strings.Contains(err.Error(), "nothing moved") {
		t.Errorf("a stream with keepalives, ended by its caller's deadline: %v", err)
	}

	c = quietEnvd(t, &quietProcess{}, envdclient.WithUnaryTimeout(200*time.Millisecond))
	err = within(t, "never started", func() error {
		_, err := c.Run(context.Background(), envdclient.Command{Cmd: "sleep"}, nil, nil, nil)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "envd start sleep: no answer within 200ms") {
		t.Errorf("a command never started: %v", err)
	}
}

// bigStat answers Stat with an entry whose name is n bytes.
type bigStat struct {
	fsconnect.UnimplementedFilesystemHandler
	n int
}

func (b bigStat) Stat(context.Context, *connect.Request[fspb.StatRequest]) (*connect.Response[fspb.StatResponse], error) {
	return connect.NewResponse(&fspb.StatResponse{Entry: &fspb.EntryInfo{Name: strings.Repeat("x", b.n)}}), nil
}

// TestAnswerLimit: an answer from envd over MaxAnswerBytes is refused, not read.
func TestAnswerLimit(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle(fsconnect.NewFilesystemHandler(bigStat{n: envdclient.MaxAnswerBytes}, jsoncodec.HandlerOptions()...))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	_, err := envdclient.New(srv.URL, "", nil).Stat(context.Background(), "/x", "")
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Errorf("an answer over %d bytes: %v, want resource_exhausted", envdclient.MaxAnswerBytes, err)
	}
}
