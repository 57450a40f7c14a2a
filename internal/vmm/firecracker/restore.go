package firecracker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/wrennhq/wrenn/internal/memfile"
	"github.com/wrennhq/wrenn/internal/rootfs"
	"github.com/wrennhq/wrenn/internal/uffd/pagerproc"
	"github.com/wrennhq/wrenn/internal/vmm"
	"github.com/wrennhq/wrenn/internal/vmm/vmproc"
)

// handshakeWait bounds the wait, after a successful load, for the page handler to
// have taken Firecracker's handshake (sent during the load).
const handshakeWait = 5 * time.Second

// Restore starts a VM from a snapshot with its memory served lazily: a uffd handler
// listens on the VM's uffd.sock before the load, Firecracker hands it the guest
// regions during PUT /snapshot/load, and pages are copied in from the snapshot's
// memfile generations as the guest touches them (the previous run's touched pages
// prefetched in the background). MMDS data is put again (a load empties it). The VM
// comes up paused. The snapshot's meta is checked before anything starts.
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
	bin, info, err := d.binary(ctx)
	if err != nil {
		return nil, err
	}
	want, err := wantMeta(cfg, info.snapshot, &d.digests)
	if err != nil {
		return nil, err
	}
	if err := vmm.CheckCompatible(meta, want); err != nil {
		return nil, err
	}
	// The memory is whole (every file there, long enough) and of the VM's size. The
	// links made below share these files, so this holds for them too.
	if size, err := memfile.Check(snapshotDir); err != nil {
		return nil, err
	} else if size != int64(cfg.MemoryMiB)<<20 {
		return nil, fmt.Errorf("%w: memory holds %d bytes, the vm has %d MiB", vmm.ErrIncompatibleSnapshot, size, cfg.MemoryMiB)
	}
	m, err := d.spawn(ctx, cfg, bin, info, true)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Machine, error) {
		m.killWait()
		removeRuntime(cfg.Dir)
		return nil, fmt.Errorf("%w%s%s", err, m.consoleTail(), m.pagerTail())
	}
	if err := copyState(snapshotDir, cfg, meta); err != nil {
		return fail(err)
	}
	// The VM is served from its own links to the snapshot's files, which are also
	// the base its first diff layers on; where links cannot be made (another
	// filesystem), straight from the snapshot, and its snapshots are then full.
	memDir := snapshotDir
	base, err := linkBase(snapshotDir, cfg.Dir)
	if err == nil {
		memDir = base
	} else {
		m.log.Warn("serving memory from the snapshot itself; diff snapshots unavailable", "err", err)
	}
	if err := m.startPager(cfg, memDir, snapshotDir); err != nil {
		return fail(err)
	}
	m.setBase(base, snapshotDir)
	if takenFrom(snapshotDir, cfg.Dir) { // the sandbox resuming from its own pause
		if err := m.share(snapshotDir); err != nil {
			return fail(err)
		}
	}
	load := snapshotLoad{SnapshotPath: vmstateName, MemBackend: memBackend{BackendType: "Uffd", BackendPath: uffdSockName}, TrackDirtyPages: true}
	if cfg.Net != nil {
		load.NetworkOverrides = []networkOverride{{IfaceID: ifaceID, HostDevName: cfg.Net.TAP}}
	}
	start := time.Now()
	if err := m.api.do(ctx, "PUT", "/snapshot/load", load, nil); err != nil {
		return fail(err)
	}
	wctx, cancel := context.WithTimeout(ctx, handshakeWait)
	err = pagerproc.WaitReady(wctx, filepath.Join(cfg.Dir, pagerCtlName))
	cancel()
	if err != nil {
		return fail(fmt.Errorf("snapshot loaded, but its memory is not served: %w", err))
	}
	if err := m.putMetadata(ctx, cfg); err != nil {
		return fail(err)
	}
	m.mu.Lock()
	m.loaded = true
	m.mu.Unlock()
	m.log.Info("firecracker restored", "load", time.Since(start), "took", time.Since(m.started))
	return m, nil
}

// startPager starts the VM's page server on its uffd socket (given to the jail's uid)
// and records it, so that an agent that restarts adopts both.
func (m *Machine) startPager(cfg vmm.Config, memDir, snapshotDir string) error {
	spec := pagerproc.Spec{MemDir: memDir}
	if cfg.Jail != nil {
		spec.CgroupProcs = cfg.Jail.CgroupProcs // charged to the sandbox, like its VMM
	}
	if _, err := os.Stat(filepath.Join(snapshotDir, prefetchName)); err == nil {
		spec.PrefetchFile = filepath.Join(snapshotDir, prefetchName)
	}
	sock := filepath.Join(cfg.Dir, uffdSockName)
	p, err := pagerproc.Start(spec, sock, filepath.Join(cfg.Dir, pagerCtlName), filepath.Join(cfg.Dir, pagerLogName), cfg.Dir)
	if err != nil {
		return err
	}
	go p.Cmd.Wait() // reaps it; after an agent restart, init does
	id := p.Identity
	// Recorded first: an agent that dies from here on finds it, to adopt or kill.
	st, err := readState(cfg.Dir)
	if err == nil {
		st.Pager = &id
		err = vmproc.WriteState(filepath.Join(cfg.Dir, stateName), st)
	}
	var h *vmproc.Handle
	if err == nil {
		h, err = vmproc.Open(id.PID, id.ProcStart)
	}
	if err != nil {
		p.Cmd.Process.Kill()
		return fmt.Errorf("page server: %w", err)
	}
	m.mu.Lock()
	m.pager = h
	m.mu.Unlock()
	return own(cfg, sock)
}

// copyState copies the snapshot's small vm state file into the VM's Dir, where
// Firecracker (jailed or not) reads it by its stable name, and checks its digest; the
// snapshot stays as is.
func copyState(snapshotDir string, cfg vmm.Config, meta vmm.SnapshotMeta) error {
	to := filepath.Join(cfg.Dir, vmstateName)
	if _, err := rootfs.Clone(filepath.Join(snapshotDir, vmstateName), to); err != nil {
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
	return own(cfg, to)
}
