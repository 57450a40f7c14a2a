// Package sdktest runs Node programs of test/sdk — the official e2b JS SDK, pinned —
// against a Wrenn on this machine without letting them reach anything else: node runs
// in a network namespace whose only link is a veth to the root namespace and which has
// no default route, with the variables that could redirect the SDK removed. That is its
// one job, for the end-to-end tests (test/e2e) and the benchmarks (bench) alike. Like
// internal/testutil it is test and benchmark support only (its name ends in "test", so
// internal/archtest keeps it out of production code).
package sdktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// NS is a network namespace joined to the root namespace by a veth pair.
type NS struct {
	Name string // the namespace (ip netns)
	Veth string // the pair's end in the root namespace
	GW   string // 10.99.{i}.1, the root namespace's end: where servers for it listen
	IP   string // 10.99.{i}.2, the namespace's own address (on its eth0)
}

// NewNS creates namespace name joined to the root namespace by veth (10.99.{i}.1/24)
// ↔ eth0 in the namespace (10.99.{i}.2/24), lo up, i in 1..250. The namespace gets no
// default route: it reaches 10.99.{i}.0/24 and nothing else, so nothing sent from it
// can be forwarded off the machine. Leftovers of an interrupted run under the same
// names are removed first; the test's cleanup deletes both. Callers keep their indexes
// apart (test/e2e uses 1–5 and 200, the benchmarks 201 and up).
func NewNS(t testing.TB, name, veth string, i int) *NS {
	t.Helper()
	if i < 1 || i > 250 {
		t.Fatalf("namespace index %d out of 1..250", i)
	}
	ns := &NS{Name: name, Veth: veth, GW: fmt.Sprintf("10.99.%d.1", i), IP: fmt.Sprintf("10.99.%d.2", i)}
	del := func() {
		_ = exec.Command("ip", "netns", "del", ns.Name).Run()
		_ = exec.Command("ip", "link", "del", ns.Veth).Run()
	}
	del()
	t.Cleanup(del)
	// Another device on the subnet would take the namespace's traffic (or hand it to
	// someone else's namespace): refuse rather than measure or test the wrong thing.
	subnet := fmt.Sprintf("10.99.%d.", i)
	out, err := exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		t.Fatalf("ip route: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, subnet) {
				t.Fatalf("%s0/24 is already routed here: %s", subnet, line)
			}
		}
	}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", ns.Name)
	run("link", "add", ns.Veth, "type", "veth", "peer", "name", "eth0", "netns", ns.Name)
	run("addr", "add", ns.GW+"/24", "dev", ns.Veth)
	run("link", "set", ns.Veth, "up")
	run("-n", ns.Name, "link", "set", "lo", "up")
	run("-n", ns.Name, "addr", "add", ns.IP+"/24", "dev", "eth0")
	run("-n", ns.Name, "link", "set", "eth0", "up")
	return ns
}

// Tools are the programs Modules and RunNode need; callers that would rather skip
// than fail check them first.
var Tools = []string{"node", "npm", "nsenter", "ip"}

// Modules returns the module's test/sdk directory with its node_modules installed
// (ModulesIn).
func Modules(t testing.TB) string {
	t.Helper()
	return ModulesIn(t, "test/sdk")
}

// ModulesIn returns the directory rel (slash-separated, from the module root) with its
// node_modules installed: `npm ci` (here, outside any namespace: the namespaces have
// no network, as in test/sdk/run.sh) when they are missing or older than
// package-lock.json. The module root is found from the working directory (a
// package's, under go test).
func ModulesIn(t testing.TB, rel string) string {
	t.Helper()
	for _, tool := range Tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (scripts/install-deps.sh installs it)", tool)
		}
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, filepath.FromSlash(rel))
	lock, err := os.Stat(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	if inst, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json")); err == nil && !lock.ModTime().After(inst.ModTime()) {
		return dir
	}
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
	return dir
}

// moduleRoot is the nearest directory at or above the working directory with a go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", errors.New("module root: no go.mod at or above the working directory")
		}
		dir = up
	}
}

// RunNode runs node with args in dir inside ns (its network namespace only), with
// the caller's environment minus anything that could send the SDK elsewhere (BaseEnv),
// plus env. Past timeout (or, for a test, 30 s before its deadline) node and whatever
// it started are killed. It returns node's combined output.
func RunNode(t testing.TB, ns *NS, dir string, timeout time.Duration, env []string, args ...string) (string, error) {
	t.Helper()
	// testing.B has no deadline; a test's own leaves time to report.
	if dt, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if d, ok := dt.Deadline(); ok && time.Until(d)-30*time.Second < timeout {
			timeout = time.Until(d) - 30*time.Second
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=/var/run/netns/" + ns.Name, node}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(BaseEnv(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// node --test runs each file in a child process: a group of their own, so that
	// killing the group on timeout leaves nothing behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	if ctx.Err() != nil {
		err = errors.Join(err, fmt.Errorf("killed after %v", timeout))
	}
	return out.String(), err
}

// BaseEnv is this process's environment without the variables that would redirect
// the SDK or node's connections (E2B_*, proxies, NODE_OPTIONS, an extra CA, the test
// domain of test/sdk/resolve-test-domain.mjs): callers add their own.
func BaseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch up := strings.ToUpper(name); {
		case strings.HasPrefix(up, "E2B_"), strings.HasSuffix(up, "_PROXY"),
			up == "NODE_OPTIONS", up == "NODE_EXTRA_CA_CERTS", strings.HasPrefix(up, "WRENN_TEST_DOMAIN"):
			continue
		}
		env = append(env, kv)
	}
	return env
}
