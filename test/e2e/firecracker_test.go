package e2e

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/agent"
	"github.com/wrennhq/wrenn/internal/agent/vmtest"
	"github.com/wrennhq/wrenn/internal/envdclient"
	"github.com/wrennhq/wrenn/internal/vmm"
	"github.com/wrennhq/wrenn/internal/vmm/firecracker"
)

// TestFirecrackerOnKVM is the real-Firecracker suite, for KVM hosts (run it with
// scripts/kvm-host-check.sh): boot, exec, pause and resume with the guest's disk and
// memory intact, a named snapshot restored into 3 clones, and 20 pause/resume cycles
// (diff snapshots served lazily through the uffd handler). Where Firecracker cannot
// run — no binary, or a KVM that cannot run stock kernels, as on this project's CI —
// it skips and says which.
func TestFirecrackerOnKVM(t *testing.T) {
	if err := firecracker.Usable(vmm.Options{}); err != nil {
		t.Skipf("Firecracker cannot run on this host (%v); scripts/kvm-host-check.sh runs this on a KVM host", err)
	}
	needVM(t)
	m, _ := vmtest.NewManager(t, vmtest.Options{Dir: env.dir, FirstSlot: testSlots + 2000, LastSlot: testSlots + 2099, Driver: firecracker.Name})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	run := func(id, script string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		res, err := m.Exec(ctx, id, envdclient.Command{Cmd: "/bin/bash", Args: []string{"-c", script}}, 0, nil, &out, &errOut)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("exec %q in %s: %+v %v stderr %q", script, id, res, err, errOut.String())
		}
		return strings.TrimSpace(out.String())
	}
	start := time.Now()
	info, _, tm, err := m.Create(ctx, agent.Spec{Template: "base"})
	if err != nil {
		t.Fatal(err)
	}
	id := info.Spec.ID
	t.Cleanup(func() { m.Destroy(context.Background(), id) })
	t.Logf("boot to envd ready: %v (%+v)", time.Since(start), tm)
	if got := run(id, "echo hi; echo disk > /home/user/f; echo mem > /dev/shm/m"); got != "hi" {
		t.Fatalf("exec: %q", got)
	}
	for i := range 20 {
		if _, _, err := m.Pause(ctx, id); err != nil {
			t.Fatalf("pause %d: %v", i, err)
		}
		rs := time.Now()
		if _, _, _, err := m.Resume(ctx, id, 0); err != nil {
			t.Fatalf("resume %d: %v", i, err)
		}
		if i == 0 {
			t.Logf("first resume: %v", time.Since(rs))
		}
		want := fmt.Sprintf("disk mem %d", i)
		if got := run(id, fmt.Sprintf("echo %d >> /dev/shm/n; echo $(cat /home/user/f /dev/shm/m) $(tail -1 /dev/shm/n)", i)); got != want {
			t.Fatalf("cycle %d: %q, want %q", i, got, want)
		}
	}
	if _, _, err := m.CreateSnapshot(ctx, id, "fc-kvm-check", true); err != nil {
		t.Fatal(err)
	}
	for c := range 3 {
		ci, _, _, err := m.Create(ctx, agent.Spec{Template: "base", Snapshot: "fc-kvm-check"})
		if err != nil {
			t.Fatalf("clone %d: %v", c, err)
		}
		t.Cleanup(func() { m.Destroy(context.Background(), ci.Spec.ID) })
		if got := run(ci.Spec.ID, "cat /home/user/f /dev/shm/m | tr '\\n' ' '"); got != "disk mem" {
			t.Fatalf("clone %d sees %q", c, got)
		}
	}
}
