package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a buffer a process writes while a test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The wrenn CLI against a real control plane, agent and VM.
func TestCLI(t *testing.T) {
	needVM(t)
	base := startControlPlaneWithHost(t)
	cfgDir := t.TempDir()
	wrenn := func(stdin string, args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(wrennBinary(t), args...)
		cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+cfgDir, "WRENN_URL="+base, "WRENN_PASSWORD=correct horse battery")
		cmd.Stdin = strings.NewReader(stdin)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errOut.String(), code
	}
	mustRun := func(args ...string) string {
		t.Helper()
		out, errOut, code := wrenn("", args...)
		if code != 0 {
			t.Fatalf("wrenn %v: exit %d\n%s%s", args, code, out, errOut)
		}
		return out
	}

	mustRun("signup", "--email", "cli@example.com")
	if info, err := os.Stat(filepath.Join(cfgDir, "wrenn", "config")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("config file: %v %v", info, err)
	}
	if out := mustRun("whoami"); !strings.Contains(out, "user:     cli@example.com") || !strings.Contains(out, "server:   "+base) {
		t.Errorf("whoami: %q", out)
	}
	var key struct{ Key string }
	if err := json.Unmarshal([]byte(mustRun("keys", "create", "--json", "cli")), &key); err != nil || !strings.HasPrefix(key.Key, "wrn_") {
		t.Fatalf("keys create: %v %q", err, key.Key)
	}
	if out := mustRun("keys", "ls"); !strings.Contains(out, "cli") || strings.Contains(out, key.Key) {
		t.Errorf("keys ls shows %q", out)
	}

	var sb struct{ ID, Status string }
	if err := json.Unmarshal([]byte(mustRun("sandbox", "create", "--json")), &sb); err != nil || sb.Status != "running" {
		t.Fatalf("sandbox create: %v %+v", err, sb)
	}
	t.Cleanup(func() { wrenn("", "sandbox", "rm", sb.ID) })
	if out := mustRun("sandbox", "exec", sb.ID, "hostname"); out != sb.ID+"\n" {
		t.Errorf("exec: %q", out)
	}
	if _, _, code := wrenn("", "sandbox", "exec", sb.ID, "--", "/bin/bash", "-c", "exit 9"); code != 9 {
		t.Errorf("exit code passed through: %d", code)
	}
	// -i: stdin streams into the command; EOF ends it.
	if out, errOut, code := wrenn("line one\nline two\n", "sandbox", "exec", "-i", sb.ID, "--", "python3", "-c", "import sys; print(sys.stdin.read().upper(), end='')"); code != 0 || out != "LINE ONE\nLINE TWO\n" {
		t.Errorf("exec -i: exit %d %q %q", code, out, errOut)
	}
	// -it: a terminal in the guest sized like ours, input typed, exit code through.
	if out, code := runInPTY(t, []string{"stty size; tty; read -r line; echo got:$line; exit 4\r", "hello\r"}, wrennBinary(t),
		[]string{"XDG_CONFIG_HOME=" + cfgDir, "WRENN_URL=" + base}, "sandbox", "exec", "-it", sb.ID, "--", "/bin/bash", "--norc"); code != 4 ||
		!strings.Contains(out, "30 100") || !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "got:hello") {
		t.Errorf("exec -it: exit %d, output %q", code, out)
	}
	if _, errOut, code := wrenn("", "sandbox", "exec", "-t", sb.ID, "--", "tty"); code == 0 || !strings.Contains(errOut, "terminal") {
		t.Errorf("-t without a terminal: exit %d %q", code, errOut)
	}
	local := filepath.Join(t.TempDir(), "in.txt")
	if err := os.WriteFile(local, []byte("from the cli\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun("sandbox", "cp", local, sb.ID+":/home/user/in.txt")
	if out := mustRun("sandbox", "cp", sb.ID+":/home/user/in.txt", "-"); out != "from the cli\n" {
		t.Errorf("cp back: %q", out)
	}
	if out := mustRun("sandbox", "ls"); !strings.Contains(out, sb.ID) || !strings.Contains(out, "running") {
		t.Errorf("ls: %q", out)
	}
	// On a terminal: states in colour, unless NO_COLOR; a shell that answers and
	// passes its exit status on.
	ptyEnv := []string{"XDG_CONFIG_HOME=" + cfgDir, "WRENN_URL=" + base}
	if out, code := runInPTY(t, nil, wrennBinary(t), ptyEnv, "sandbox", "ls"); code != 0 || !strings.Contains(out, "\x1b[32mrunning\x1b[0m") {
		t.Errorf("ls on a terminal: exit %d, %q", code, out)
	}
	if out, code := runInPTY(t, nil, wrennBinary(t), append(ptyEnv, "NO_COLOR=1"), "sandbox", "ls"); code != 0 || strings.Contains(out, "\x1b[") || !strings.Contains(out, "running") {
		t.Errorf("ls on a terminal with NO_COLOR: exit %d, %q", code, out)
	}
	if out, code := runInPTY(t, []string{"echo in-$((6*7)) $(tty); exit 5\r"}, wrennBinary(t), ptyEnv, "sandbox", "shell", sb.ID); code != 5 ||
		!strings.Contains(out, "in-42 /dev/pts/") {
		t.Errorf("sandbox shell: exit %d, %q", code, out)
	}
	if _, errOut, code := wrenn("", "sandbox", "shell", sb.ID); code != 1 || !strings.Contains(errOut, "needs a terminal") {
		t.Errorf("sandbox shell without a terminal: exit %d, %q", code, errOut)
	}
	// -q: the id alone, for scripts; a second sandbox, then rm of several at once.
	id2 := strings.TrimSpace(mustRun("sandbox", "create", "-q"))
	if !strings.HasPrefix(id2, "sb") || strings.ContainsAny(id2, " \n") {
		t.Fatalf("create -q printed %q", id2)
	}
	if _, errOut, code := wrenn("", "sandbox", "rm", sb.ID, id2); code != 1 || !strings.Contains(errOut, "--yes") {
		t.Errorf("rm of two without a terminal or --yes: exit %d, %q", code, errOut)
	}
	// logs -f of a sandbox created without waiting: the boot shows while it starts,
	// and the follow ends by itself when the sandbox is destroyed.
	id3 := strings.TrimSpace(mustRun("sandbox", "create", "-q", "--wait=false"))
	follow := exec.Command(wrennBinary(t), "sandbox", "logs", "-f", id3)
	follow.Env = append(os.Environ(), ptyEnv...)
	var followed lockedBuffer
	follow.Stdout = &followed
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	followDone := make(chan error, 1)
	go func() { followDone <- follow.Wait() }()
	deadline := time.Now().Add(3 * time.Minute)
	for !strings.Contains(followed.String(), bootLine) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(followed.String(), bootLine) {
		t.Errorf("logs -f of a booting sandbox never showed %q: %q", bootLine, followed.String())
	}
	mustRun("sandbox", "rm", "--yes", sb.ID, id2, id3)
	select {
	case err := <-followDone:
		if err != nil {
			t.Errorf("logs -f after the sandbox was destroyed: %v", err)
		}
	case <-time.After(30 * time.Second):
		follow.Process.Kill()
		t.Errorf("logs -f did not end when its sandbox was destroyed")
	}
	if out := mustRun("sandbox", "ls", "-q"); out != "" {
		t.Errorf("ls -q after rm of both: %q", out)
	}
	if _, errOut, code := wrenn("", "sandbox", "exec", sb.ID, "true"); code == 0 || !strings.Contains(errOut, "404") {
		t.Errorf("exec after rm: exit %d, %q", code, errOut)
	}
	if _, errOut, code := wrenn("", "sandbox", "frobnicate"); code != 2 || !strings.Contains(errOut, `wrenn sandbox: unknown command "frobnicate"`) {
		t.Errorf("bad subcommand: exit %d %q", code, errOut)
	}
}
