package sandboxes

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/internal/lifecycle"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// MaxConsoleRead is the most one read of a console log returns (the agent's own cap).
const MaxConsoleRead = 1 << 20

// ConsoleLog is a piece of a sandbox's serial console log: what its kernel and init
// printed, the first thing to read when a boot fails.
type ConsoleLog struct {
	// Log is the text, valid UTF-8: bytes that are not are each run replaced by
	// U+FFFD, and a character cut by the end of the piece is left for the next read.
	// So its length in bytes need not be NextOffset - Offset: continue from NextOffset.
	Log string `json:"log"`
	// Offset is the byte offset in the log where Log starts: the request's, or what a
	// negative one (a tail) resolved to, or 0 when the request's was past the end (the
	// log was started again, as when a failed warm restore fell back to a cold boot).
	Offset int64 `json:"offset"`
	// NextOffset is where the next read continues.
	NextOffset int64 `json:"next_offset"`
	// Size is the log's size in bytes when it was read; NextOffset < Size: there is
	// more to read now.
	Size int64 `json:"size"`
	// Status is the sandbox's, read before the log: once it is final (stopped, error)
	// and a read returns nothing more, the log has ended.
	Status lifecycle.State `json:"status"`
}

// SandboxConsoleLog reads at most limit bytes (0: MaxConsoleRead) of the console log
// of a sandbox of the principal's team from offset (negative: that many bytes before
// the end). Its host keeps the log as long as it has the sandbox: while it starts,
// runs or is paused, and after its VM died (error); a sandbox starting but not yet on
// its host has an empty log. A stopped sandbox's log went with it, as did that of a
// failed create (its error carries the console's last lines): those are conflicts.
func (s *Service) SandboxConsoleLog(ctx context.Context, p *core.Principal, id string, offset, limit int64) (*ConsoleLog, error) {
	if limit < 0 || limit > MaxConsoleRead {
		return nil, fmt.Errorf("%w: limit %d: want 1..%d, or 0 for the most", core.ErrInvalid, limit, MaxConsoleRead)
	}
	row, err := s.sandboxRow(ctx, p, id)
	if err != nil {
		return nil, err
	}
	st := stateOf(row)
	empty := &ConsoleLog{Offset: max(offset, 0), NextOffset: max(offset, 0), Status: st}
	switch st {
	case lifecycle.Stopped:
		return nil, fmt.Errorf("%w: sandbox %s is stopped: its console log was removed with it", core.ErrConflict, id)
	case lifecycle.Missing:
		return nil, fmt.Errorf("%w: the host of sandbox %s does not answer: its console log cannot be read now", core.ErrUnavailable, id)
	case lifecycle.Pending:
		return empty, nil // not on a host yet
	}
	agent, err := s.agentOf(ctx, row)
	if err != nil {
		return nil, err
	}
	resp, err := agent.GetConsoleLog(ctx, connect.NewRequest(&pb.GetConsoleLogRequest{SandboxId: id, Offset: offset, Limit: limit}))
	switch code := connect.CodeOf(err); {
	case err == nil:
	case code == connect.CodeNotFound && st == lifecycle.Starting:
		return empty, nil // its create has not reached the host yet, or is being rolled back
	case code == connect.CodeNotFound && st == lifecycle.Error:
		return nil, fmt.Errorf("%w: sandbox %s failed and its host no longer has its console log (its error says why)", core.ErrConflict, id)
	case code == connect.CodeNotFound:
		return nil, fmt.Errorf("%w: the host of sandbox %s no longer has it, nor its console log", core.ErrConflict, id)
	default:
		return nil, fmt.Errorf("console log of sandbox %s: %w", id, agentError(err))
	}
	m := resp.Msg
	text, used := consoleText(m.GetData())
	return &ConsoleLog{Log: text, Offset: m.GetOffset(), NextOffset: m.GetOffset() + int64(used), Size: m.GetSize(), Status: st}, nil
}

// consoleText is b as valid UTF-8 text and how many of b's bytes it stands for: a
// character cut short at b's end is left out (the next read, from there, has it
// whole) unless it is all of b, so a read always moves on; other invalid bytes become
// U+FFFD.
func consoleText(b []byte) (string, int) {
	n := len(b)
	for i := n - 1; i >= 0 && i >= n-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) && i > 0 {
				n = i
			}
			break
		}
	}
	return strings.ToValidUTF8(string(b[:n]), "\uFFFD"), n
}
