package agent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/wrennhq/wrenn/internal/ident"
	"github.com/wrennhq/wrenn/internal/vmm"
)

// MaxConsoleRead bounds one read of a console log: a guest can write gigabytes to its
// serial console, and a read is one message.
const MaxConsoleRead = 1 << 20

// ConsoleChunk is a piece of a sandbox's console log.
type ConsoleChunk struct {
	Data []byte
	// Offset is where Data starts in the log; Next = Offset + len(Data).
	Offset, Next int64
	// Size is the log's size when it was read.
	Size int64
}

// ConsoleLog reads at most limit bytes (0 or more than MaxConsoleRead: that) of a
// sandbox's serial console log from offset. A negative offset counts back from the
// end; one past the end means the log was started again (a failed warm restore falls
// back to a cold boot, which truncates it), so reading starts at 0 and the chunk's
// Offset says so.
//
// It answers in every state the sandbox is in on this host and takes no transition
// lock: the log matters most while a create is still booting the VM (then holding the
// lock for minutes) and after the VM died. A sandbox whose VM has not started yet has
// an empty log.
func (m *Manager) ConsoleLog(id string, offset, limit int64) (*ConsoleChunk, error) {
	if !ident.ValidSandboxID(id) {
		return nil, fmt.Errorf("%w: sandbox %q", ErrNotFound, id)
	}
	sb, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	if limit <= 0 || limit > MaxConsoleRead {
		limit = MaxConsoleRead
	}
	f, err := os.Open(sb.consolePath())
	if errors.Is(err, fs.ErrNotExist) {
		return &ConsoleChunk{Data: []byte{}}, nil // no VM yet (or its directory is going with a destroy)
	}
	if err != nil {
		return nil, fmt.Errorf("console log of %s: %w", id, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("console log of %s: %w", id, err)
	}
	size := fi.Size()
	start := offset
	switch {
	case start < 0:
		start = max(0, size+start)
	case start > size:
		start = 0
	}
	n := min(limit, size-start)
	data := make([]byte, n)
	read, err := f.ReadAt(data, start)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read console log of %s: %w", id, err)
	}
	data = data[:read]
	return &ConsoleChunk{Data: data, Offset: start, Next: start + int64(read), Size: size}, nil
}

// consolePath is where the sandbox's VM writes its console: the running machine says
// (a test driver writes it when asked), otherwise the name every driver uses in the
// sandbox's directory, which outlives the VM (paused, or died).
func (sb *sandbox) consolePath() string {
	sb.mu.Lock()
	machine := sb.machine
	sb.mu.Unlock()
	if machine != nil {
		return machine.ConsoleLog()
	}
	return filepath.Join(sb.dir, vmm.ConsoleLogName)
}
