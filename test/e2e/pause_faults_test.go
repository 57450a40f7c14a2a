package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
