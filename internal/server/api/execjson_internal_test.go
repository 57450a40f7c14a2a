package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math/rand/v2"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/wrennhq/wrenn/internal/server/sandboxes"
)

// writeExecResult's hand-written JSON is valid, carries every field of ExecResult,
// and decodes to exactly the output: every byte value, quotes, backslashes, multi-byte
// UTF-8, and random binary.
func TestWriteExecResultRoundTrips(t *testing.T) {
	var all []byte
	for c := range 0x80 {
		all = append(all, byte(c))
	}
	random := make([]byte, 100_000)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(r.UintN(256))
	}
	for _, tc := range []struct {
		name           string
		stdout, stderr []byte
		encoding       string
	}{
		{"empty", nil, nil, "utf-8"},
		{"text", []byte("h\u00e9llo \"q\" \\ \u2028 <&>\n\ttab\r\n"), []byte("warn\n"), "utf-8"},
		{"a few controls", []byte("\x1b[1mbold\x1b[0m and more plain text\x00"), nil, "utf-8"},
		{"every ASCII byte", all, nil, "base64"},
		{"invalid UTF-8", []byte("ok"), []byte{0xff}, "base64"},
		{"random", random, random[:7], "base64"},
	} {
		rec := httptest.NewRecorder()
		res := &sandboxes.ExecResult{Stdout: tc.stdout, Stderr: tc.stderr, ExitCode: 3, DurationMS: 9, TimedOut: true,
			StdoutTruncated: true, StdoutTotalBytes: int64(len(tc.stdout)) + 10, StderrTotalBytes: int64(len(tc.stderr))}
		if err := writeExecResult(rec, res); err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
		dec.DisallowUnknownFields()
		var got struct {
			Stdout, Stderr string
			execMeta
		}
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("%s: %v in %.300q", tc.name, err, rec.Body.String())
		}
		stdout, stderr := []byte(got.Stdout), []byte(got.Stderr)
		if got.Encoding == "base64" {
			var err1, err2 error
			stdout, err1 = base64.StdEncoding.DecodeString(got.Stdout)
			stderr, err2 = base64.StdEncoding.DecodeString(got.Stderr)
			if err1 != nil || err2 != nil {
				t.Fatalf("%s: %v %v", tc.name, err1, err2)
			}
		}
		if got.Encoding != tc.encoding || !bytes.Equal(stdout, tc.stdout) || !bytes.Equal(stderr, tc.stderr) {
			t.Errorf("%s: encoding %s, stdout %.100q, stderr %.100q", tc.name, got.Encoding, stdout, stderr)
		}
		want := execMeta{ExitCode: 3, DurationMS: 9, TimedOut: true, Encoding: tc.encoding, StdoutTruncated: true,
			StdoutTotalBytes: int64(len(tc.stdout)) + 10, StderrTotalBytes: int64(len(tc.stderr))}
		if got.execMeta != want {
			t.Errorf("%s: fields %+v, want %+v", tc.name, got.execMeta, want)
		}
		if ct := rec.Header().Get("Content-Type"); rec.Code != 200 || ct != "application/json" || !strings.HasSuffix(rec.Body.String(), "}\n") {
			t.Errorf("%s: %d %q", tc.name, rec.Code, ct)
		}
	}
}
