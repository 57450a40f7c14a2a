package vmmtest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/wrennhq/wrenn/internal/vmm"
)

// Snapshot cases run only for drivers whose Machine implements vmm.Snapshotter and
// whose Driver implements vmm.Restorer; otherwise they skip and say which capability
// is missing.

func (s *suite) snapshotter(t *testing.T, d vmm.Driver, m vmm.Machine) vmm.Snapshotter {
	t.Helper()
	sn, ok := m.(vmm.Snapshotter)
	if !ok {
		t.Skipf("driver %s: its Machine (%T) does not implement vmm.Snapshotter", d.Name(), m)
	}
	return sn
}

// skipWithoutSnapshots skips before booting anything when an earlier case found
// that this driver's machines cannot snapshot.
func (s *suite) skipWithoutSnapshots(t *testing.T) {
	t.Helper()
	if s.noSnapshots != "" {
		t.Skip(s.noSnapshots)
	}
}

func restorer(t *testing.T, d vmm.Driver) vmm.Restorer {
	t.Helper()
	r, ok := d.(vmm.Restorer)
	if !ok {
		t.Skipf("driver %s (%T) does not implement vmm.Restorer", d.Name(), d)
	}
	return r
}

// takeSnapshot starts a VM, pauses it and snapshots it fully into a fresh directory.
func (s *suite) takeSnapshot(t *testing.T, d vmm.Driver) (vmm.Config, vmm.Machine, *vmm.Snapshot) {
	t.Helper()
	cfg := s.config(t)
	m := s.start(t, d, cfg)
	sn := s.snapshotter(t, d, m)
	ctx := s.ctx(t)
	if err := m.Pause(ctx); err != nil {
		t.Fatalf("pause: %v", err)
	}
	snap, err := sn.Snapshot(ctx, vmm.SnapshotOptions{Dir: t.TempDir(), Kind: vmm.SnapshotFull})
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return cfg, m, snap
}

// checkSnapshot checks a snapshot's description against its directory.
func checkSnapshot(t *testing.T, d vmm.Driver, cfg vmm.Config, snap *vmm.Snapshot, kind vmm.SnapshotKind) {
	t.Helper()
	onDisk, err := vmm.ReadSnapshotMeta(snap.Dir)
	if err != nil {
		t.Fatalf("snapshot dir has no readable meta: %v", err)
	}
	meta := snap.Meta
	if onDisk.VMM != meta.VMM || onDisk.VMMVersion != meta.VMMVersion || len(onDisk.Files) != len(meta.Files) {
		t.Errorf("meta on disk %+v differs from the returned one %+v", onDisk, meta)
	}
	if meta.Format != vmm.SnapshotMetaFormat || meta.VMM != d.Name() || meta.VMMVersion == "" || meta.Kind != kind {
		t.Errorf("meta format %d vmm %q version %q kind %q; want %d %q, a version, %q",
			meta.Format, meta.VMM, meta.VMMVersion, meta.Kind, vmm.SnapshotMetaFormat, d.Name(), kind)
	}
	if meta.VCPUs != cfg.VCPUs || meta.MemoryMiB != cfg.MemoryMiB {
		t.Errorf("meta vcpus %d memory %d, vm has %d %d", meta.VCPUs, meta.MemoryMiB, cfg.VCPUs, cfg.MemoryMiB)
	}
	if want, _ := vmm.FileSHA256(cfg.Kernel); meta.KernelSHA256 != want {
		t.Errorf("meta kernel sha256 %q, want %q", meta.KernelSHA256, want)
	}
	if want, _ := vmm.FileSHA256(cfg.Initrd); meta.InitrdSHA256 != want {
		t.Errorf("meta initrd sha256 %q, want %q", meta.InitrdSHA256, want)
	}
	if _, ok := snap.File(vmm.FileMemory); !ok {
		t.Error("snapshot lists no memory file")
	}
	for _, f := range meta.Files {
		fi, err := os.Stat(filepath.Join(snap.Dir, f.Name))
		if err != nil || fi.Size() != f.Size {
			t.Errorf("snapshot file %s (%s): listed size %d, on disk %v", f.Name, f.Role, f.Size, err)
		}
	}
}

