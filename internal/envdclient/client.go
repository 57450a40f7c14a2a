// Package envdclient is the host side's client of envd, the daemon inside every guest:
// wait for it to come up, initialise it, and run commands through its process service.
package envdclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/envd/process"
	"github.com/wrennhq/wrenn/gen/envd/process/processconnect"
	"github.com/wrennhq/wrenn/internal/envd/envdapi"
	"github.com/wrennhq/wrenn/internal/envd/jsoncodec"
)

// Client talks to one envd.
type Client struct {
	base  string
	http  *http.Client
	token atomic.Pointer[string]
	procs processconnect.ProcessClient
}

// New returns a client for envd at baseURL (http://host:49983). token is sent as
// X-Access-Token once set; "" sends none.
func New(baseURL, token string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{DisableCompression: true}}
	}
	c := &Client{base: baseURL, http: hc}
	c.SetToken(token)
	opts := append(jsoncodec.ClientOptions(), connect.WithInterceptors(tokenInterceptor{c}))
	c.procs = processconnect.NewProcessClient(hc, baseURL, opts...)
	return c
}

// SetToken changes the token sent with requests (after an /init installed it).
func (c *Client) SetToken(token string) { c.token.Store(&token) }

func (c *Client) currentToken() string { return *c.token.Load() }

// Health reports whether envd answers /health.
func (c *Client) Health(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
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
func (c *Client) Init(ctx context.Context, body envdapi.InitRequest) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
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

// Result is how a command ended.
type Result struct {
	PID      uint32
	ExitCode int
	Status   string // "exit status 0", "signal: killed", …
}

// Exec runs a command to its end, copying its output as it arrives. A non-zero exit
// is a Result, not an error; errors are about running it at all.
func (c *Client) Exec(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) (*Result, error) {
	stream, err := c.procs.Start(ctx, connect.NewRequest(&pb.StartRequest{
		Process: &pb.ProcessConfig{Cmd: cmd, Args: args},
		Stdin:   new(bool),
	}))
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd, err)
	}
	defer stream.Close()
	res := &Result{}
	for stream.Receive() {
		switch ev := stream.Msg().GetEvent().GetEvent().(type) {
		case *pb.ProcessEvent_Start:
			res.PID = ev.Start.GetPid()
		case *pb.ProcessEvent_Data:
			if b := ev.Data.GetStdout(); b != nil && stdout != nil {
				_, _ = stdout.Write(b)
			}
			if b := ev.Data.GetStderr(); b != nil && stderr != nil {
				_, _ = stderr.Write(b)
			}
		case *pb.ProcessEvent_End:
			res.ExitCode = int(ev.End.GetExitCode())
			res.Status = ev.End.GetStatus()
			return res, nil
		}
	}
	if err := stream.Err(); err != nil {
		return nil, fmt.Errorf("run %s: %w", cmd, err)
	}
	return nil, errors.New("run " + cmd + ": stream ended without an end event")
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
