package agenttest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/wrennhq/wrenn/internal/vmm"
)

// The fake driver's snapshots: a named stand-in for memory snapshots, which only a real
// VMM can take (test/e2e and the qemu package test those). A "VM" is an envd process
// whose files live in its Dir/guest, so what a sandbox wrote survives a pause; what it
// held only in memory (a running process) does not. A snapshot is its meta and a state
// file naming the guest dir; a restore starts a new envd on the new slot.

// fakeVersion is the fake VMM's snapshot format version.
const fakeVersion = "fake-1"

type fakeState struct {
	GuestDir string `json:"guest_dir"`
}

// Snapshot writes the paused machine's snapshot into opts.Dir.
func (m *machine) Snapshot(_ context.Context, opts vmm.SnapshotOptions) (*vmm.Snapshot, error) {
	m.mu.Lock()
	paused := m.paused
	m.mu.Unlock()
	if !paused {
		return nil, vmm.ErrNotPaused
	}
	if opts.Kind == vmm.SnapshotDiff {
		return nil, vmm.ErrUnsupported
	}
	b, err := json.Marshal(fakeState{GuestDir: m.guestDir})
	if err != nil {
		return nil, err
	}
	state := filepath.Join(opts.Dir, "state")
	if err := os.WriteFile(state, b, 0o600); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	meta := vmm.SnapshotMeta{VMM: DriverName, VMMVersion: fakeVersion, Kind: vmm.SnapshotFull,
		VCPUs: m.cfg.VCPUs, MemoryMiB: m.cfg.MemoryMiB, CreatedAt: time.Now(),
		Files: []vmm.SnapshotFile{{Role: vmm.FileState, Name: "state", Size: int64(len(b))}}}
	if err := vmm.WriteSnapshotMeta(opts.Dir, meta); err != nil {
		os.Remove(state)
		return nil, err
	}
	return &vmm.Snapshot{Dir: opts.Dir, Meta: meta}, nil
}

// Restore starts envd for a snapshot's sandbox on cfg's slot, paused. OnStart runs
// first, as for Start, so tests fail restores the same way.
func (d *Driver) Restore(ctx context.Context, cfg vmm.Config, snapshotDir string) (vmm.Machine, error) {
	meta, err := vmm.ReadSnapshotMeta(snapshotDir)
	if err != nil {
		return nil, err
	}
	if meta.VMM != DriverName || meta.VMMVersion != fakeVersion || meta.VCPUs != cfg.VCPUs || meta.MemoryMiB != cfg.MemoryMiB {
		return nil, fmt.Errorf("%w: %s %s, %d vcpus, %d MiB", vmm.ErrIncompatibleSnapshot, meta.VMM, meta.VMMVersion, meta.VCPUs, meta.MemoryMiB)
	}
	b, err := os.ReadFile(filepath.Join(snapshotDir, "state"))
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	var st fakeState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("restore: corrupt state file: %w", err)
	}
	if onStart, _ := d.hooks(); onStart != nil {
		if err := onStart(ctx, cfg); err != nil {
			return nil, err
		}
	}
	m, err := d.launch(cfg)
	if err != nil {
		return nil, err
	}
	if err := m.signal(syscall.SIGSTOP, true); err != nil {
		_ = m.Stop(ctx)
		return nil, err
	}
	return m, nil
}
