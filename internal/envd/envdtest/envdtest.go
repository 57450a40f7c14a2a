// Package envdtest runs the real envd binary for tests: built once per test binary,
// started as its own process in a private mount namespace whose /etc/passwd, /etc/group,
// /home and /root are throwaway copies (with a `user` account), so tests can switch users
// and write into homes without touching the machine they run on.
package envdtest

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/wrennhq/wrenn/gen/envd/filesystem/filesystemconnect"
	"github.com/wrennhq/wrenn/gen/envd/process/processconnect"
	"github.com/wrennhq/wrenn/internal/testutil"
)

// IDs of the `user` account inside the namespace; high, so they never clash with an
// account of the host.
const (
	UserUID  = 31000
	UserGID  = 31000
	ExtraGID = 31001 // a supplementary group `user` belongs to
)

// Codec selects the Connect codec a client speaks.
type Codec string

const (
	JSON  Codec = "json"
	Proto Codec = "proto"
)

// Codecs lists both, for tests that must pass with each.
var Codecs = []Codec{JSON, Proto}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary returns the path of a static envd: $WRENN_ENVD_BIN when set (make test builds it
// once), else one built from this checkout into a temp dir once per test binary.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("WRENN_ENVD_BIN"); p != "" {
		if !filepath.IsAbs(p) {
			t.Fatalf("WRENN_ENVD_BIN=%q must be an absolute path (tests run in their package's directory)", p)
		}
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("WRENN_ENVD_BIN: %v", err)
		}
		return p
	}
	buildOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "envd-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "envd")
		cmd := exec.Command("go", "build", "-o", buildPath, "./cmd/envd")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build envd: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the wrenn module")
	}
	return filepath.Dir(mod), nil
}

// Envd is one running envd process.
type Envd struct {
	URL    string
	PID    int
	RunDir string // --run-dir, as seen from the host
	cmd    *exec.Cmd
	logs   *syncBuffer
	HTTP   *http.Client
	done   chan struct{}
	err    error // set before done is closed
}

// RequireRoot skips the test when not root: user switching and the private mount
// namespace need it. CI runs as root, so there these tests always run.
func RequireRoot(t testing.TB) {
	t.Helper()
	testutil.RequireRoot(t, "envd switches to test users and makes a private mount namespace")
}

// Start runs envd with extra flags on a free loopback port and waits until /health
// answers. It is stopped, and its log printed on failure, when the test ends.
func Start(t testing.TB, flags ...string) *Envd {
	t.Helper()
	RequireRoot(t)
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	e, err := Launch(Binary(t), t.TempDir(), "127.0.0.1:"+strconv.Itoa(port), flags...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("envd log:\n%s", e.Logs())
		}
	})
	if err := e.WaitHealthy(15 * time.Second); err != nil {
		t.Fatalf("envd did not become healthy: %v\nlog:\n%s", err, e.Logs())
	}
	return e
}

// Launch starts envd (the binary bin) listening on addr, with its fake accounts and run
// directory under dir, and returns without waiting for it to be healthy. The caller
// stops it. It is for harnesses that run envd where a VM would be (agenttest); tests
// use Start.
func Launch(bin, dir, addr string, flags ...string) (*Envd, error) {
	if err := makeFakeAccounts(dir); err != nil {
		return nil, err
	}
	e := &Envd{
		URL:    "http://" + addr,
		RunDir: filepath.Join(dir, "run"),
		logs:   &syncBuffer{},
		HTTP:   &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		done:   make(chan struct{}),
	}
	// The shell only sets up the mounts and then becomes envd (exec), so PID is envd's.
	script := `set -e
mount --bind "$1/etc/passwd" /etc/passwd
mount --bind "$1/etc/group" /etc/group
mount --bind "$1/home" /home
mount --bind "$1/root" /root
shift
exec "$@"`
	args := append([]string{"--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh", dir,
		bin, "--addr", addr, "--run-dir", e.RunDir}, flags...)
	e.cmd = exec.Command("unshare", args...)
	e.cmd.Stdout, e.cmd.Stderr = e.logs, e.logs
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := e.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start envd: %w", err)
	}
	e.PID = e.cmd.Process.Pid
	go func() {
		e.err = e.cmd.Wait()
		close(e.done)
	}()
	return e, nil
}

