package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/internal/agent"
	"github.com/wrennhq/wrenn/internal/ident"
)

// The fault matrix for the agent: it is killed (-9) at every point between the steps
// of create, pause, resume, destroy and a named snapshot (agent.FaultPoints, where
// it stops until killed: no sleeps, no races), restarted, and must then hold the
// sandbox in a consistent state: a create or destroy caught half-way is gone with
// everything it had (VM, slot, cgroup, files), a pause, resume or snapshot caught
// half-way leaves a running or paused sandbox that works, with what was written to
// its disk and memory before, and a snapshot that is whole or not there at all. The
// run's leak check (TestMain) then finds nothing left.
func TestAgentKilledAtEveryFaultPoint(t *testing.T) {
	needVM(t)
	for _, point := range agent.FaultPoints {
		t.Run(strings.ReplaceAll(point, "/", "-"), func(t *testing.T) { killAt(t, point) })
	}
}

func killAt(t *testing.T, point string) {
	op, _, _ := strings.Cut(point, "/")
	addr := freeAddr(t)
	a := startAgent(t, addr, "WRENN_AGENT_FAULT_POINT="+point)
	id := faultSandbox(t, a, op)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := startOp(ctx, a, op, id)
	waitForLog(t, a, "fault point reached", done)
	a.kill9(t)
	cancel()
	<-done

	b := startAgent(t, addr)
	t.Cleanup(func() {
		_, _ = b.client.DestroySandbox(context.Background(), connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: id}))
	})
	got, err := b.client.GetSandbox(context.Background(), connect.NewRequest(&pb.GetSandboxRequest{SandboxId: id}))
	dir := filepath.Join(env.dir, "sandboxes", id)
	switch op {
	case "create", "destroy":
		if connect.CodeOf(err) != connect.CodeNotFound {
			t.Fatalf("a %s killed at %s: the sandbox is %v (%v) after the restart, want gone", op, point, got, err)
		}
		assertGone(t, dir, "")
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("its directory %s remains", dir)
		}
		// The host is usable: a sandbox of the same id can be made again.
		create(t, b.client, &pb.CreateSandboxRequest{SandboxId: id})
		execIn(t, b.client, id, "true")
	default:
		if err != nil {
			t.Fatalf("after the restart: %v", err)
		}
		state := got.Msg.GetSandbox().GetState()
		t.Logf("killed at %s: %s after the restart", point, state)
		switch state {
		case pb.SandboxState_SANDBOX_STATE_PAUSED:
			resume(t, b.client, id)
		case pb.SandboxState_SANDBOX_STATE_RUNNING:
		default:
			t.Fatalf("sandbox %s after the restart, want running or paused (%s)", state, got.Msg.GetSandbox().GetError())
		}
		checkKept(t, b, id)
		if op == "snapshot" {
			// Complete once published; before that the restarted agent removes its work.
			checkSnapshot(t, b, point == "snapshot/published")
		}
	}
	destroyLeavingNothing(t, b, id)
}

// destroyLeavingNothing destroys sandbox id, stops the agent and checks that no VM,
// directory or cgroup of the sandbox is left.
func destroyLeavingNothing(t *testing.T, a *agentProc, id string) {
	t.Helper()
	if _, err := a.client.DestroySandbox(context.Background(), connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: id})); err != nil {
		t.Fatal(err)
	}
	a.stop(t)
	assertGone(t, filepath.Join(env.dir, "sandboxes", id), "")
	for _, cg := range []string{"/sys/fs/cgroup/pids/wrenn/" + id, "/sys/fs/cgroup/wrenn/" + id} {
		if _, err := os.Stat(cg); err == nil {
			t.Errorf("cgroup %s outlived its sandbox", cg)
		}
	}
}