func (s *suite) snapshot(t *testing.T) {
	s.skipWithoutSnapshots(t)
	d := s.h.New(t)
	cfg := s.config(t)
	m := s.start(t, d, cfg)
	sn := s.snapshotter(t, d, m)
	ctx := s.ctx(t)
	dir := t.TempDir()
	if _, err := sn.Snapshot(ctx, vmm.SnapshotOptions{Dir: dir}); !errors.Is(err, vmm.ErrNotPaused) {
		t.Errorf("snapshot of a running vm: %v, want ErrNotPaused", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused snapshot left files: %v", entries)
	}
	if err := m.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	snap, err := sn.Snapshot(ctx, vmm.SnapshotOptions{Dir: dir}) // Kind "" = full
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	checkSnapshot(t, d, cfg, snap, vmm.SnapshotFull)
	s.wantStatus(t, m, "paused") // snapshotting leaves the vm paused
	if err := m.Resume(ctx); err != nil {
		t.Fatalf("resume after snapshot: %v", err)
	}
	s.wantStatus(t, m, "running")
}

func (s *suite) snapshotDiff(t *testing.T) {
	s.skipWithoutSnapshots(t)
	d := s.h.New(t)
	cfg, m, full := s.takeSnapshot(t, d)
	sn := m.(vmm.Snapshotter)
	ctx := s.ctx(t)
	if err := m.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	diff, err := sn.Snapshot(ctx, vmm.SnapshotOptions{Dir: t.TempDir(), Kind: vmm.SnapshotDiff, Parent: full.Dir})
	if errors.Is(err, vmm.ErrUnsupported) {
		t.Skipf("driver %s takes no diff snapshots: %v", d.Name(), err)
	}
	if err != nil {
		t.Fatalf("diff snapshot: %v", err)
	}
	checkSnapshot(t, d, cfg, diff, vmm.SnapshotDiff)
	if diff.Meta.Parent != full.Dir {
		t.Errorf("diff parent %q, want %q", diff.Meta.Parent, full.Dir)
	}
}

// restore checks that a snapshot restores paused, runs after Resume, can be restored
// more than once (clones) and is not modified by restoring.
func (s *suite) restore(t *testing.T) {
	d := s.h.New(t)
	r := restorer(t, d)
	s.skipWithoutSnapshots(t)
	cfg, m, snap := s.takeSnapshot(t, d)
	ctx := s.ctx(t)
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	mem, _ := snap.File(vmm.FileMemory)
	before, err := vmm.FileSHA256(filepath.Join(snap.Dir, mem.Name))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		clone := s.config(t)
		clone.Kernel, clone.Initrd, clone.VCPUs, clone.MemoryMiB = cfg.Kernel, cfg.Initrd, cfg.VCPUs, cfg.MemoryMiB
		c, err := r.Restore(ctx, clone, snap.Dir)
		if err != nil {
			t.Fatalf("restore %d: %v", i+1, err)
		}
		s.stopAtEnd(t, c)
		s.wantStatus(t, c, "paused")
		if err := c.Resume(ctx); err != nil {
			t.Fatalf("resume restored vm %d: %v", i+1, err)
		}
		if s.h.Ready != nil {
			s.h.Ready(t, c)
		}
		s.wantStatus(t, c, "running")
	}
	if after, _ := vmm.FileSHA256(filepath.Join(snap.Dir, mem.Name)); after != before {
		t.Error("restoring modified the snapshot's memory file")
	}
}

