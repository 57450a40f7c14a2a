package e2e

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/devrun"
	"github.com/wrennhq/wrenn/internal/image"
	"github.com/wrennhq/wrenn/internal/netslot"
	"github.com/wrennhq/wrenn/internal/vmm/qemu"
)

// Slots from here on belong to the tests, away from a developer's own sandboxes.
const testSlots = 60000

func config(t *image.Template, extraArgs ...string) devrun.Config {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return devrun.Config{
		WrennDir: env.dir, TemplateID: t.Name, Kernel: t.Kernel, Initrd: t.Initrd, RootFS: t.RootFS,
		VCPUs: 1, MemoryMiB: 512, KernelArgs: extraArgs, FirstSlot: testSlots,
		BootTimeout: 120 * time.Second, Driver: qemu.New(qemu.Options{Logger: log}), Net: netslot.DefaultConfig(), Log: log,
	}
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
	tmpl := needVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sb, err := devrun.Start(ctx, config(tmpl))
	if err != nil {
		t.Fatal(err)
	}
	dir, ns := sb.Dir, sb.Slot.NetNS
	t.Cleanup(func() { _ = sb.Close(context.Background()) })
	t.Logf("timings: %+v", sb.Timings)

	var out, errOut bytes.Buffer
	res, err := sb.Exec(ctx, "/bin/bash", []string{"-l", "-c", "echo hello from $(hostname) as $(whoami) in $(pwd); cat /run/e2b/.E2B_SANDBOX_ID"}, &out, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	want := "hello from " + sb.ID + " as user in /home/user\n" + sb.ID
	if res.ExitCode != 0 || out.String() != want {
		t.Fatalf("exec: %+v stdout %q stderr %q, want %q", res, out.String(), errOut.String(), want)
	}
	// The guest has the tools the SDKs rely on, and passwordless sudo.
	out.Reset()
	res, err = sb.Exec(ctx, "/bin/bash", []string{"-c", "python3 -c 'print(6*7)' && sudo -n true && echo sudo-ok"}, &out, &errOut)
	if err != nil || res.ExitCode != 0 || out.String() != "42\nsudo-ok\n" {
		t.Fatalf("tools: %+v %v stdout %q stderr %q", res, err, out.String(), errOut.String())
	}
	if err := sb.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertGone(t, dir, ns)
}

func TestBadKernelArgsFailClearly(t *testing.T) {
	tmpl := needVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	// The kernel cannot run its init: it panics, and with panic=-1 QEMU exits.
	_, err := devrun.Start(ctx, config(tmpl, "rdinit=/no/such/init"))
	if err == nil {
		t.Fatal("a guest that cannot boot started")
	}
	if !strings.Contains(err.Error(), "vm exited") || !strings.Contains(err.Error(), "console:") {
		t.Errorf("error does not say the VM died or show its console: %v", err)
	}
	if took := time.Since(start); took > 100*time.Second {
		t.Errorf("failure noticed after %v; the VM exit should end the wait at once", took)
	}
	t.Logf("error (after %v): %.400s", time.Since(start).Round(time.Millisecond), err)
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
		if strings.HasPrefix(n.Name(), "wrenn-ns-6") { // test slots are 60000+
			t.Errorf("network namespace %s remains", n.Name())
		}
	}
}

func TestKilledQemuIsDetectedAndCleaned(t *testing.T) {
	tmpl := needVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	sb, err := devrun.Start(ctx, config(tmpl))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Close(context.Background()) })
	dir, ns := sb.Dir, sb.Slot.NetNS
	if err := syscall.Kill(sb.Machine.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sb.Machine.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a killed qemu was not noticed within 10 s")
	}
	if sb.Machine.Err() == nil || !strings.Contains(sb.Machine.Err().Error(), "killed") {
		t.Errorf("exit reason %v, want one that says it was killed", sb.Machine.Err())
	}
	execStart := time.Now()
	if _, err := sb.Exec(ctx, "true", nil, nil, nil); err == nil || !strings.Contains(err.Error(), "vm exited") {
		t.Errorf("exec in a killed sandbox: %v, want an error saying the VM exited", err)
	}
	if took := time.Since(execStart); took > 5*time.Second {
		t.Errorf("exec in a killed sandbox took %v to fail", took)
	}
	if err := sb.Close(context.Background()); err != nil {
		t.Fatalf("cleanup after kill: %v", err)
	}
	assertGone(t, dir, ns)
}
