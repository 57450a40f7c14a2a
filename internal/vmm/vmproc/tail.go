package vmproc

import (
	"bytes"
	"io"
	"os"
	"strings"
)

// ReadTail returns at most max bytes from the end of a file, starting at a line
// boundary when it can, for error messages. A missing file reads as "".
func ReadTail(path string, max int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := fi.Size() - max
	if off < 0 {
		off = 0
	}
	b, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return ""
	}
	if off > 0 {
		if i := bytes.IndexByte(b, '\n'); i >= 0 && i < len(b)-1 {
			b = b[i+1:]
		}
	}
	return strings.TrimSpace(strings.ToValidUTF8(string(b), "?"))
}

// consoleTailBytes bounds how much of a console log ConsoleTail reads: a guest can
// write gigabytes to its serial console.
const consoleTailBytes = 256 << 10

// ConsoleTail returns the last n lines of a VM's console log, for error messages. A
// missing log says so instead of reading as empty.
func ConsoleTail(path string, n int) string {
	if _, err := os.Stat(path); err != nil {
		return "(no console log: " + err.Error() + ")"
	}
	s := ReadTail(path, consoleTailBytes)
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
