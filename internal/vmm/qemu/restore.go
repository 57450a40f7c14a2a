package qemu

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/wrennhq/wrenn/internal/rootfs"
	"github.com/wrennhq/wrenn/internal/vmm"
)

// Restore starts a VM from a snapshot: it checks the snapshot against cfg and this
// host before starting anything (vmm.ErrIncompatibleSnapshot), puts the snapshot's
// memory in place as cfg.Dir/memory — the very file when it already is (the sandbox
// resuming its own pause), else a reflink or sparse copy — starts QEMU with
// -incoming defer and feeds it the device state. The VM comes up paused. On failure
// QEMU is gone, a memory copy made for it is removed, and the snapshot is as it was.
func (d *Driver) Restore(ctx context.Context, cfg vmm.Config, snapshotDir string) (vmm.Machine, error) {
	m, err := d.restore(ctx, cfg, snapshotDir)
	if err != nil {
		return nil, fmt.Errorf("restore qemu %s from %s: %w", cfg.ID, snapshotDir, err)
	}
	return m, nil
}

func (d *Driver) restore(ctx context.Context, cfg vmm.Config, snapDir string) (*Machine, error) {
	snapDir, err := filepath.Abs(snapDir)
	if err != nil {
		return nil, err
	}
	meta, err := readSnapshot(snapDir)
	if err != nil {
		return nil, err
	}
	l, err := d.prepare(cfg, true)
	if err != nil {
		return nil, err
	}
	version, err := d.qemuVersion(ctx, l.bin)
	if err != nil {
		return nil, err
	}
	if err := vmm.CheckCompatible(meta, l.boot.meta(version)); err != nil {
		return nil, err
	}
	if meta.Kind != vmm.SnapshotFull {
		return nil, fmt.Errorf("%w: restoring %q snapshots", vmm.ErrUnsupported, meta.Kind)
	}
	stateFile, memPath, err := openSnapshotFiles(snapDir, meta)
	if err != nil {
		return nil, err
	}
	defer stateFile.Close()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	t0 := time.Now()
	inPlace, how, undo, err := placeMemory(memPath, l.s.memoryPath())
	if err != nil {
		return nil, fmt.Errorf("guest memory: %w", err)
	}
	if err := reserveMemory(l.s.memoryPath()); err != nil {
		undo()
		return nil, err
	}
	seedSmallFolios(d.log, l.s.memoryPath())
	tMem := time.Since(t0)
	var shared []string
	if inPlace {
		shared = []string{snapDir} // withdrawn when the restored guest first runs
	}
	m, p, err := d.spawn(ctx, l, shared)
	if err == nil && p.status != "inmigrate" {
		err = p.abort(fmt.Errorf("qemu status %q, want inmigrate", p.status))
	}
	if err == nil {
		if lerr := m.loadState(ctx, stateFile); lerr != nil {
			err = p.abort(fmt.Errorf("load device state %s: %w", stateFile.Name(), lerr))
		}
	}
	if err != nil {
		undo()
		return nil, err
	}
	m.timings.Running = time.Since(m.timings.Spawned)
	m.log.Info("qemu restored", "snapshot", snapDir, "memory", how, "memory_time", tMem,
		"qmp_ready", m.timings.QMPReady, "loaded", m.timings.Running)
	return m, nil
}

// readSnapshot reads a snapshot's meta, explaining a withdrawn pause snapshot.
func readSnapshot(dir string) (vmm.SnapshotMeta, error) {
	meta, err := vmm.ReadSnapshotMeta(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(filepath.Join(dir, withdrawnMetaName)); serr == nil {
			return meta, errors.New("it is a pause snapshot that was withdrawn: the vm sharing its memory ran again after it was taken")
		}
	}
	return meta, err
}

// openSnapshotFiles checks the snapshot's files against its meta — the state file's
// size and digest, the memory file's size — and opens the state file for QEMU, so
// that the bytes checked are the bytes loaded. A truncated, replaced or corrupt
// file is an error naming it, found before QEMU starts.
func openSnapshotFiles(dir string, meta vmm.SnapshotMeta) (*os.File, string, error) {
	var state, mem *vmm.SnapshotFile
	for i := range meta.Files {
		switch meta.Files[i].Role {
		case vmm.FileState:
			state = &meta.Files[i]
		case vmm.FileMemory:
			mem = &meta.Files[i]
		}
	}
	if state == nil || mem == nil {
		return nil, "", errors.New("snapshot meta lists no state or no memory file")
	}
	for _, f := range []*vmm.SnapshotFile{state, mem} {
		if f.Name == "" || f.Name == "." || f.Name == ".." || filepath.Base(f.Name) != f.Name {
			return nil, "", fmt.Errorf("snapshot meta names its %s file %q: not a plain file name", f.Role, f.Name)
		}
	}
	memPath := filepath.Join(dir, mem.Name)
	mi, err := os.Stat(memPath)
	if err != nil {
		return nil, "", fmt.Errorf("memory file: %w", err)
	}
	if want := int64(meta.MemoryMiB) << 20; mi.Size() != mem.Size || mi.Size() != want {
		return nil, "", fmt.Errorf("memory file %s is %d bytes, the snapshot's meta says %d (%d MiB): truncated or replaced", memPath, mi.Size(), mem.Size, meta.MemoryMiB)
	}
	f, err := os.Open(filepath.Join(dir, state.Name))
	if err != nil {
		return nil, "", fmt.Errorf("state file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, "", fmt.Errorf("state file: %w", err)
	}
	if fi.Size() != state.Size {
		f.Close()
		return nil, "", fmt.Errorf("state file %s is %d bytes, the snapshot's meta says %d: truncated or replaced", f.Name(), fi.Size(), state.Size)
	}
	if state.SHA256 != "" {
		sum, err := sectionSHA256(f, fi.Size())
		if err != nil {
			f.Close()
			return nil, "", fmt.Errorf("state file: %w", err)
		}
		if sum != state.SHA256 {
			f.Close()
			return nil, "", fmt.Errorf("state file %s has sha256 %s, the snapshot's meta says %s: corrupt", f.Name(), sum, state.SHA256)
		}
	}
	return f, memPath, nil
}

// placeMemory makes dst (the new VM's memory file) hold the snapshot's memory src.
// When dst already is src (same inode: the pause snapshot of the VM that last ran in
// this Dir) it is used in place: no copy, and the VM writes the snapshot's memory
// from its first resume on. Otherwise a stale dst is unlinked (never truncated: a
// snapshot may share it) and src is copied with rootfs.CloneWith (a reflink, else a
// sparse copy skipping holes and zero pages), so src is never written. undo removes
// what placeMemory made.
func placeMemory(src, dst string) (inPlace bool, how string, undo func(), err error) {
	if sameFile(src, dst) {
		return true, "in place", func() {}, nil
	}
	if err := os.Remove(dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, "", nil, err
	}
	// Page-sized writes: the copy's page cache is what QEMU maps (seedSmallFolios).
	method, err := rootfs.CloneWith(src, dst, rootfs.CloneOptions{PageWrites: true})
	if err != nil {
		return false, "", nil, err
	}
	return false, string(method), func() { os.Remove(dst) }, nil
}