func (s *suite) restoreIncompatible(t *testing.T) {
	d := s.h.New(t)
	r := restorer(t, d)
	s.skipWithoutSnapshots(t)
	cfg, m, snap := s.takeSnapshot(t, d)
	if err := m.Stop(s.ctx(t)); err != nil {
		t.Fatal(err)
	}
	bad := snap.Meta
	bad.VMMVersion += "-other"
	if err := vmm.WriteSnapshotMeta(snap.Dir, bad); err != nil {
		t.Fatal(err)
	}
	clone := s.config(t)
	clone.Kernel, clone.Initrd, clone.VCPUs, clone.MemoryMiB = cfg.Kernel, cfg.Initrd, cfg.VCPUs, cfg.MemoryMiB
	c, err := r.Restore(s.ctx(t), clone, snap.Dir)
	if err == nil {
		s.stopAtEnd(t, c)
		t.Fatal("restore of a snapshot from another vmm version succeeded")
	}
	if !errors.Is(err, vmm.ErrIncompatibleSnapshot) {
		t.Errorf("restore error %v does not match ErrIncompatibleSnapshot", err)
	}
	t.Logf("refused: %v", err)
	s.assertNoProcesses(t, clone.Dir)
}

// sameShape makes a config for a VM restored from a snapshot of cfg: its own ID, Dir
// (and so console, sockets), the snapshot's kernel, initrd and size.
func (s *suite) sameShape(t *testing.T, cfg vmm.Config) vmm.Config {
	t.Helper()
	clone := s.config(t)
	clone.Kernel, clone.Initrd, clone.VCPUs, clone.MemoryMiB = cfg.Kernel, cfg.Initrd, cfg.VCPUs, cfg.MemoryMiB
	return clone
}

