package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// vmKiB reads a "Vm…:  N kB" line of /proc/{pid}/status.
func vmKiB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read the server's status: %v", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("%s of %d: %q", field, pid, line)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// One exec that prints 64 MiB of NUL bytes on stdout and on stderr (issue 12, finding
// 3) used to answer with an 805 MB JSON body and take the control plane from 0.6 to
// 2.65 GB. Through a real control plane, agent and VM, the answer now holds the first
// MiB of each stream as base64 and says what was dropped, and the server's peak
// memory (VmHWM, reset just before) grows by far less than the output.
func TestExecOutputBoundsServerMemory(t *testing.T) {
	needVM(t)
	cp := startServer(t, "")
	cp.addAgent(t, cp.admin(t), agentOpts{})
	_, ann := rest(t, "POST", cp.base+"/v1/auth/signup", "", `{"email":"ann@example.com","password":"correct horse battery"}`)
	token, _ := ann["token"].(string)
	status, sb := rest(t, "POST", cp.base+"/v1/sandboxes", token, `{"template":"base"}`)
	if status != 201 {
		t.Fatalf("create sandbox: %d %v", status, sb)
	}
	id := sb["id"].(string)
	t.Cleanup(func() { rest(t, "DELETE", cp.base+"/v1/sandboxes/"+id, token, "") })
	// A first exec warms what every exec shares (the agent's connection, pools).
	if status, out := rest(t, "POST", cp.base+"/v1/sandboxes/"+id+"/exec", token, `{"cmd":"true"}`); status != 200 {
		t.Fatalf("first exec: %d %v", status, out)
	}

	pid := cp.cmd.Process.Pid
	// "5" resets the peak to the current RSS (Linux ≥ 4.0), so the growth measured is
	// this exec's alone.
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		t.Logf("cannot reset the server's VmHWM (%v): measuring from its peak so far", err)
	}
	before := vmKiB(t, pid, "VmHWM")

	body := `{"cmd":"sh","args":["-c","head -c 67108864 /dev/zero; head -c 67108864 /dev/zero >&2; exit 5"],"timeout_sec":900}`
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", cp.base+"/v1/sandboxes/"+id+"/exec", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	// Read the whole answer (so the server has done all its work before the peak is
	// read), keeping only its first 8 MiB.
	var head bytes.Buffer
	n, err := io.Copy(&limited{&head, 8 << 20}, resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("read the exec answer: %v", err)
	}
	peak := vmKiB(t, pid, "VmHWM")
	t.Logf("exec of 2 × 64 MiB took %v; answer %d bytes; server VmHWM %d → %d MiB", time.Since(start).Round(time.Millisecond), n, before>>10, peak>>10)

	const ceilingMiB = 256
	if grew := (peak - before) >> 10; grew >= ceilingMiB {
		t.Errorf("the server's peak memory grew by %d MiB during one exec, want < %d MiB", grew, ceilingMiB)
	}
	if n > 3<<20 {
		t.Fatalf("the answer is %d bytes: output is not capped (want 2 × 1 MiB as base64)", n)
	}
	var out struct {
		Stdout, Stderr, Encoding string
		ExitCode                 int   `json:"exit_code"`
		StdoutTruncated          bool  `json:"stdout_truncated"`
		StderrTruncated          bool  `json:"stderr_truncated"`
		StdoutTotalBytes         int64 `json:"stdout_total_bytes"`
		StderrTotalBytes         int64 `json:"stderr_total_bytes"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(head.Bytes(), &out) != nil {
		t.Fatalf("exec: %d %.300q", resp.StatusCode, head.Bytes())
	}
	stdout, err1 := base64.StdEncoding.DecodeString(out.Stdout)
	stderr, err2 := base64.StdEncoding.DecodeString(out.Stderr)
	zeros := make([]byte, 1<<20)
	if out.Encoding != "base64" || err1 != nil || err2 != nil || !bytes.Equal(stdout, zeros) || !bytes.Equal(stderr, zeros) || out.ExitCode != 5 {
		t.Errorf("exec answer: encoding %q, %d and %d bytes kept (%v %v), exit %d; want base64, 1 MiB of zeros each, exit 5",
			out.Encoding, len(stdout), len(stderr), err1, err2, out.ExitCode)
	}
	if !out.StdoutTruncated || !out.StderrTruncated || out.StdoutTotalBytes != 64<<20 || out.StderrTotalBytes != 64<<20 {
		t.Errorf("truncation: stdout %v of %d, stderr %v of %d; want both truncated of %d bytes",
			out.StdoutTruncated, out.StdoutTotalBytes, out.StderrTruncated, out.StderrTotalBytes, 64<<20)
	}
}

// limited keeps the first n bytes written to it and drops the rest.
type limited struct {
	buf *bytes.Buffer
	n   int
}

func (l *limited) Write(p []byte) (int, error) {
	if room := l.n - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
