package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/server/servertest"
	"github.com/wrennhq/wrenn/pkg/client"
)

// bigOutput prints 64 MiB of NUL bytes on stdout and then on stderr: the command of
// issue 12's finding 3, whose answer was an 805 MB JSON body (NULs escaped as
// \u0000) that took the control plane from 0.6 to 2.65 GB.
const bigOutput = `head -c 67108864 /dev/zero; head -c 67108864 /dev/zero >&2; exit 5`

// maxExecBody bounds the answer to bigOutput: two streams at the default cap of
// 1 MiB, base64 (4/3), and the small fields.
const maxExecBody = 3 << 20

// execBody is the JSON answer of POST …/exec.
type execBody struct {
	Stdout           string `json:"stdout"`
	Stderr           string `json:"stderr"`
	Encoding         string `json:"encoding"`
	ExitCode         int    `json:"exit_code"`
	TimedOut         bool   `json:"timed_out"`
	StdoutTruncated  bool   `json:"stdout_truncated"`
	StderrTruncated  bool   `json:"stderr_truncated"`
	StdoutTotalBytes int64  `json:"stdout_total_bytes"`
	StderrTotalBytes int64  `json:"stderr_total_bytes"`
}

// decoded returns stdout and stderr as bytes, whatever the encoding.
func (b execBody) decoded(t *testing.T) (stdout, stderr []byte) {
	t.Helper()
	if b.Encoding != "base64" {
		return []byte(b.Stdout), []byte(b.Stderr)
	}
	out, err1 := base64.StdEncoding.DecodeString(b.Stdout)
	errOut, err2 := base64.StdEncoding.DecodeString(b.Stderr)
	if err1 != nil || err2 != nil {
		t.Fatalf("base64 output does not decode: %v %v", err1, err2)
	}
	return out, errOut
}

// execCapped runs body through POST …/exec with a client that reads at most limit
// bytes of the answer, so an unbounded answer fails the test instead of the machine.
func execCapped(t *testing.T, env *servertest.Env, token, id, body string, limit int64) (int, execBody) {
	t.Helper()
	req, err := http.NewRequest("POST", env.URL+"/v1/sandboxes/"+id+"/exec", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		t.Fatalf("read the exec answer: %v", err)
	}
	if int64(len(raw)) > limit {
		t.Fatalf("the exec answer is more than %d bytes (Content-Length %d): output is not capped", limit, resp.ContentLength)
	}
	var out execBody
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("exec answer %.200q: %v", raw, err)
	}
	return resp.StatusCode, out
}

// An exec that prints 64 MiB on each stream answers with at most the cap of each,
// base64 (never \u0000 escapes), says what it dropped, and keeps the exit code: the
// command ran to its end, its output read and dropped past the cap.
func TestExecOutputIsCapped(t *testing.T) {
	env := servertest.New(t)
	c, id := newUserSandbox(t, env)
	token := c.header.Get("Authorization")

	body := toJSON(map[string]any{"cmd": "sh", "args": []string{"-c", bigOutput}, "timeout_sec": 300})
	status, out := execCapped(t, env, token, id, body, maxExecBody)
	stdout, stderr := out.decoded(t)
	if status != 200 || out.Encoding != "base64" || out.ExitCode != 5 || out.TimedOut {
		t.Fatalf("64 MiB per stream: %d, encoding %q, exit %d, timed out %v", status, out.Encoding, out.ExitCode, out.TimedOut)
	}
	zeros := make([]byte, 1<<20)
	if !bytes.Equal(stdout, zeros) || !bytes.Equal(stderr, zeros) {
		t.Errorf("kept %d and %d bytes, want the first MiB of zeros of each", len(stdout), len(stderr))
	}
	if !out.StdoutTruncated || !out.StderrTruncated || out.StdoutTotalBytes != 64<<20 || out.StderrTotalBytes != 64<<20 {
		t.Errorf("truncation: stdout %v of %d, stderr %v of %d; want true of %d each",
			out.StdoutTruncated, out.StdoutTotalBytes, out.StderrTruncated, out.StderrTotalBytes, 64<<20)
	}

	// max_output_bytes sets the cap; the answer matches the documented schema (this
	// client validates it).
	status, m := c.do("POST", "/v1/sandboxes/"+id+"/exec", `{"cmd":"sh","args":["-c","head -c 5000 /dev/zero; echo done >&2; exit 3"],"max_output_bytes":1000}`)
	if status != 200 || m["encoding"] != "base64" || m["stdout"] != base64.StdEncoding.EncodeToString(make([]byte, 1000)) ||
		m["stderr"] != base64.StdEncoding.EncodeToString([]byte("done\n")) || m["exit_code"] != float64(3) ||
		m["stdout_truncated"] != true || m["stdout_total_bytes"] != float64(5000) ||
		m["stderr_truncated"] != false || m["stderr_total_bytes"] != float64(5) {
		t.Errorf("max_output_bytes 1000: %d %v", status, m)
	}
	// Exactly at the cap is not truncated.
	status, m = c.do("POST", "/v1/sandboxes/"+id+"/exec", `{"cmd":"printf","args":["12345"],"max_output_bytes":5}`)
	if status != 200 || m["stdout"] != "12345" || m["stdout_truncated"] != false || m["stdout_total_bytes"] != float64(5) {
		t.Errorf("output exactly at the cap: %d %v", status, m)
	}
	for bad, code := range map[string]string{`-1`: "invalid_request", `16777217`: "invalid_request", `"1"`: "invalid_json"} {
		if status, m := c.do("POST", "/v1/sandboxes/"+id+"/exec", `{"cmd":"true","max_output_bytes":`+bad+`}`); status != 400 || errCode(m) != code {
			t.Errorf("max_output_bytes %s: %d %v", bad, status, m)
		}
	}
	if status, m := c.do("POST", "/v1/sandboxes/"+id+"/exec", `{"cmd":"true","max_output_bytes":16777216}`); status != 200 || m["stdout_truncated"] != false {
		t.Errorf("max_output_bytes at its maximum: %d %v", status, m)
	}
}

