// Package envdclient is the host side's client of envd, the daemon inside every guest:
// wait for it to come up, initialise it, run commands through its process service and
// move files through /files and its filesystem service (filesystem.go).
package envdclient

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/wrennhq/wrenn/gen/envd/filesystem/filesystemconnect"
	pb "github.com/wrennhq/wrenn/gen/envd/process"
	"github.com/wrennhq/wrenn/gen/envd/process/processconnect"
	"github.com/wrennhq/wrenn/internal/envd/envdapi"
	"github.com/wrennhq/wrenn/internal/envd/jsoncodec"
)

// MaxAnswerBytes bounds one message the client reads from envd's Connect services,
// so a hostile guest cannot make the agent allocate without bound: a larger one is a
// resource_exhausted error. The largest a healthy envd sends is a deep listing,
// about 250 bytes an entry: this is half a million entries, fifty times what the
// agent keeps of one (hostproto.MaxListEntries). Output streams arrive in chunks of
// kilobytes; /files and the HTTP answers are bounded where they are read.
const MaxAnswerBytes = 128 << 20

// Client talks to one envd.
type Client struct {
	base  string
	http  *http.Client
	token atomic.Pointer[string]
	procs processconnect.ProcessClient
	fs    filesystemconnect.FilesystemClient
	lim   limits
}

// New returns a client for envd at baseURL (http://host:49983). token is sent as
// X-Access-Token once set; "" sends none. Every call is bounded even when its caller
// sets no deadline (deadline.go); opts shorten or lengthen those bounds.
func New(baseURL, token string, hc *http.Client, opts ...Option) *Client {
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{DisableCompression: true}}
	}
	c := &Client{base: baseURL, http: hc, lim: defaultLimits()}
	for _, o := range opts {
		o(&c.lim)
	}
	c.SetToken(token)
	copts := append(jsoncodec.ClientOptions(), connect.WithInterceptors(tokenInterceptor{c}, deadlineInterceptor{c}),
		connect.WithReadMaxBytes(MaxAnswerBytes))
	c.procs = processconnect.NewProcessClient(hc, baseURL, copts...)
	c.fs = filesystemconnect.NewFilesystemClient(hc, baseURL, copts...)
	return c
}

// CloseIdleConnections closes the kept-alive connections of the client's HTTP client
// (every client sharing it loses its own too). The agent gives each VM its own and
// closes them when the VM stops: they lead nowhere then, and the address becomes the
// next VM's.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// SetToken changes the token sent with requests (after an /init installed it).
func (c *Client) SetToken(token string) { c.token.Store(&token) }

func (c *Client) currentToken() string { return *c.token.Load() }

// Health reports whether envd answers /health.
func (c *Client) Health(ctx context.Context) error {
	ctx, done := c.unary(ctx, "health")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/health", nil)
	if err != nil {
		return done(err)
	}
	resp, err := c.http.Do(req)
	if err = done(err); err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("envd health: status %d", resp.StatusCode)
	}
	return nil
}

