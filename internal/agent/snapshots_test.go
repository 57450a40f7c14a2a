package agent_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/wrennhq/wrenn/internal/agent"
	"github.com/wrennhq/wrenn/internal/agent/agenttest"
	"github.com/wrennhq/wrenn/internal/lifecycle"
)

// Named snapshots on the fake driver: the manager's side of them (files, names,
// overwrite, shapes, what a delete leaves); what a real VM's clones keep is test/e2e's.

func TestSnapshotToSandboxes(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	ctx := context.Background()
	src, _, _, err := a.Manager.Create(ctx, agent.Spec{Template: agenttest.Template, VCPUs: 2, MemoryMiB: 256})
	if err != nil {
		t.Fatal(err)
	}
	id := src.Spec.ID
	snap, took, err := a.Manager.CreateSnapshot(ctx, id, "prepared", false)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Name != "prepared" || snap.SandboxID != id || snap.Template != agenttest.Template || snap.VCPUs != 2 || snap.MemoryMiB != 256 || snap.SizeBytes <= 0 || took <= 0 {
		t.Errorf("snapshot: %+v in %v", snap, took)
	}
	// The source ran on: same state, still answering.
	if info, _ := a.Manager.Get(id); info.State != lifecycle.Running {
		t.Errorf("source after its snapshot: %s", info.State)
	}
	if _, err := run(t, a, id, "true"); err != nil {
		t.Errorf("exec in the source after its snapshot: %v", err)
	}

	var made []string
	for range 3 {
		info, _, tm, err := a.Manager.Create(ctx, agent.Spec{Snapshot: "prepared"})
		if err != nil {
			t.Fatal(err)
		}
		if !tm.Restored || info.Spec.Snapshot != "prepared" || info.Spec.Template != agenttest.Template || info.Spec.VCPUs != 2 || info.Spec.MemoryMiB != 256 {
			t.Errorf("sandbox from a snapshot: %+v restored=%v", info.Spec, tm.Restored)
		}
		made = append(made, info.Spec.ID)
	}
	list, err := a.Manager.ListSnapshots()
	if err != nil || len(list) != 1 || list[0].Name != "prepared" || list[0].SizeBytes <= 0 {
		t.Fatalf("list: %+v %v", list, err)
	}

	// A taken name is refused without overwrite, and replaced with it — here from
	// the source paused, which stays paused.
	if _, _, err := a.Manager.CreateSnapshot(ctx, id, "prepared", false); !errors.Is(err, agent.ErrSnapshotExists) {
		t.Errorf("second snapshot under a taken name: %v, want ErrSnapshotExists", err)
	}
	if _, _, err := a.Manager.Pause(ctx, id); err != nil {
		t.Fatal(err)
	}
	again, _, err := a.Manager.CreateSnapshot(ctx, id, "prepared", true)
	if err != nil {
		t.Fatal(err)
	}
	if !again.CreatedAt.After(snap.CreatedAt) {
		t.Errorf("overwrite kept the old snapshot: %v, then %v", snap.CreatedAt, again.CreatedAt)
	}
	if info, _ := a.Manager.Get(id); info.State != lifecycle.Paused {
		t.Errorf("a paused source after its snapshot: %s", info.State)
	}
	if _, _, _, err := a.Manager.Resume(ctx, id, 0); err != nil {
		t.Errorf("resume the source after its snapshot: %v", err)
	}
	if _, _, _, err := a.Manager.Create(ctx, agent.Spec{Snapshot: "prepared"}); err != nil {
		t.Errorf("create from the overwritten snapshot: %v", err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(a.Dir, "snapshots", ".*"))
	if len(leftovers) != 0 {
		t.Errorf("work dirs left: %v", leftovers)
	}

	// Deleting the snapshot leaves its sandboxes running; creates from it are refused.
	if err := a.Manager.DeleteSnapshot("prepared"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(a.Dir, "snapshots", "prepared")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("files of a deleted snapshot: %v", err)
	}
	for _, sid := range made {
		if _, err := run(t, a, sid, "true"); err != nil {
			t.Errorf("sandbox %s after its snapshot was deleted: %v", sid, err)
		}
	}
	if _, _, _, err := a.Manager.Create(ctx, agent.Spec{Snapshot: "prepared"}); !errors.Is(err, agent.ErrInvalid) {
		t.Errorf("create from a deleted snapshot: %v, want ErrInvalid", err)
	}
	if err := a.Manager.DeleteSnapshot("prepared"); !errors.Is(err, agent.ErrSnapshotNotFound) {
		t.Errorf("delete twice: %v, want ErrSnapshotNotFound", err)
	}
}

func TestSnapshotRefusals(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	ctx := context.Background()
	id := create(t, a).Spec.ID
	for _, name := range []string{"", "../escape", "Upper", "a/b", ".hidden", "x" + string(make([]byte, 70))} {
		if _, _, err := a.Manager.CreateSnapshot(ctx, id, name, false); !errors.Is(err, agent.ErrInvalid) {
			t.Errorf("snapshot named %q: %v, want ErrInvalid", name, err)
		}
		if _, _, _, err := a.Manager.Create(ctx, agent.Spec{Snapshot: name}); name != "" && !errors.Is(err, agent.ErrInvalid) {
			t.Errorf("create from snapshot %q: %v, want ErrInvalid", name, err)
		}
	}
	if _, _, err := a.Manager.CreateSnapshot(ctx, "sb000000000000000000", "s", false); !errors.Is(err, agent.ErrNotFound) {
		t.Errorf("snapshot of a missing sandbox: %v", err)
	}
	if _, _, err := a.Manager.CreateSnapshot(ctx, id, "s", false); err != nil {
		t.Fatal(err)
	}
	// Its shape is the snapshot's: asking for another is an error, not ignored.
	for _, spec := range []agent.Spec{
		{Snapshot: "s", VCPUs: 2}, {Snapshot: "s", MemoryMiB: 1024}, {Snapshot: "s", DiskMiB: 4096}, {Snapshot: "s", Template: "other"},
	} {
		if _, _, _, err := a.Manager.Create(ctx, spec); !errors.Is(err, agent.ErrInvalid) {
			t.Errorf("create %+v: %v, want ErrInvalid", spec, err)
		}
	}
	if _, _, _, err := a.Manager.Create(ctx, agent.Spec{Snapshot: "s", VCPUs: 1, MemoryMiB: 512}); err != nil {
		t.Errorf("create restating the snapshot's shape: %v", err)
	}
	if err := a.Manager.Destroy(ctx, id); err != nil {
		t.Fatal(err)
	}
	// A snapshot outlives its source.
	if _, _, _, err := a.Manager.Create(ctx, agent.Spec{Snapshot: "s"}); err != nil {
		t.Errorf("create from a snapshot whose source is gone: %v", err)
	}
}

func TestRecoverRemovesUnfinishedSnapshots(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	ctx := context.Background()
	id := create(t, a).Spec.ID
	if _, _, err := a.Manager.CreateSnapshot(ctx, id, "kept", false); err != nil {
		t.Fatal(err)
	}
	half := filepath.Join(a.Dir, "snapshots", ".half.new-123")
	if err := os.MkdirAll(filepath.Join(half, "snapshot"), 0o700); err != nil {
		t.Fatal(err)
	}
	m, _ := restart(t, a, a.Dir, a.RecordKey)
	if _, err := os.Stat(half); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an interrupted snapshot build survived a restart: %v", err)
	}
	list, err := m.ListSnapshots()
	if err != nil || len(list) != 1 || list[0].Name != "kept" {
		t.Errorf("snapshots after a restart: %+v %v", list, err)
	}
}