// Text stays text, exactly; output with more than a few control characters, or any
// invalid UTF-8, goes as base64, so JSON never carries it at six bytes a byte.
func TestExecOutputEncoding(t *testing.T) {
	env := servertest.New(t)
	c, id := newUserSandbox(t, env)
	for _, tc := range []struct {
		script, encoding, stdout string
	}{
		{`printf 'h\303\251llo "q" \\ back\n\ttab\r\n'`, "utf-8", "héllo \"q\" \\ back\n\ttab\r\n"},
		{`printf ''`, "utf-8", ""},
		// Terminal colours: a few escapes among text stay text.
		{`printf '\033[1mbold\033[0m and some plain text after it\n'`, "utf-8", "\x1b[1mbold\x1b[0m and some plain text after it\n"},
		{`printf 'a\000b\000'`, "base64", "a\x00b\x00"},
		{`head -c 4096 /dev/zero; echo text`, "base64", string(make([]byte, 4096)) + "text\n"},
		{`printf '\377\376'`, "base64", "\xff\xfe"},
	} {
		status, m := c.do("POST", "/v1/sandboxes/"+id+"/exec", toJSON(map[string]any{"cmd": "sh", "args": []string{"-c", tc.script}}))
		if status != 200 {
			t.Fatalf("%s: %d %v", tc.script, status, m)
		}
		got := execBody{Stdout: m["stdout"].(string), Stderr: m["stderr"].(string), Encoding: m["encoding"].(string)}
		stdout, _ := got.decoded(t)
		if got.Encoding != tc.encoding || string(stdout) != tc.stdout || m["stdout_truncated"] != false || m["stdout_total_bytes"] != float64(len(tc.stdout)) {
			t.Errorf("%s: encoding %v, truncated %v of %v, stdout %.80q; want %s %.80q", tc.script, m["encoding"], m["stdout_truncated"], m["stdout_total_bytes"], stdout, tc.encoding, tc.stdout)
		}
	}
	// One encoding covers both streams: binary stderr makes text stdout base64 too.
	status, m := c.do("POST", "/v1/sandboxes/"+id+"/exec", `{"cmd":"sh","args":["-c","echo hi; printf '\\000' >&2"]}`)
	if status != 200 || m["encoding"] != "base64" || m["stdout"] != base64.StdEncoding.EncodeToString([]byte("hi\n")) || m["stderr"] != "AA==" {
		t.Errorf("binary stderr: %d %v", status, m)
	}
}

// A command that prints as fast as it can to an exec stream whose client reads
// nothing is held back by the client, not queued: every hop (envd, agent, control
// plane) blocks on the next, so neither the agent nor the control plane (both in this
// process) holds more than their transport windows while the client stalls.
func TestExecStreamSlowClientIsNotBuffered(t *testing.T) {
	env := servertest.New(t)
	c, id := newUserSandbox(t, env)
	sdk := client.New(env.URL, client.WithToken(strings.TrimPrefix(c.header.Get("Authorization"), "Bearer ")))
	ctx := context.Background()
	heap := func() int64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	before := heap()
	st, err := sdk.ExecStream(ctx, id, client.Command{Cmd: "head", Args: []string{"-c", "4294967296", "/dev/zero"}, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	time.Sleep(3 * time.Second) // unread: at local speeds gigabytes would pile up somewhere
	grew := (heap() - before) >> 20
	t.Logf("heap grew by %d MiB while the client stalled", grew)
	if grew > 64 {
		t.Errorf("with the client reading nothing, the heap grew by %d MiB in 3 s", grew)
	}
	// The stream is alive and delivers when the client reads again.
	ev, err := st.Recv(ctx)
	if err != nil || len(ev.Stdout) == 0 {
		t.Fatalf("read after the stall: %+v %v", ev, err)
	}
}
