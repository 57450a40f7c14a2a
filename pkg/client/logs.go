package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"
)

// PollInterval is how often FollowLogs and WaitSandbox ask the server again.
const PollInterval = 500 * time.Millisecond

// ErrSandboxFailed is what WaitSandbox returns, wrapped with the sandbox's own
// message, when the sandbox ends in status "error" instead of running.
var ErrSandboxFailed = errors.New("sandbox failed")

// SandboxLog is a piece of a sandbox's serial console log: its kernel's and init's
// output, what explains a failed boot.
type SandboxLog struct {
	// Log is the text, valid UTF-8 (bytes the guest wrote that are not are replaced
	// by U+FFFD). Its length need not be NextOffset - Offset: continue from NextOffset.
	Log string `json:"log"`
	// Offset is where Log starts in the log, in bytes: the offset asked for, what a
	// negative one resolved to, or 0 when the one asked for was past the end (the log
	// was started again).
	Offset int64 `json:"offset"`
	// NextOffset is the offset to ask for next.
	NextOffset int64 `json:"next_offset"`
	// Size is the log's size in bytes when read: NextOffset < Size, more is there.
	Size int64 `json:"size"`
	// Status is the sandbox's status, read before the log.
	Status string `json:"status"`
}

// Ended reports whether a sandbox status is final: "stopped" or "error".
func Ended(status string) bool { return status == "stopped" || status == "error" }

// SandboxLogs reads a sandbox's console log from offset (a negative one counts back
// from the end: -4096 is the last 4 KiB), at most 1 MiB. The log is there while the
// sandbox starts (empty until its VM has started), runs, is paused, and after its VM
// died; a stopped sandbox's, or a failed create's, is a 409 *Error (IsConflict).
func (c *Client) SandboxLogs(ctx context.Context, id string, offset int64) (*SandboxLog, error) {
	var l SandboxLog
	path := "/v1/sandboxes/" + url.PathEscape(id) + "/logs?offset=" + strconv.FormatInt(offset, 10)
	if err := c.do(ctx, http.MethodGet, path, nil, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// FollowLogs writes a sandbox's console log to w from offset as it grows, asking
// every PollInterval, until the sandbox has ended (stopped or error) and its log is
// written out — then it returns nil; GetSandbox tells how it ended — or until ctx is
// done (ctx's error). A log that went with its sandbox ends the follow as well. Any
// other failure is returned: a sandbox that does not exist (IsNotFound), a host that
// does not answer (503).
func (c *Client) FollowLogs(ctx context.Context, id string, offset int64, w io.Writer) error {
	for {
		l, err := c.SandboxLogs(ctx, id, offset)
		if IsConflict(err) {
			sb, gerr := c.GetSandbox(ctx, id)
			if gerr == nil && Ended(sb.Status) {
				return nil // its host removed the log with it
			}
			return err
		}
		if err != nil {
			return err
		}
		if l.Log != "" {
			if _, err := io.WriteString(w, l.Log); err != nil {
				return fmt.Errorf("write log of sandbox %s: %w", id, err)
			}
		}
		offset = l.NextOffset
		switch {
		case Ended(l.Status) && l.NextOffset >= l.Size:
			return nil
		case l.Size-l.NextOffset >= utf8.UTFMax:
			continue // more than a character still there: read on now
		}
		// Up to date, or only the start of a character the guest is still writing
		// left: the next read, a moment later, has it whole.
		if err := sleep(ctx, PollInterval); err != nil {
			return err
		}
	}
}

// WaitSandbox waits for a sandbox created without waiting (CreateSandboxRequest.
// NoWait) to be booted, asking every PollInterval, and returns it once it is no longer
// starting: running, or another state it moved on to. A create that failed returns
// the sandbox with an error wrapping ErrSandboxFailed and the sandbox's message.
func (c *Client) WaitSandbox(ctx context.Context, id string) (*Sandbox, error) {
	for {
		sb, err := c.GetSandbox(ctx, id)
		if err != nil {
			return nil, err
		}
		switch sb.Status {
		case "starting", "pending":
		case "error":
			return sb, fmt.Errorf("%w: %s: %s", ErrSandboxFailed, id, sb.Error)
		default:
			return sb, nil
		}
		if err := sleep(ctx, PollInterval); err != nil {
			return nil, err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
