package firecracker

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/wrennhq/wrenn/internal/memfile"
	"github.com/wrennhq/wrenn/internal/uffd"
	"github.com/wrennhq/wrenn/internal/vmm"
)

// Restore starts a VM from a snapshot with its memory served lazily: a uffd handler
// listens on the VM's uffd.sock before the load, Firecracker hands it the guest
// regions during PUT /snapshot/load, and pages are copied in from the snapshot's
// memfile generations as the guest touches them (the previous run's touched pages
// prefetched in the background). MMDS data is put again (a load empties it). The VM
// comes up paused.
func (d *Driver) Restore(ctx context.Context, cfg vmm.Config, snapshotDir string) (vmm.Machine, error) {
	m, err := d.restore(ctx, cfg, snapshotDir)
	if err != nil {
		return nil, fmt.Errorf("restore firecracker %s from %s: %w", cfg.ID, snapshotDir, err)
	}
	return m, nil
}

func (d *Driver) restore(ctx context.Context, cfg vmm.Config, snapshotDir string) (*Machine, error) {
	if err := validate(cfg); err != nil {
		return nil, err
	}
	meta, err := vmm.ReadSnapshotMeta(snapshotDir)
	if err != nil {
		return nil, err
	}
	mem, err := memfile.Open(snapshotDir)
	if err != nil {
		return nil, err
	}
	if mem.Size() != int64(cfg.MemoryMiB)<<20 {
		mem.Close()
		return nil, fmt.Errorf("%w: memory holds %d bytes, the vm has %d MiB", vmm.ErrIncompatibleSnapshot, mem.Size(), cfg.MemoryMiB)
	}
	m, err := d.spawn(ctx, cfg, true)
	if err != nil {
		mem.Close()
		return nil, err
	}
	fail := func(err error) (*Machine, error) {
		m.kill()
		mem.Close()
		removeRuntime(cfg.Dir)
		return nil, fmt.Errorf("%w%s", err, m.consoleTail())
	}
	want, err := wantMeta(cfg, m.version)
	if err != nil {
		return fail(err)
	}
	if err := vmm.CheckCompatible(meta, want); err != nil {
		return fail(err)
	}
	if err := copyState(snapshotDir, cfg.Dir, meta); err != nil {
		return fail(err)
	}
	pager, err := uffd.Listen(filepath.Join(cfg.Dir, uffdSockName), mem, uffd.Options{
		Logger:   m.log,
		Prefetch: readPrefetch(snapshotDir),
		// A VM whose faults nobody serves hangs: end it instead.
		OnFailure: func(int, error) { go m.kill() },
	})
	if err != nil {
		return fail(err)
	}
	m.mu.Lock()
	m.pager, m.memory, m.parent = pager, mem, snapshotDir
	m.mu.Unlock()
	load := snapshotLoad{SnapshotPath: vmstateName, MemBackend: memBackend{BackendType: "Uffd", BackendPath: uffdSockName}, TrackDirtyPages: true}
	if cfg.Net != nil {
		load.NetworkOverrides = []networkOverride{{IfaceID: ifaceID, HostDevName: cfg.Net.TAP}}
	}
	start := time.Now()
	if err := m.api.do(ctx, "PUT", "/snapshot/load", load, nil); err != nil {
		return fail(err)
	}
	select {
	case <-pager.Ready():
	default:
		return fail(fmt.Errorf("snapshot loaded but firecracker never connected to the page handler"))
	}
	if err := m.putMetadata(ctx, cfg); err != nil {
		return fail(err)
	}
	m.log.Info("firecracker restored", "load", time.Since(start), "took", time.Since(m.started))
	return m, nil
}

// copyState copies the snapshot's small vm state file into the VM's Dir, where
// Firecracker (jailed or not) reads it by its stable name, and checks its digest; the
// snapshot stays as is.
func copyState(snapshotDir, dir string, meta vmm.SnapshotMeta) error {
	to := filepath.Join(dir, vmstateName)
	if err := copyFile(filepath.Join(snapshotDir, vmstateName), to); err != nil {
		return fmt.Errorf("vm state: %w", err)
	}
	sum, err := vmm.FileSHA256(to)
	if err != nil {
		return err
	}
	for _, f := range meta.Files {
		if f.Role == vmm.FileState && f.SHA256 != "" && f.SHA256 != sum {
			return fmt.Errorf("vm state %s is corrupt: sha256 %s, the snapshot recorded %s", filepath.Join(snapshotDir, vmstateName), sum, f.SHA256)
		}
	}
	return nil
}