// faultSandbox readies the sandbox an op of the fault matrix acts on: for a create, an
// id; else a running sandbox with a file on its disk and one in its memory, paused
// for a resume.
func faultSandbox(t *testing.T, a *agentProc, op string) string {
	t.Helper()
	id := ident.NewSandboxID()
	if op != "create" {
		id = create(t, a.client, &pb.CreateSandboxRequest{SandboxId: id}).GetSandbox().GetId()
		execIn(t, a.client, id, "echo disk > /home/user/kept && sync && echo memory > /dev/shm/kept")
		if op == "resume" {
			pause(t, a.client, id)
		}
	}
	return id
}

// checkKept checks that what faultSandbox wrote is still there.
func checkKept(t *testing.T, a *agentProc, id string) {
	t.Helper()
	if out := string(execIn(t, a.client, id, "cat /home/user/kept /dev/shm/kept").GetStdout()); out != "disk\nmemory\n" {
		t.Errorf("what was written before the fault: %q, want disk and memory", out)
	}
}

// faultSnapshot is the named snapshot the fault matrix's snapshots make.
const faultSnapshot = "fault-matrix"

// checkSnapshot checks that the named snapshot an interrupted snapshot made exists
// (and a sandbox made from it holds what was written before) or is gone without a
// trace, as want says, and deletes it.
func checkSnapshot(t *testing.T, a *agentProc, want bool) {
	t.Helper()
	ctx := context.Background()
	list, err := a.client.ListSnapshots(ctx, connect.NewRequest(&pb.ListSnapshotsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	got := slices.ContainsFunc(list.Msg.GetSnapshots(), func(s *pb.SnapshotInfo) bool { return s.GetName() == faultSnapshot })
	if got != want {
		t.Fatalf("snapshot %s exists: %v, want %v", faultSnapshot, got, want)
	}
	if left, _ := filepath.Glob(filepath.Join(env.dir, "snapshots", "."+faultSnapshot+"*")); len(left) > 0 {
		t.Errorf("work files of the snapshot are left: %v", left)
	}
	if !want {
		return
	}
	clone := create(t, a.client, &pb.CreateSandboxRequest{Snapshot: faultSnapshot}).GetSandbox().GetId()
	checkKept(t, a, clone)
	if _, err := a.client.DestroySandbox(ctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: clone})); err != nil {
		t.Fatal(err)
	}
	if _, err := a.client.DeleteSnapshot(ctx, connect.NewRequest(&pb.DeleteSnapshotRequest{Name: faultSnapshot})); err != nil {
		t.Fatal(err)
	}
}

// startOp starts op (create, pause, resume, destroy or snapshot) of sandbox id; its error
// arrives on the channel when it ends.
func startOp(ctx context.Context, a *agentProc, op, id string) <-chan error {
	done := make(chan error, 1)
	go func() {
		var err error
		switch op {
		case "create":
			_, err = a.client.CreateSandbox(ctx, connect.NewRequest(&pb.CreateSandboxRequest{SandboxId: id}))
		case "pause":
			_, err = a.client.PauseSandbox(ctx, connect.NewRequest(&pb.PauseSandboxRequest{SandboxId: id}))
		case "resume":
			_, err = a.client.ResumeSandbox(ctx, connect.NewRequest(&pb.ResumeSandboxRequest{SandboxId: id}))
		case "destroy":
			_, err = a.client.DestroySandbox(ctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: id}))
		case "snapshot":
			_, err = a.client.CreateSnapshot(ctx, connect.NewRequest(&pb.CreateSnapshotRequest{SandboxId: id, Name: faultSnapshot}))
		}
		done <- err
	}()
	return done
}

// waitForLog waits until the agent's log holds line; an operation that ends first
// (it never reached its fault point) fails the test.
func waitForLog(t *testing.T, a *agentProc, line string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if b, _ := os.ReadFile(a.logPath); bytes.Contains(b, []byte(line)) {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("the operation ended (%v) without reaching its fault point", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no fault point reached in 3 minutes")
		}
	}
}
