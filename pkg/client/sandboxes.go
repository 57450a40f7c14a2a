package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Sandbox is a sandbox as the API shows it.
type Sandbox struct {
	ID                  string `json:"id"`
	Template            string `json:"template"`
	Status              string `json:"status"`
	VCPUs               int    `json:"vcpus"`
	MemoryMB            int    `json:"memory_mb"`
	TimeoutSec          int    `json:"timeout_sec"`
	AllowInternetAccess bool   `json:"allow_internet_access"`
	AllowPublicTraffic  bool   `json:"allow_public_traffic"`
	// TrafficAccessToken opens a private sandbox's ports (AllowPublicTraffic false)
	// through the port proxy; only the create answer has it.
	TrafficAccessToken string            `json:"traffic_access_token"`
	Metadata           map[string]string `json:"metadata"`
	Error              string            `json:"error"`
	CreatedAt          time.Time         `json:"created_at"`
	StartedAt          *time.Time        `json:"started_at"`
	StoppedAt          *time.Time        `json:"stopped_at"`
	PausedAt           *time.Time        `json:"paused_at"` // while paused
	// EndAt is when the sandbox ends whatever it does (sandboxes made through E2B's
	// API), stopped or, when OnTimeout is "pause", paused; nil: only the idle timeout.
	EndAt     *time.Time `json:"end_at"`
	OnTimeout string     `json:"on_timeout"`
	DiskMB    int        `json:"disk_mb"`
	// Limits is what the host's kernel holds the sandbox's VMM to, as reported when
	// it last started or resumed; nil before it first ran.
	Limits *SandboxLimits `json:"limits,omitempty"`
}

// SandboxLimits are a sandbox VMM's cgroup limits, jail and disk rate (0 = none,
// not jailed).
type SandboxLimits struct {
	CPUs        float64 `json:"cpus"`
	MemoryBytes int64   `json:"memory_bytes"`
	Pids        int64   `json:"pids"`
	JailUID     uint32  `json:"jail_uid"`
	// The guest's disk I/O, reads and writes together.
	DiskBytesPerSec int64 `json:"disk_bytes_per_sec"`
	DiskOpsPerSec   int64 `json:"disk_ops_per_sec"`
}

// CreateSandboxRequest is what a new sandbox should be; zero values take the server's
// defaults (template base, 1 vCPU, 512 MiB, no idle timeout, public ports).
type CreateSandboxRequest struct {
	Template            string `json:"template,omitempty"`
	VCPUs               int    `json:"vcpus,omitempty"`
	MemoryMB            int    `json:"memory_mb,omitempty"`
	TimeoutSec          int    `json:"timeout_sec,omitempty"`
	AllowInternetAccess *bool  `json:"allow_internet_access,omitempty"`
	// AllowPublicTraffic false makes the sandbox's ports need its traffic token
	// (Sandbox.TrafficAccessToken, in the create answer only) or a team API key.
	AllowPublicTraffic *bool             `json:"allow_public_traffic,omitempty"`
	EnvVars            map[string]string `json:"env_vars,omitempty"`
	Metadata           map[string]string `json:"metadata,omitempty"`
	// NoWait returns the sandbox as soon as it is placed on a host, status
	// "starting", while the host boots it ("wait": false); WaitSandbox waits for the
	// boot, FollowLogs shows it.
	NoWait bool `json:"-"`
}

// MarshalJSON sends NoWait as "wait": false, and no "wait" otherwise (the server's
// default is to wait).
func (r CreateSandboxRequest) MarshalJSON() ([]byte, error) {
	type fields CreateSandboxRequest // without this method
	out := struct {
		fields
		Wait *bool `json:"wait,omitempty"`
	}{fields: fields(r)}
	if r.NoWait {
		out.Wait = new(bool)
	}
	return json.Marshal(out)
}

// CreateSandbox boots a sandbox and returns it running; with req.NoWait, it returns
// it starting as soon as it is placed.
func (c *Client) CreateSandbox(ctx context.Context, req CreateSandboxRequest) (*Sandbox, error) {
	var sb Sandbox
	err := c.do(ctx, http.MethodPost, "/v1/sandboxes", req, &sb)
	return &sb, err
}

// ListSandboxes lists the team's sandboxes that are not stopped, newest first; with
// states, those in the given states ("all" for every one).
func (c *Client) ListSandboxes(ctx context.Context, states ...string) ([]Sandbox, error) {
	var out struct {
		Sandboxes []Sandbox `json:"sandboxes"`
	}
	path := "/v1/sandboxes"
	if len(states) > 0 {
		path += "?state=" + url.QueryEscape(strings.Join(states, ","))
	}
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out.Sandboxes, err
}

// GetSandbox returns one sandbox.
func (c *Client) GetSandbox(ctx context.Context, id string) (*Sandbox, error) {
	var sb Sandbox
	err := c.do(ctx, http.MethodGet, "/v1/sandboxes/"+url.PathEscape(id), nil, &sb)
	return &sb, err
}

