package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
)

// vmmFaults are the fault points at which a sandbox has a running VMM, and how the
// sandbox must end when that VMM is killed (-9) there and the operation goes on:
//   - gone: the create fails and is rolled back entirely (also when the VM dies after
//     the guest answered /init: a create never hands out a dead VM);
//   - error: the guest's memory is lost, so the sandbox is failed with the reason
//     (a destroy then frees it);
//   - paused: the snapshot was complete (pause/snapshot) or is still the truth
//     (resume/vm: the restored guest never ran), so the sandbox is paused and
//     resumes with everything written before.
//
// A named snapshot is published only when its VM ran on after it: one whose VM died
// before it ran again (snapshot/vcpus, memory, disk) is thrown away with its work
// files; one already published (snapshot/published) stays, whole.
var vmmFaults = []struct{ point, want string }{
	{"create/vm", "gone"},
	{"create/boot", "gone"},
	{"create/init", "gone"},
	{"pause/vcpus", "error"},
	{"pause/snapshot", "paused"},
	{"resume/vm", "paused"},
	{"resume/running", "error"},
	{"snapshot/vcpus", "error"},
	{"snapshot/memory", "error"},
	{"snapshot/disk", "error"},
	{"snapshot/published", "error"},
}

// The fault matrix for the VMM: it is killed at every point of create, pause and
// resume where one runs, while the agent holds the operation there, which then goes
// on. The sandbox must end as vmmFaults says, the agent must stay usable, and a
// destroy must leave nothing. (Destroy has no such point: its first step stops
// the VM.)
func TestVMMKilledAtEveryFaultPoint(t *testing.T) {
	needVM(t)
	for _, f := range vmmFaults {
		t.Run(strings.ReplaceAll(f.point, "/", "-"), func(t *testing.T) { killVMMAt(t, f.point, f.want) })
	}
}

func killVMMAt(t *testing.T, point, want string) {
	op, _, _ := strings.Cut(point, "/")
	a := startAgent(t, freeAddr(t), "WRENN_AGENT_FAULT_POINT="+point)
	id := faultSandbox(t, a, op)
	done := startOp(context.Background(), a, op, id)
	waitForLog(t, a, "fault point reached", done)
	killQEMU(t, id)
	opErr := <-done
	t.Cleanup(func() {
		_, _ = a.client.DestroySandbox(context.Background(), connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: id}))
	})

	// The agent's watcher records a VM's death on a goroutine of its own: wait for it.
	outcome, sb := "", (*pb.Sandbox)(nil)
	look := func() bool {
		got, err := a.client.GetSandbox(context.Background(), connect.NewRequest(&pb.GetSandboxRequest{SandboxId: id}))
		switch {
		case err == nil:
			sb = got.Msg.GetSandbox()
			outcome = strings.ToLower(strings.TrimPrefix(sb.GetState().String(), "SANDBOX_STATE_"))
		case connect.CodeOf(err) == connect.CodeNotFound:
			outcome, sb = "gone", nil
		default:
			t.Fatalf("get sandbox: %v", err)
		}
		return outcome == want
	}
	deadline := time.Now().Add(10 * time.Second)
	for !look() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("vmm killed at %s: the %s returned %v; the sandbox is %s %s", point, op, opErr, outcome, sb.GetError())
	if outcome != want {
		t.Fatalf("vmm killed at %s: the sandbox is %s (%v), want %s", point, outcome, sb.GetError(), want)
	}
	switch want {
	case "gone":
		if opErr == nil {
			t.Errorf("the %s succeeded although its sandbox is gone", op)
		}
		create(t, a.client, &pb.CreateSandboxRequest{SandboxId: id})
		execIn(t, a.client, id, "true")
	case "error":
		if sb.GetError() == "" {
			t.Error("the failed sandbox does not say why")
		}
		if op == "snapshot" {
			checkSnapshot(t, a, point == "snapshot/published")
		}
	case "paused":
		resume(t, a.client, id)
		checkKept(t, a, id)
	}
	destroyLeavingNothing(t, a, id)
}

// killQEMU kills sandbox id's VMM with SIGKILL.
func killQEMU(t *testing.T, id string) {
	t.Helper()
	dir := filepath.Join(env.dir, "sandboxes", id)
	b, err := os.ReadFile(filepath.Join(dir, "qemu.pid"))
	if err != nil {
		t.Fatalf("the vmm's pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("the vmm's pid %q: %v", b, err)
	}
	if argv, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); err != nil || !strings.Contains(string(argv), dir) {
		t.Fatalf("pid %d is not the sandbox's vmm (%v)", pid, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
}
