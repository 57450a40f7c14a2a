package api

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"unicode/utf8"

	"github.com/wrennhq/wrenn/internal/server/sandboxes"
)

// runRequest is POST …/exec's body: the command, and how much of each of its output
// streams to keep (the exec stream keeps nothing, so only this route takes it).
type runRequest struct {
	execRequest
	MaxOutputBytes int64 `json:"max_output_bytes"`
}

// execMeta is the ExecResult object but for stdout and stderr, which writeExecResult
// writes itself.
type execMeta struct {
	ExitCode         int    `json:"exit_code"`
	DurationMS       int64  `json:"duration_ms"`
	TimedOut         bool   `json:"timed_out"`
	Encoding         string `json:"encoding"`
	StdoutTruncated  bool   `json:"stdout_truncated"`
	StderrTruncated  bool   `json:"stderr_truncated"`
	StdoutTotalBytes int64  `json:"stdout_total_bytes"`
	StderrTotalBytes int64  `json:"stderr_total_bytes"`
}

// writeExecResult answers 200 with the ExecResult JSON, encoding stdout and stderr as
// it writes them: besides the agent's answer (res) the server then holds only the
// write buffer, never a string copy of the output or the whole JSON body, which for
// NUL-heavy output used to be six times the output (issue 12, finding 3).
func writeExecResult(w http.ResponseWriter, res *sandboxes.ExecResult) error {
	encoding, writeOutput := "utf-8", writeText
	if !isText(res.Stdout) || !isText(res.Stderr) {
		encoding, writeOutput = "base64", writeBase64
	}
	meta, err := json.Marshal(execMeta{
		ExitCode: res.ExitCode, DurationMS: res.DurationMS, TimedOut: res.TimedOut, Encoding: encoding,
		StdoutTruncated: res.StdoutTruncated, StderrTruncated: res.StderrTruncated,
		StdoutTotalBytes: res.StdoutTotalBytes, StderrTotalBytes: res.StderrTotalBytes,
	})
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	_, _ = bw.WriteString(`{"stdout":`)
	writeOutput(bw, res.Stdout)
	_, _ = bw.WriteString(`,"stderr":`)
	writeOutput(bw, res.Stderr)
	_ = bw.WriteByte(',')
	_, _ = bw.Write(meta[1:]) // the rest of the object, after its '{'
	_ = bw.WriteByte('\n')
	return bw.Flush()
}

// maxControlShare: output goes as text only when at most one byte in maxControlShare
// is a control character JSON escapes in six bytes (\u00XX: all below 0x20 but tab,
// newline and carriage return). Terminal colours and the odd NUL stay readable text;
// binary or NUL-heavy output goes as base64, 4/3 of its size instead of up to 6×.
const maxControlShare = 8

// isText reports whether b may go as a JSON string: valid UTF-8 with few controls.
func isText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	controls := 0
	for _, c := range b {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
			controls++
		}
	}
	return controls*maxControlShare <= len(b)
}

const hexDigits = "0123456789abcdef"

// writeText writes valid UTF-8 b as a JSON string, escaping only what JSON requires
// (quote, backslash, controls); runs of other bytes are copied as they are.
func writeText(w *bufio.Writer, b []byte) {
	_ = w.WriteByte('"')
	start := 0
	for i, c := range b {
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		_, _ = w.Write(b[start:i])
		start = i + 1
		switch c {
		case '"', '\\':
			_, _ = w.Write([]byte{'\\', c})
		case '\n':
			_, _ = w.WriteString(`\n`)
		case '\r':
			_, _ = w.WriteString(`\r`)
		case '\t':
			_, _ = w.WriteString(`\t`)
		default:
			_, _ = w.Write([]byte{'\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf]})
		}
	}
	_, _ = w.Write(b[start:])
	_ = w.WriteByte('"')
}

// writeBase64 writes b as a JSON string of its standard base64, encoded in chunks.
func writeBase64(w *bufio.Writer, b []byte) {
	_ = w.WriteByte('"')
	enc := base64.NewEncoder(base64.StdEncoding, w)
	_, _ = enc.Write(b)
	_ = enc.Close()
	_ = w.WriteByte('"')
}
