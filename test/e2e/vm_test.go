package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/agent"
	"github.com/wrennhq/wrenn/internal/agent/vmtest"
	"github.com/wrennhq/wrenn/internal/envdclient"
	"github.com/wrennhq/wrenn/internal/ident"
	"github.com/wrennhq/wrenn/internal/lifecycle"
)

// Slots from here on belong to these tests, away from a developer's own sandboxes.
const testSlots = 60000

// newManager is an in-process agent manager on the tests' WRENN_DIR, with its own slot
// range and extra kernel arguments.
func newManager(t *testing.T, kernelArgs ...string) *agent.Manager {
	t.Helper()
	needVM(t)
	m, _ := vmtest.NewManager(t, vmtest.Options{Dir: env.dir, FirstSlot: testSlots, LastSlot: testSlots + 999, KernelArgs: kernelArgs})
	return m
}

// nsOf is the network namespace of the slot behind a sandbox address.
func nsOf(info *agent.Info) string {
	ip := info.HostIP.As4()
	return "wrenn-ns-" + strconv.Itoa(int(ip[2])<<8|int(ip[3]))
}

// assertGone checks that nothing of a sandbox is left on the host: no qemu process
// using its directory, no network namespace, no directory.
func assertGone(t *testing.T, dir, ns string) {
	t.Helper()
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		cmdline, err := os.ReadFile("/proc/" + p.Name() + "/cmdline")
		if err == nil && bytes.Contains(cmdline, []byte(dir)) && bytes.Contains(cmdline, []byte("qemu")) {
			t.Errorf("qemu process %s still runs for %s", p.Name(), dir)
		}
	}
	if ns != "" {
		if _, err := os.Stat("/var/run/netns/" + ns); err == nil {
			t.Errorf("network namespace %s remains", ns)
		}
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("sandbox directory %s remains", dir)
	}
}

func TestBootAndExec(t *testing.T) {
	m := newManager(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	info, _, tm, err := m.Create(ctx, agent.Spec{Template: "base"})
	if err != nil {
		t.Fatal(err)
	}
	id := info.Spec.ID
	t.Cleanup(func() { _ = m.Destroy(context.Background(), id) })
	t.Logf("timings: %+v", tm)

	var out, errOut bytes.Buffer
	res, err := m.Exec(ctx, id, envdclient.Command{Cmd: "/bin/bash", Args: []string{"-l", "-c", "echo hello from $(hostname) as $(whoami) in $(pwd); cat /run/e2b/.E2B_SANDBOX_ID"}}, 0, nil, &out, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	want := "hello from " + id + " as user in /home/user\n" + id
	if res.ExitCode != 0 || out.String() != want {
		t.Fatalf("exec: %+v stdout %q stderr %q, want %q", res, out.String(), errOut.String(), want)
	}
	// The guest has the tools the SDKs rely on, and passwordless sudo.
	out.Reset()
	res, err = m.Exec(ctx, id, envdclient.Command{Cmd: "/bin/bash", Args: []string{"-c", "python3 -c 'print(6*7)' && sudo -n true && echo sudo-ok"}}, 0, nil, &out, &errOut)
	if err != nil || res.ExitCode != 0 || out.String() != "42\nsudo-ok\n" {
		t.Fatalf("tools: %+v %v stdout %q stderr %q", res, err, out.String(), errOut.String())
	}
	if err := m.Destroy(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	assertGone(t, filepath.Join(env.dir, "sandboxes", id), nsOf(info))
}

func TestBadKernelArgsFailClearly(t *testing.T) {
	// The kernel cannot run its init: it panics, and with panic=-1 QEMU exits.
	m := newManager(t, "rdinit=/no/such/init")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	id := ident.NewSandboxID()
	_, _, _, err := m.Create(ctx, agent.Spec{Template: "base", ID: id})
	if err == nil {
		t.Fatal("a guest that cannot boot started")
	}
	if !strings.Contains(err.Error(), "vm exited") || !strings.Contains(err.Error(), "Kernel panic") {
		t.Errorf("error does not say the VM died or show its console: %v", err)
	}
	if took := time.Since(start); took > 100*time.Second {
		t.Errorf("failure noticed after %v; the VM exit should end the wait at once", took)
	}
	t.Logf("error (after %v): %.300s", time.Since(start).Round(time.Millisecond), err)
	assertGone(t, filepath.Join(env.dir, "sandboxes", id), "")
	if len(m.List()) != 0 {
		t.Errorf("a failed create stays listed: %v", m.List())
	}
	assertNoTestLeftovers(t)
}

// assertNoTestLeftovers checks that no sandbox of the tests is left at all.
func assertNoTestLeftovers(t *testing.T) {
	t.Helper()
	entries, _ := os.ReadDir(env.dir + "/sandboxes")
	for _, e := range entries {
		assertGone(t, env.dir+"/sandboxes/"+e.Name(), "")
	}
	nss, _ := os.ReadDir("/var/run/netns")
	for _, n := range nss {
		if i, err := strconv.Atoi(strings.TrimPrefix(n.Name(), "wrenn-ns-")); err == nil && i >= testSlots && i < testSlots+1000 {
			t.Errorf("network namespace %s remains", n.Name())
		}
	}
}

func TestKilledQemuIsDetectedAndCleaned(t *testing.T) {
	m := newManager(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	info, _, _, err := m.Create(ctx, agent.Spec{Template: "base"})
	if err != nil {
		t.Fatal(err)
	}
	id := info.Spec.ID
	t.Cleanup(func() { _ = m.Destroy(context.Background(), id) })
	pid, err := m.VMPID(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := m.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if got.State == lifecycle.Error {
			if !strings.Contains(got.Error, "killed") {
				t.Errorf("error state says %q, want the VM was killed", got.Error)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a killed qemu was not noticed within 10 s (state %s)", got.State)
		}
		time.Sleep(50 * time.Millisecond)
	}
	execStart := time.Now()
	_, err = m.Exec(ctx, id, envdclient.Command{Cmd: "true"}, 0, nil, nil, nil)
	var stateErr *agent.ErrState
	if !errors.As(err, &stateErr) {
		t.Errorf("exec in a dead sandbox: %v, want a state error", err)
	}
	if took := time.Since(execStart); took > time.Second {
		t.Errorf("exec in a dead sandbox took %v to fail", took)
	}
	if err := m.Destroy(context.Background(), id); err != nil {
		t.Fatalf("cleanup after kill: %v", err)
	}
	assertGone(t, filepath.Join(env.dir, "sandboxes", id), nsOf(info))
}
