package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/wrennhq/wrenn/internal/image"
	"github.com/wrennhq/wrenn/internal/lifecycle"
	"github.com/wrennhq/wrenn/internal/vmm"
)

// Warm starts: a create restores a memory snapshot of its template, booted once and
// frozen with envd ready, instead of booting the kernel (seconds under TCG). A warm
// snapshot belongs to one template, driver and machine shape (vCPUs, memory); it lives
// in WRENN_DIR/images/{template}/warm/{driver}-{vcpus}c-{memory}m:
//
//	snapshot/     a detached snapshot (its memory never written after it is taken)
//	rootfs.ext4   the disk as it was when the snapshot was taken; clones copy it
//
// The first create of a shape boots cold and, in the background, builds the warm
// snapshot that later creates restore. A warm snapshot that fails to restore is
// removed and the create boots cold: the fast path never costs a create.

const (
	warmDirName  = "warm"
	warmSnapshot = "snapshot"
	warmBuilding = ".tmp"
)

// warmDir is where the warm snapshot of a template and shape lives.
func (m *Manager) warmDir(tmpl *image.Template, spec Spec) string {
	return filepath.Join(tmpl.Dir, warmDirName, fmt.Sprintf("%s-%dc-%dm", m.cfg.Driver.Name(), spec.VCPUs, spec.MemoryMiB))
}

// warmFor returns the ready warm snapshot directory for a create, or "" when it must
// boot: warm starts are off, the driver cannot restore, the create asks for another
// disk size (a restored guest's filesystem was sized at boot), or none is built yet.
func (m *Manager) warmFor(tmpl *image.Template, spec Spec) string {
	if !m.cfg.WarmStart || spec.DiskMiB != 0 {
		return ""
	}
	if _, ok := m.cfg.Driver.(vmm.Restorer); !ok {
		return ""
	}
	dir := m.warmDir(tmpl, spec)
	if _, err := vmm.ReadSnapshotMeta(filepath.Join(dir, warmSnapshot)); err != nil {
		return ""
	}
	if _, err := os.Stat(filepath.Join(dir, "rootfs.ext4")); err != nil {
		return ""
	}
	return dir
}

// restoreSteps are a create's steps when it restores the warm snapshot in dir.
func (m *Manager) restoreSteps(ctx context.Context, sb *sandbox, dir string) (disk, vm, boot func() (func(), error)) {
	disk = func() (func(), error) { return m.makeDisk(ctx, sb, filepath.Join(dir, "rootfs.ext4"), 0) }
	vm = func() (func(), error) {
		restorer, _ := m.cfg.Driver.(vmm.Restorer)
		undo, err := m.restoreVM(ctx, sb, restorer, filepath.Join(dir, warmSnapshot))
		if err != nil {
			return nil, err
		}
		sb.mu.Lock()
		machine := sb.machine
		sb.mu.Unlock()
		if err := machine.Resume(ctx); err != nil {
			undo()
			return nil, fmt.Errorf("run restored vcpus: %w", err)
		}
		return undo, nil
	}
	boot = func() (func(), error) { return nil, m.connectEnvd(ctx, sb, resumeHealthTimeout) }
	return disk, vm, boot
}

// Prewarm builds, in the background, the warm snapshot of the default shape of a
// template (what a create naming only the template gets), unless it exists or warm
// starts are off. A template this host does not have is skipped.
func (m *Manager) Prewarm(template string) {
	spec := Spec{Template: template}
	if !m.cfg.WarmStart || m.cfg.Limits.Validate(&spec) != nil {
		return
	}
	tmpl, err := image.Load(m.cfg.Dir, spec.Template)
	if err != nil {
		m.log.Info("no warm snapshot to build: no such template", "template", template, "err", err)
		return
	}
	m.buildWarmLater(tmpl, spec)
}

// dropWarm removes a warm snapshot that failed to restore, so the next create of its
// shape boots and builds a new one.
func (m *Manager) dropWarm(dir string, why error) {
	m.log.Warn("warm snapshot failed to restore; removing it, creates boot until it is rebuilt", "dir", dir, "err", why)
	if err := os.RemoveAll(dir); err != nil {
		m.log.Warn("remove warm snapshot", "dir", dir, "err", err)
	}
}