func (s *suite) memorySHA256(t *testing.T, snap *vmm.Snapshot) string {
	t.Helper()
	mem, ok := snap.File(vmm.FileMemory)
	if !ok {
		t.Fatal("snapshot lists no memory file")
	}
	sum, err := vmm.FileSHA256(filepath.Join(snap.Dir, mem.Name))
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// resumeRestored resumes a restored VM and waits for its guest to run.
func (s *suite) resumeRestored(t *testing.T, c vmm.Machine) {
	t.Helper()
	s.wantStatus(t, c, "paused")
	if err := c.Resume(s.ctx(t)); err != nil {
		t.Fatalf("resume restored vm: %v", err)
	}
	if s.h.Ready != nil {
		s.h.Ready(t, c)
	}
	s.wantStatus(t, c, "running")
}

// snapshotDetached: a detached snapshot stays valid while its VM runs on, and
// restoring it leaves it as it was.
func (s *suite) snapshotDetached(t *testing.T) {
	d := s.h.New(t)
	r := restorer(t, d)
	s.skipWithoutSnapshots(t)
	cfg := s.config(t)
	m := s.start(t, d, cfg)
	sn := s.snapshotter(t, d, m)
	ctx := s.ctx(t)
	if err := m.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	snap, err := sn.Snapshot(ctx, vmm.SnapshotOptions{Dir: t.TempDir(), Detached: true})
	if err != nil {
		t.Fatalf("detached snapshot: %v", err)
	}
	checkSnapshot(t, d, cfg, snap, vmm.SnapshotFull)
	before := s.memorySHA256(t, snap)
	if err := m.Resume(ctx); err != nil {
		t.Fatalf("resume after detached snapshot: %v", err)
	}
	if s.h.Ready != nil {
		s.h.Ready(t, m) // the guest runs and writes its memory
	}
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := vmm.ReadSnapshotMeta(snap.Dir); err != nil {
		t.Fatalf("detached snapshot gone after its vm ran on: %v", err)
	}
	if after := s.memorySHA256(t, snap); after != before {
		t.Fatal("the vm running on changed its detached snapshot's memory")
	}
	c, err := r.Restore(ctx, s.sameShape(t, cfg), snap.Dir)
	if err != nil {
		t.Fatalf("restore detached snapshot: %v", err)
	}
	s.stopAtEnd(t, c)
	s.resumeRestored(t, c)
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if after := s.memorySHA256(t, snap); after != before {
		t.Error("restoring changed the detached snapshot's memory")
	}
}

// pauseResumeCycles is the agent's pause and resume of one sandbox, several times:
// Pause → Snapshot into a directory of the sandbox → Stop, then Restore into the
// sandbox's own Dir → Resume. One cycle snapshots through a machine adopted by a
// second driver (an agent restart). Once the restored VM runs, its pause snapshot is
// withdrawn: restoring it again would load memory that moved on.
func (s *suite) pauseResumeCycles(t *testing.T) {
	d := s.h.New(t)
	r := restorer(t, d)
	s.skipWithoutSnapshots(t)
	cfg := s.config(t)
	m := s.start(t, d, cfg)
	s.snapshotter(t, d, m)
	ctx := s.ctx(t)
	var prev string
	for i := 1; i <= 3; i++ {
		if i == 2 {
			adopted, err := s.h.New(t).Adopt(ctx, cfg.Dir)
			if err != nil {
				t.Fatalf("cycle %d: adopt: %v", i, err)
			}
			m = adopted
		}
		if err := m.Pause(ctx); err != nil {
			t.Fatalf("cycle %d: pause: %v", i, err)
		}
		dir := filepath.Join(cfg.Dir, fmt.Sprintf("snapshot-%d", i))
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		snap, err := m.(vmm.Snapshotter).Snapshot(ctx, vmm.SnapshotOptions{Dir: dir, Kind: vmm.SnapshotFull})
		if err != nil {
			t.Fatalf("cycle %d: snapshot: %v", i, err)
		}
		checkSnapshot(t, d, cfg, snap, vmm.SnapshotFull)
		if err := m.Stop(ctx); err != nil {
			t.Fatalf("cycle %d: stop: %v", i, err)
		}
		s.assertNoProcesses(t, cfg.Dir)
		c, err := r.Restore(ctx, cfg, dir)
		if err != nil {
			t.Fatalf("cycle %d: restore into the vm's own dir: %v", i, err)
		}
		s.stopAtEnd(t, c)
		s.resumeRestored(t, c)
		if _, err := vmm.ReadSnapshotMeta(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("cycle %d: pause snapshot still restorable after its vm ran again (%v)", i, err)
		}
		if prev != "" {
			if c2, err := r.Restore(ctx, s.sameShape(t, cfg), prev); err == nil {
				s.stopAtEnd(t, c2)
				t.Errorf("cycle %d: restored the withdrawn snapshot %s", i, prev)
			}
		}
		prev = dir
		m = c
	}
}

// restoreTruncatedState: a restore from a snapshot whose state file was cut short
// fails, leaves nothing running and does not touch the snapshot; with the file put
// back the same snapshot restores. It restores into the VM's own Dir, as a sandbox
// resuming its pause does.
func (s *suite) restoreTruncatedState(t *testing.T) {
	d := s.h.New(t)
	r := restorer(t, d)
	s.skipWithoutSnapshots(t)
	cfg, m, snap := s.takeSnapshot(t, d)
	ctx := s.ctx(t)
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	st, ok := snap.File(vmm.FileState)
	if !ok {
		t.Skip("snapshot has no separate state file")
	}
	statePath := filepath.Join(snap.Dir, st.Name)
	good, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	memBefore := s.memorySHA256(t, snap)
	for _, bad := range [][]byte{good[:len(good)/2], append(append([]byte{}, good[:len(good)-1]...), good[len(good)-1]^0xff)} {
		if err := os.WriteFile(statePath, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := r.Restore(ctx, cfg, snap.Dir)
		if err == nil {
			s.stopAtEnd(t, c)
			t.Fatalf("restore with a damaged state file (%d of %d bytes) succeeded", len(bad), len(good))
		}
		t.Logf("refused: %v", err)
		s.assertNoProcesses(t, cfg.Dir)
		if got, _ := os.ReadFile(statePath); string(got) != string(bad) {
			t.Error("the failed restore modified the state file")
		}
		if _, err := vmm.ReadSnapshotMeta(snap.Dir); err != nil {
			t.Errorf("the failed restore removed the snapshot's meta: %v", err)
		}
		if s.memorySHA256(t, snap) != memBefore {
			t.Error("the failed restore modified the snapshot's memory")
		}
	}
	if err := os.WriteFile(statePath, good, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := r.Restore(ctx, cfg, snap.Dir)
	if err != nil {
		t.Fatalf("restore with the state file put back: %v", err)
	}
	s.stopAtEnd(t, c)
	s.resumeRestored(t, c)
}