// WaitHealthy polls /health until it answers or ctx ends; each failed try waits a
// little longer (10 ms doubling to 200 ms), so a fast boot is noticed at once.
func (c *Client) WaitHealthy(ctx context.Context) error {
	delay := 10 * time.Millisecond
	for {
		tryCtx, cancel := context.WithTimeout(ctx, time.Second)
		err := c.Health(tryCtx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for envd at %s: %w (last error: %v)", c.base, ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}

// Init sends POST /init. When a token is already installed, proving it in the header
// lets envd accept a new one (snapshot clones get their own).
func (c *Client) Init(ctx context.Context, body envdapi.InitRequest) (err error) {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	ctx, done := c.unary(ctx, "init")
	defer func() { err = done(err) }()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/init", bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if tok := c.currentToken(); tok != "" {
		req.Header.Set("X-Access-Token", tok)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("envd init: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("envd init: status %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	if body.AccessToken != nil {
		c.SetToken(*body.AccessToken)
	}
	return nil
}

// Metrics asks envd for the guest's own view of its CPU, memory and disk (GET
// /metrics, which needs the access token). Bound it with ctx: a guest too busy to
// answer at once is better skipped than waited for.
func (c *Client) Metrics(ctx context.Context) (_ *envdapi.Metrics, err error) {
	ctx, done := c.unary(ctx, "metrics")
	defer func() { err = done(err) }()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	if tok := c.currentToken(); tok != "" {
		req.Header.Set("X-Access-Token", tok)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("envd metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("envd metrics: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("envd metrics: status %d: %s", resp.StatusCode, bytes.TrimSpace(body[:min(len(body), 512)]))
	}
	var m envdapi.Metrics
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("envd metrics: %w", err)
	}
	return &m, nil
}

// Result is how a command ended.
type Result struct {
	PID      uint32
	ExitCode int
	Status   string // "exit status 0", "signal: killed", …
}

// Command is what to run in the guest.
type Command struct {
	Cmd  string
	Args []string
	Env  map[string]string
	Cwd  string
	User string // "" = envd's default user
	// Stdin keeps the command's stdin open for Input (closed at once otherwise).
	Stdin bool
	// PTY runs the command in a pseudo-terminal; its output is then stdout.
	PTY *PTYSize
}

// PTYSize is a terminal's size in characters.
type PTYSize struct{ Cols, Rows uint32 }

// Exec runs a command to its end, copying its output as it arrives. A non-zero exit
// is a Result, not an error; errors are about running it at all.
func (c *Client) Exec(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) (*Result, error) {
	return c.Run(ctx, Command{Cmd: cmd, Args: args}, nil, stdout, stderr)
}

// Run is Exec with the whole command spec and a callback for the start event. A ctx
// deadline becomes the command's lifetime: envd kills it when the deadline passes, and
// Run then fails with a connect deadline_exceeded error.
func (c *Client) Run(ctx context.Context, command Command, onStart func(pid uint32), stdout, stderr io.Writer) (*Result, error) {
	cfg := &pb.ProcessConfig{Cmd: command.Cmd, Args: command.Args, Envs: command.Env}
	if command.Cwd != "" {
		cfg.Cwd = &command.Cwd
	}
	start := &pb.StartRequest{Process: cfg, Stdin: &command.Stdin}
	if command.PTY != nil {
		start.Pty = &pb.PTY{Size: &pb.PTY_Size{Cols: command.PTY.Cols, Rows: command.PTY.Rows}}
	}
	req := connect.NewRequest(start)
	if command.User != "" {
		req.Header().Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(command.User+":")))
	}
	req.Header().Set("Keepalive-Ping-Interval", strconv.Itoa(int(keepaliveInterval/time.Second)))
	// The start event is awaited for the unary limit, every later silence (envd
	// sends keepalives) for the stream-idle limit; the time our own sinks take does
	// not count.
	ctx, dog := newWatchdog(ctx, &TimeoutError{Op: "start " + command.Cmd, After: c.lim.unary})
	defer dog.stop()
	streamIdle := &TimeoutError{Op: "run " + command.Cmd, After: c.lim.streamIdle, Idle: true}
	stream, err := c.procs.Start(ctx, req)
	if err != nil {
		if te := ours(ctx); te != nil {
			return nil, fmt.Errorf("start %s: %w", command.Cmd, te)
		}
		return nil, fmt.Errorf("start %s: %w", command.Cmd, err)
	}
	defer stream.Close()
	res := &Result{}
	for stream.Receive() {
		dog.disarm()
		switch ev := stream.Msg().GetEvent().GetEvent().(type) {
		case *pb.ProcessEvent_Start:
			res.PID = ev.Start.GetPid()
			if onStart != nil {
				onStart(res.PID)
			}
		case *pb.ProcessEvent_Data:
			b := ev.Data.GetStdout()
			if b == nil {
				b = ev.Data.GetPty()
			}
			if b != nil && stdout != nil {
				if _, err := stdout.Write(b); err != nil {
					return nil, fmt.Errorf("run %s: write stdout: %w", command.Cmd, err)
				}
			}
			if b := ev.Data.GetStderr(); b != nil && stderr != nil {
				if _, err := stderr.Write(b); err != nil {
					return nil, fmt.Errorf("run %s: write stderr: %w", command.Cmd, err)
				}
			}
		case *pb.ProcessEvent_End:
			res.ExitCode = int(ev.End.GetExitCode())
			res.Status = ev.End.GetStatus()
			return res, nil
		}
		dog.rearm(streamIdle)
	}
	if err := stream.Err(); err != nil {
		if te := ours(ctx); te != nil {
			// Not the Connect deadline_exceeded the stream reports: that would read
			// as the command's own timeout, and this is a dead guest.
			return nil, fmt.Errorf("run %s: %w", command.Cmd, te)
		}
		return nil, fmt.Errorf("run %s: %w", command.Cmd, err)
	}
	return nil, errors.New("run " + command.Cmd + ": stream ended without an end event")
}

// Input writes data to a running command's stdin (or its pty).
func (c *Client) Input(ctx context.Context, pid uint32, data []byte, pty bool) error {
	in := &pb.ProcessInput{Input: &pb.ProcessInput_Stdin{Stdin: data}}
	if pty {
		in.Input = &pb.ProcessInput_Pty{Pty: data}
	}
	_, err := c.procs.SendInput(ctx, connect.NewRequest(&pb.SendInputRequest{Process: pidSelector(pid), Input: in}))
	if err != nil {
		return fmt.Errorf("input to %d: %w", pid, err)
	}
	return nil
}

// CloseStdin signals end of input to a command started with Stdin.
func (c *Client) CloseStdin(ctx context.Context, pid uint32) error {
	if _, err := c.procs.CloseStdin(ctx, connect.NewRequest(&pb.CloseStdinRequest{Process: pidSelector(pid)})); err != nil {
		return fmt.Errorf("close stdin of %d: %w", pid, err)
	}
	return nil
}

// Resize changes the size of a command's pty.
func (c *Client) Resize(ctx context.Context, pid uint32, size PTYSize) error {
	req := &pb.UpdateRequest{Process: pidSelector(pid), Pty: &pb.PTY{Size: &pb.PTY_Size{Cols: size.Cols, Rows: size.Rows}}}
	if _, err := c.procs.Update(ctx, connect.NewRequest(req)); err != nil {
		return fmt.Errorf("resize pty of %d: %w", pid, err)
	}
	return nil
}

// Kill sends SIGKILL to a command.
func (c *Client) Kill(ctx context.Context, pid uint32) error {
	req := &pb.SendSignalRequest{Process: pidSelector(pid), Signal: pb.Signal_SIGNAL_SIGKILL}
	if _, err := c.procs.SendSignal(ctx, connect.NewRequest(req)); err != nil {
		return fmt.Errorf("kill %d: %w", pid, err)
	}
	return nil
}

func pidSelector(pid uint32) *pb.ProcessSelector {
	return &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: pid}}
}

