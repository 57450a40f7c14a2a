package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/internal/testutil"
	"github.com/wrennhq/wrenn/internal/vmm"
)

// Creates restore their template's warm snapshot: the agent builds the default
// shape's when it starts, and the first create of another shape boots and builds
// that shape's; creates of a shape with a warm snapshot restore it, much faster, and
// every clone is its own sandbox from the first instant — hostname, random bytes, files.
func TestWarmStartClones(t *testing.T) {
	needVM(t)
	// The test dir outlives a run (its template is cached), and so would a warm
	// snapshot an earlier run built: start from none.
	warmRoot := filepath.Join(env.dir, "images", "base", "warm")
	if err := os.RemoveAll(warmRoot); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, freeAddr(t), "WRENN_AGENT_WARM_START=true")
	warm := filepath.Join(warmRoot, "qemu-1c-512m", "snapshot")
	testutil.WaitFor(t, 3*time.Minute, "the agent to build the default shape's warm snapshot", func() bool {
		_, err := vmm.ReadSnapshotMeta(warm)
		return err == nil
	})
	first := create(t, a.client, &pb.CreateSandboxRequest{MemoryMb: 640})
	if first.GetTimings().GetRestored() {
		t.Fatal("the first create of a shape restored: no warm snapshot of it can exist yet")
	}
	cold := time.Duration(first.GetTimings().GetTotalUs()) * time.Microsecond

	clones := make([]*pb.CreateSandboxResponse, 3)
	for i := range clones {
		clones[i] = create(t, a.client, &pb.CreateSandboxRequest{})
		if !clones[i].GetTimings().GetRestored() {
			t.Fatalf("clone %d booted although the warm snapshot is ready", i)
		}
	}
	restored := time.Duration(clones[1].GetTimings().GetTotalUs()) * time.Microsecond
	t.Logf("create: cold boot %v, restored %v (%.1fx)", cold, restored, float64(cold)/float64(restored))

	seen := map[string]string{}
	for i, c := range clones {
		id := c.GetSandbox().GetId()
		// Random bytes first thing: a clone must not share its CRNG with its siblings.
		out := strings.Fields(string(execIn(t, a.client, id, "od -An -tx1 -N16 /dev/urandom | tr -d ' \\n'; echo; hostname").GetStdout()))
		if len(out) != 2 {
			t.Fatalf("clone %d: %q", i, out)
		}
		if out[1] != id {
			t.Errorf("clone %s answers as %q", id, out[1])
		}
		if other, dup := seen[out[0]]; dup {
			t.Errorf("clones %s and %s read the same random bytes %s", other, id, out[0])
		}
		seen[out[0]] = id
	}
	execIn(t, a.client, clones[0].GetSandbox().GetId(), "echo mine > /home/user/only-here")
	for _, c := range clones[1:] {
		if out := string(execIn(t, a.client, c.GetSandbox().GetId(), "ls /home/user/only-here 2>/dev/null || echo absent").GetStdout()); out != "absent\n" {
			t.Errorf("a file written in one clone shows in %s: %q", c.GetSandbox().GetId(), out)
		}
	}
}