// buildWarmLater builds the warm snapshot of a template and shape in the background,
// once at a time per directory; Close waits for it.
func (m *Manager) buildWarmLater(tmpl *image.Template, spec Spec) {
	if !m.cfg.WarmStart || spec.DiskMiB != 0 {
		return
	}
	_, canRestore := m.cfg.Driver.(vmm.Restorer)
	dir := m.warmDir(tmpl, spec)
	m.mu.Lock()
	if !canRestore || m.warming[dir] || m.closed {
		m.mu.Unlock()
		return
	}
	m.warming[dir] = true
	m.bg.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.bg.Done()
		defer func() {
			m.mu.Lock()
			delete(m.warming, dir)
			m.mu.Unlock()
		}()
		start := time.Now()
		if err := m.buildWarm(m.bgCtx, tmpl, spec, dir); err != nil {
			m.log.Warn("build warm snapshot", "template", tmpl.Name, "dir", dir, "err", err)
			return
		}
		m.log.Info("warm snapshot ready: creates of this shape restore it", "template", tmpl.Name, "dir", dir, "took", time.Since(start))
	}()
}

// buildWarm boots the template in a throwaway VM, waits for envd, and freezes it into
// dir (built in dir+".tmp", renamed when complete). The VM gets no /init: each clone's
// own /init gives it its identity, token and entropy.
func (m *Manager) buildWarm(ctx context.Context, tmpl *image.Template, spec Spec, dir string) (err error) {
	if _, err := os.Stat(filepath.Join(dir, warmSnapshot, vmm.MetaFileName)); err == nil {
		return nil
	}
	tmp := dir + warmBuilding
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	spec.ID = fmt.Sprintf("warm-%x", time.Now().UnixNano())
	sb := newSandbox(spec.ID, tmp, record{Spec: spec, State: lifecycle.Starting, Kernel: tmpl.Kernel, Initrd: tmpl.Initrd}, m.sealer)
	var undo rollback
	defer func() {
		undo.run() // the VM and slot go in every case; the disk stays only on success
		if err != nil {
			m.logFailure(sb, "release disk", m.releaseDisk(sb))
			_ = os.RemoveAll(tmp)
		}
	}()
	undoSlot, err := m.takeSlot(ctx, sb, false)
	if err != nil {
		return err
	}
	undo.add(undoSlot)
	if _, err := m.makeDisk(ctx, sb, tmpl.RootFS, 0); err != nil {
		return err
	}
	undoVM, err := m.startVM(ctx, sb, bootSource{kernel: tmpl.Kernel, initrd: tmpl.Initrd})
	if err != nil {
		return err
	}
	undo.add(undoVM)
	if err := m.connectEnvd(ctx, sb, m.cfg.BootTimeout); err != nil {
		return err
	}
	sb.mu.Lock()
	machine := sb.machine
	sb.mu.Unlock()
	snapshotter, err := m.snapshotter(machine)
	if err != nil {
		return err
	}
	if err := machine.Pause(ctx); err != nil {
		return fmt.Errorf("stop vcpus: %w", err)
	}
	snapDir := filepath.Join(tmp, warmSnapshot)
	if err := os.Mkdir(snapDir, 0o700); err != nil {
		return err
	}
	if _, err := snapshotter.Snapshot(ctx, vmm.SnapshotOptions{Dir: snapDir, Kind: vmm.SnapshotFull, Detached: true}); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	// The disk must be what the snapshot's page cache saw: the VM stops before it is
	// published, and nothing writes it after.
	undo.run()
	undo = nil
	_ = os.Remove(filepath.Join(tmp, recordFile))
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// cleanWarmBuilds removes warm snapshots left half-built by an agent that stopped
// mid-build, with the VM they may still run.
func (m *Manager) cleanWarmBuilds(ctx context.Context) {
	dirs, _ := filepath.Glob(filepath.Join(m.cfg.Dir, "images", "*", warmDirName, "*"+warmBuilding))
	for _, dir := range dirs {
		if machine, err := m.cfg.Driver.Adopt(ctx, dir); err == nil {
			stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if err := machine.Stop(stopCtx); err != nil {
				m.log.Warn("stop half-built warm vm", "dir", dir, "err", err)
			}
			cancel()
		} else if !errors.Is(err, vmm.ErrNotRunning) {
			m.log.Warn("look for a half-built warm vm", "dir", dir, "err", err)
		}
		_ = m.cfg.Disks.Release(dir)
		if err := os.RemoveAll(dir); err != nil {
			m.log.Warn("remove half-built warm snapshot", "dir", dir, "err", err)
		}
	}
}