// tokenInterceptor adds X-Access-Token to every RPC once a token is known.
type tokenInterceptor struct{ c *Client }

func (t tokenInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if tok := t.c.currentToken(); tok != "" {
			req.Header().Set("X-Access-Token", tok)
		}
		return next(ctx, req)
	}
}

func (t tokenInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		if tok := t.c.currentToken(); tok != "" {
			conn.RequestHeader().Set("X-Access-Token", tok)
		}
		return conn
	}
}

func (t tokenInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// WriteFile uploads r to path in the guest (octet-stream, as the SDKs stream), as user
// ("" = envd's default user).
// It has no total time limit: it ends when the guest takes no byte (or, after the
// last, gives no answer) for the idle limit; the time r takes does not count.
func (c *Client) WriteFile(ctx context.Context, path, user string, r io.Reader) error {
	ctx, dog := newWatchdog(ctx, &TimeoutError{Op: "write " + path, After: c.lim.idle, Idle: true})
	defer dog.stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.filesURL(path, user), &uploadBody{r: r, w: dog})
	if err != nil {
		return err
	}
	if sized, ok := r.(interface{ Len() int }); ok {
		// A body of known size keeps its Content-Length (envd checks the space for it
		// before writing), as http.NewRequest gives it to r without the wrapper.
		req.ContentLength = int64(sized.Len())
		if req.ContentLength == 0 {
			req.Body = http.NoBody
		}
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.doFiles(req)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, explain(ctx, err))
	}
	resp.Body.Close()
	return nil
}

// ReadFile opens path in the guest for reading; the caller closes the reader. Like
// WriteFile it has no total time limit: a read fails when the guest sends no byte for
// the idle limit; the time the caller takes between reads does not count.
func (c *Client) ReadFile(ctx context.Context, path, user string) (io.ReadCloser, error) {
	ctx, dog := newWatchdog(ctx, &TimeoutError{Op: "read " + path, After: c.lim.idle, Idle: true})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.filesURL(path, user), nil)
	if err != nil {
		dog.stop()
		return nil, err
	}
	resp, err := c.doFiles(req)
	if err != nil {
		dog.stop()
		return nil, fmt.Errorf("read %s: %w", path, explain(ctx, err))
	}
	dog.disarm()
	return &downloadBody{rc: resp.Body, w: dog, ctx: ctx}, nil
}

func (c *Client) filesURL(path, user string) string {
	q := url.Values{"path": {path}}
	if user != "" {
		q.Set("username", user)
	}
	return c.base + "/files?" + q.Encode()
}

// FileError is a non-2xx answer of /files, with envd's status and message.
type FileError struct {
	Status  int
	Message string
}

func (e *FileError) Error() string { return fmt.Sprintf("envd /files: %d %s", e.Status, e.Message) }

func (c *Client) doFiles(req *http.Request) (*http.Response, error) {
	if tok := c.currentToken(); tok != "" {
		req.Header.Set("X-Access-Token", tok)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var body struct {
			Message string `json:"message"`
		}
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if json.Unmarshal(raw, &body) != nil || body.Message == "" {
			body.Message = string(bytes.TrimSpace(raw))
		}
		return nil, &FileError{Status: resp.StatusCode, Message: body.Message}
	}
	return resp, nil
}
