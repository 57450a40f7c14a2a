package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/agent"
	"github.com/wrennhq/wrenn/internal/agent/agenttest"
	"github.com/wrennhq/wrenn/internal/vmm"
)

// warmSnapshotDir is where the fake driver's warm snapshot of the base template in the
// default shape lives.
func warmSnapshotDir(a *agenttest.Agent) string {
	return filepath.Join(a.Dir, "images", agenttest.Template, "warm", agenttest.DriverName+"-1c-512m")
}

func waitWarm(t *testing.T, a *agenttest.Agent) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := vmm.ReadSnapshotMeta(filepath.Join(warmSnapshotDir(a), "snapshot")); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no warm snapshot 20 s after the first create")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The first create of a shape boots and builds the warm snapshot in the background;
// later ones restore it. A warm snapshot that does not restore is dropped and the
// create boots instead: it never fails a create.
func TestWarmStart(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{Config: agent.Config{WarmStart: true}})
	ctx := context.Background()
	create := func() (string, agent.Timings) {
		t.Helper()
		info, _, tm, err := a.Manager.Create(ctx, agent.Spec{Template: agenttest.Template})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := run(t, a, info.Spec.ID, "true"); err != nil {
			t.Fatalf("exec in a new sandbox (restored %v): %v", tm.Restored, err)
		}
		return info.Spec.ID, tm
	}
	if _, tm := create(); tm.Restored {
		t.Fatal("the first create restored: there was no warm snapshot yet")
	}
	waitWarm(t, a)
	if a.Slots.InUse() != 1 {
		t.Errorf("%d slots in use after the warm build, want the one sandbox's", a.Slots.InUse())
	}
	if _, tm := create(); !tm.Restored {
		t.Error("the second create booted although a warm snapshot was ready")
	}
	// A broken warm snapshot: the create boots, the snapshot is dropped and rebuilt.
	if err := os.Remove(filepath.Join(warmSnapshotDir(a), "snapshot", "state")); err != nil {
		t.Fatal(err)
	}
	if _, tm := create(); tm.Restored {
		t.Error("a create restored a warm snapshot without its state file")
	}
	waitWarm(t, a)
	if _, tm := create(); !tm.Restored {
		t.Error("no restore after the warm snapshot was rebuilt")
	}
	for _, id := range a.SandboxIDs() {
		if err := a.Manager.Destroy(ctx, id); err != nil {
			t.Error(err)
		}
	}
	if n := a.Slots.InUse(); n != 0 {
		t.Errorf("%d slots in use after destroying every sandbox", n)
	}
}
