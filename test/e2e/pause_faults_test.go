package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
)

// A resume from a truncated device-state file fails with a clear error and leaves the
// sandbox paused; with the file put back the same snapshot resumes, state intact.
func TestResumeWithBrokenSnapshot(t *testing.T) {
	needVM(t)
	a := startAgent(t, freeAddr(t))
	id := create(t, a.client, &pb.CreateSandboxRequest{}).GetSandbox().GetId()
	execIn(t, a.client, id, "echo before > /dev/shm/mem")
	pause(t, a.client, id)
	state := filepath.Join(env.dir, "sandboxes", id, "snapshot", "state")
	good, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(state, good[:len(good)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = a.client.ResumeSandbox(context.Background(), connect.NewRequest(&pb.ResumeSandboxRequest{SandboxId: id}))
	if err == nil || !strings.Contains(err.Error(), "state") {
		t.Fatalf("resume from a truncated state file: %v, want an error naming it", err)
	}
	got, err := a.client.GetSandbox(context.Background(), connect.NewRequest(&pb.GetSandboxRequest{SandboxId: id}))
	if err != nil || got.Msg.GetSandbox().GetState() != pb.SandboxState_SANDBOX_STATE_PAUSED {
		t.Fatalf("after the failed resume: %v %v, want paused", got, err)
	}
	if err := os.WriteFile(state, good, 0o600); err != nil {
		t.Fatal(err)
	}
	resume(t, a.client, id)
	if out := string(execIn(t, a.client, id, "cat /dev/shm/mem").GetStdout()); out != "before\n" {
		t.Errorf("memory after the retried resume: %q", out)
	}
}

// kill -9 of the agent in the middle of a pause, then of a resume: after a restart the
// sandbox is running or paused, and usable either way; nothing is left behind.
func TestAgentKilledMidPauseAndResume(t *testing.T) {
	needVM(t)
	addr := freeAddr(t)
	a := startAgent(t, addr)
	id := create(t, a.client, &pb.CreateSandboxRequest{}).GetSandbox().GetId()
	execIn(t, a.client, id, "echo kept > /dev/shm/mem")
	dir := filepath.Join(env.dir, "sandboxes", id)

	// killDuring starts call, kills the agent once mark appears (or after 5 s), and
	// returns the restarted agent and the sandbox's state in it.
	killDuring := func(a *agentProc, mark string, call func(c context.Context) error) (*agentProc, pb.SandboxState) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- call(ctx) }()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if _, err := os.Stat(filepath.Join(dir, mark)); err == nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
		a.kill9(t)
		cancel()
		<-done
		b := startAgent(t, addr)
		// Destroyed by the agent that runs last, even when the test fails half-way (a
		// sandbox left paused in the shared test dir would fail later tests).
		t.Cleanup(func() {
			_, _ = b.client.DestroySandbox(context.Background(), connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: id}))
		})
		got, err := b.client.GetSandbox(context.Background(), connect.NewRequest(&pb.GetSandboxRequest{SandboxId: id}))
		if err != nil {
			t.Fatalf("sandbox after the restart: %v\n%s", err, b.logs.String())
		}
		return b, got.Msg.GetSandbox().GetState()
	}
	usable := func(b *agentProc, state pb.SandboxState) {
		t.Helper()
		switch state {
		case pb.SandboxState_SANDBOX_STATE_PAUSED:
			resume(t, b.client, id)
		case pb.SandboxState_SANDBOX_STATE_RUNNING:
		default:
			t.Fatalf("sandbox %s after the restart, want running or paused\n%s", state, b.logs.String())
		}
		if out := string(execIn(t, b.client, id, "cat /dev/shm/mem").GetStdout()); out != "kept\n" {
			t.Errorf("memory after the restart (%s): %q", state, out)
		}
	}

	b, state := killDuring(a, "snapshot.new", func(ctx context.Context) error {
		_, err := a.client.PauseSandbox(ctx, connect.NewRequest(&pb.PauseSandboxRequest{SandboxId: id}))
		return err
	})
	t.Logf("killed mid-pause: %s after the restart", state)
	usable(b, state)

	pause(t, b.client, id)
	c, state := killDuring(b, "qemu.pid", func(ctx context.Context) error {
		_, err := b.client.ResumeSandbox(ctx, connect.NewRequest(&pb.ResumeSandboxRequest{SandboxId: id}))
		return err
	})
	t.Logf("killed mid-resume: %s after the restart", state)
	usable(c, state)

	if _, err := c.client.DestroySandbox(context.Background(), connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: id})); err != nil {
		t.Fatal(err)
	}
	c.stop(t)
	assertGone(t, dir, "")
	assertNoAgentSlots(t)
}
