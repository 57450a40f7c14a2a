package vmmtest

import (
	"errors"
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