// DestroySandbox stops a sandbox and frees its resources.
func (c *Client) DestroySandbox(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/sandboxes/"+url.PathEscape(id), nil, nil)
}

// Pause freezes a running sandbox into a snapshot on its host and returns it paused;
// its files and processes come back with Resume. A sandbox that is not running is a
// 409 *Error; a host that cannot snapshot, 501.
func (c *Client) Pause(ctx context.Context, id string) (*Sandbox, error) {
	var sb Sandbox
	err := c.do(ctx, http.MethodPost, "/v1/sandboxes/"+url.PathEscape(id)+"/pause", nil, &sb)
	return &sb, err
}

// Resume restores a paused sandbox and returns it running; timeoutSec > 0 replaces its
// idle timeout (0 keeps it). A resume that fails leaves the sandbox paused.
func (c *Client) Resume(ctx context.Context, id string, timeoutSec int) (*Sandbox, error) {
	var in any
	if timeoutSec > 0 {
		in = map[string]int{"timeout_sec": timeoutSec}
	}
	var sb Sandbox
	err := c.do(ctx, http.MethodPost, "/v1/sandboxes/"+url.PathEscape(id)+"/resume", in, &sb)
	return &sb, err
}

// Ping keeps an idle sandbox from timing out (being paused).
func (c *Client) Ping(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, "/v1/sandboxes/"+url.PathEscape(id)+"/ping", nil, nil)
}

// ExecResult is a finished command, output decoded. Stdout and Stderr are at most
// the first Command.MaxOutputBytes of each (1 MiB by default); StdoutTruncated and
// StderrTruncated say that the command wrote more, and the totals how much.
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

// Truncated reports whether any output was dropped at the cap.
func (r *ExecResult) Truncated() bool { return r.StdoutTruncated || r.StderrTruncated }

// Exec runs a command to its end (timeout 0 = the server's default).
func (c *Client) Exec(ctx context.Context, id, cmd string, args []string, timeout time.Duration) (*ExecResult, error) {
	return c.Run(ctx, id, Command{Cmd: cmd, Args: args, Timeout: timeout})
}

// Run runs a command with its environment and working directory to its end.
func (c *Client) Run(ctx context.Context, id string, cmd Command) (*ExecResult, error) {
	if cmd.Stdin || cmd.PTY != nil {
		return nil, errors.New("wrenn: stdin and pty need ExecStream")
	}
	var out struct {
		Stdout, Stderr, Encoding string
		ExitCode                 int   `json:"exit_code"`
		DurationMS               int64 `json:"duration_ms"`
		TimedOut                 bool  `json:"timed_out"`
		StdoutTruncated          bool  `json:"stdout_truncated"`
		StderrTruncated          bool  `json:"stderr_truncated"`
		StdoutTotalBytes         int64 `json:"stdout_total_bytes"`
		StderrTotalBytes         int64 `json:"stderr_total_bytes"`
	}
	body := cmd.body()
	if cmd.MaxOutputBytes != 0 {
		body["max_output_bytes"] = cmd.MaxOutputBytes
	}
	if err := c.do(ctx, http.MethodPost, "/v1/sandboxes/"+url.PathEscape(id)+"/exec", body, &out); err != nil {
		return nil, err
	}
	res := &ExecResult{ExitCode: out.ExitCode, DurationMS: out.DurationMS, TimedOut: out.TimedOut,
		StdoutTruncated: out.StdoutTruncated, StderrTruncated: out.StderrTruncated,
		StdoutTotalBytes: out.StdoutTotalBytes, StderrTotalBytes: out.StderrTotalBytes}
	switch out.Encoding {
	case "base64":
		var err error
		if res.Stdout, err = base64.StdEncoding.DecodeString(out.Stdout); err != nil {
			return nil, fmt.Errorf("wrenn: decode stdout: %w", err)
		}
		if res.Stderr, err = base64.StdEncoding.DecodeString(out.Stderr); err != nil {
			return nil, fmt.Errorf("wrenn: decode stderr: %w", err)
		}
	default:
		res.Stdout, res.Stderr = []byte(out.Stdout), []byte(out.Stderr)
	}
	return res, nil
}

// WriteFile streams r to path in the sandbox (an octet-stream upload, never buffered).
func (c *Client) WriteFile(ctx context.Context, id, path string, r io.Reader) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		c.base+"/v1/sandboxes/"+url.PathEscape(id)+"/files/write?path="+url.QueryEscape(path), r)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// ReadFile opens path in the sandbox; the caller closes the reader.
func (c *Client) ReadFile(ctx context.Context, id, path string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		c.base+"/v1/sandboxes/"+url.PathEscape(id)+"/files/read?path="+url.QueryEscape(path), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}