// WaitHealthy waits until /health answers 204, envd exits or timeout passes.
func (e *Envd) WaitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := e.HTTP.Get(e.URL + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-e.done:
			return fmt.Errorf("envd exited: %v", e.err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Done is closed when the envd process has exited; Err then says how.
func (e *Envd) Done() <-chan struct{} { return e.done }

// Err is the process's exit status, once Done is closed.
func (e *Envd) Err() error { return e.err }

// Stop ends envd (SIGTERM, then SIGKILL after 10 s) and waits for it. It reports a
// slow stop and data races a -race build printed.
func (e *Envd) Stop() error {
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	var errs []error
	select {
	case <-e.done:
	case <-time.After(10 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.done
		errs = append(errs, errors.New("envd did not stop within 10s of SIGTERM"))
	}
	// A binary built with -race reports data races on stderr and keeps running.
	if strings.Contains(e.logs.String(), "WARNING: DATA RACE") {
		errs = append(errs, errors.New("envd reported a data race"))
	}
	return errors.Join(errs...)
}

// Logs returns what envd printed so far.
func (e *Envd) Logs() string { return e.logs.String() }

// HostPath maps a path inside envd's mount namespace to one the test can open.
func (e *Envd) HostPath(p string) string {
	return fmt.Sprintf("/proc/%d/root%s", e.PID, p)
}

func clientOptions(c Codec, extra []connect.ClientOption) []connect.ClientOption {
	if c == JSON {
		extra = append(extra, connect.WithProtoJSON())
	}
	return extra
}

// Process returns a process-service client speaking codec c over HTTP/1.1.
func (e *Envd) Process(c Codec, opts ...connect.ClientOption) processconnect.ProcessClient {
	return processconnect.NewProcessClient(e.HTTP, e.URL, clientOptions(c, opts)...)
}

// Filesystem returns a filesystem-service client speaking codec c over HTTP/1.1.
func (e *Envd) Filesystem(c Codec, opts ...connect.ClientOption) filesystemconnect.FilesystemClient {
	return filesystemconnect.NewFilesystemClient(e.HTTP, e.URL, clientOptions(c, opts)...)
}

// H2CClient returns an HTTP client that speaks cleartext HTTP/2 with prior knowledge.
func H2CClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}

// Init posts a JSON body to /init and fails the test unless envd answers 204.
func (e *Envd) Init(t testing.TB, body string, header ...string) {
	t.Helper()
	resp := e.Post(t, "/init", body, header...)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("/init: status %d: %s", resp.StatusCode, ReadAll(t, resp))
	}
	resp.Body.Close()
}

// Post sends a JSON body; header holds name, value pairs.
func (e *Envd) Post(t testing.TB, path, body string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, e.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.HTTP.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return resp
}

// ReadAll reads and closes a response body.
func ReadAll(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatalf("read body: %v", err)
	}
	return b.String()
}

// BasicUser returns the Authorization header value that selects a user.
func BasicUser(name string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(name+":"))
}

func makeFakeAccounts(dir string) error {
	passwd, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return err
	}
	group, err := os.ReadFile("/etc/group")
	if err != nil {
		return err
	}
	var pw, gr strings.Builder
	for _, line := range strings.Split(strings.TrimRight(string(passwd), "\n"), "\n") {
		if !strings.HasPrefix(line, "user:") {
			pw.WriteString(line + "\n")
		}
	}
	fmt.Fprintf(&pw, "user:x:%d:%d:Sandbox User:/home/user:/bin/bash\n", UserUID, UserGID)
	for _, line := range strings.Split(strings.TrimRight(string(group), "\n"), "\n") {
		if !strings.HasPrefix(line, "user:") && !strings.HasPrefix(line, "wrenngrp:") {
			gr.WriteString(line + "\n")
		}
	}
	fmt.Fprintf(&gr, "user:x:%d:\nwrenngrp:x:%d:user\n", UserGID, ExtraGID)
	for _, d := range []string{"etc", "home/user", "root", "run"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "root"), 0o700); err != nil {
		return err
	}
	if err := os.Chown(filepath.Join(dir, "home/user"), UserUID, UserGID); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte(pw.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "etc/group"), []byte(gr.String()), 0o644)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
