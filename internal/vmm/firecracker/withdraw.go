package firecracker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/wrennhq/wrenn/internal/atomicfile"
	"github.com/wrennhq/wrenn/internal/vmm"
	"github.com/wrennhq/wrenn/internal/vmm/vmproc"
)

// A pause snapshot (not Detached) is withdrawn once its VM runs again, as the seam
// asks of every driver: Firecracker's snapshots share no storage with the VM, but the
// agent must never restore a sandbox from memory its guest has moved on from, so a
// sandbox resumed from its pause snapshot makes that snapshot unrestorable before
// the guest runs (its meta file is renamed; a resume that fails puts it back).

// originName is the file in a pause snapshot naming the Dir of the VM it was taken
// from: restoring it into that Dir is the sandbox resuming from its own pause.
const originName = "origin"

// withdrawnMetaName is a withdrawn snapshot's meta file.
const withdrawnMetaName = vmm.MetaFileName + ".withdrawn"

// writeOrigin marks a pause snapshot as taken from this VM.
func (m *Machine) writeOrigin(dir string) (vmm.SnapshotFile, error) {
	if err := atomicfile.Create(filepath.Join(dir, originName), []byte(m.dir), 0o600); err != nil {
		return vmm.SnapshotFile{}, fmt.Errorf("snapshot origin: %w", err)
	}
	return vmm.SnapshotFile{Role: originName, Name: originName, Size: int64(len(m.dir))}, nil
}

// takenFrom says whether the snapshot in dir is a pause snapshot of the VM in vmDir.
func takenFrom(dir, vmDir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, originName))
	return err == nil && bytes.Equal(b, []byte(vmDir))
}

// share records pause snapshots to withdraw when the guest next runs, in the state
// file too, so that an agent that adopts the VM withdraws them as well.
func (m *Machine) share(dirs ...string) error {
	m.mu.Lock()
	m.shared = append(m.shared, dirs...)
	shared := slices.Clone(m.shared)
	m.mu.Unlock()
	return m.saveShared(shared)
}

func (m *Machine) saveShared(shared []string) error {
	st, err := readState(m.dir)
	if err == nil {
		st.Shared = shared
		err = vmproc.WriteState(filepath.Join(m.dir, stateName), st)
	}
	if err != nil {
		return fmt.Errorf("record pause snapshots: %w", err)
	}
	return nil
}

// resume withdraws the VM's pause snapshots, runs the vCPUs, and puts the snapshots
// back if they did not run.
func (m *Machine) resume(ctx context.Context) error {
	m.mu.Lock()
	shared := slices.Clone(m.shared)
	m.mu.Unlock()
	var done []string
	for _, dir := range shared {
		err := os.Rename(filepath.Join(dir, vmm.MetaFileName), filepath.Join(dir, withdrawnMetaName))
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed or replaced since
		}
		if err == nil {
			err = atomicfile.SyncDir(dir)
		}
		if err != nil {
			reinstate(done)
			return fmt.Errorf("resume vm %s: withdraw pause snapshot %s before the guest runs: %w", m.id, dir, err)
		}
		done = append(done, dir)
	}
	if err := m.setState(ctx, "Resumed"); err != nil {
		// Put the snapshots back only if the guest surely did not run: a request
		// that failed on this side may have resumed it all the same.
		var info instanceInfo
		ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if m.api.do(ictx, "GET", "/", nil, &info) == nil && info.State == "Paused" {
			reinstate(done)
		}
		return err
	}
	if len(shared) > 0 {
		m.mu.Lock()
		m.shared = nil
		m.mu.Unlock()
		if err := m.saveShared(nil); err != nil {
			m.log.Warn("forget withdrawn snapshots", "err", err)
		}
	}
	return nil
}

func reinstate(dirs []string) {
	for _, dir := range dirs {
		if os.Rename(filepath.Join(dir, withdrawnMetaName), filepath.Join(dir, vmm.MetaFileName)) == nil {
			atomicfile.SyncDir(dir)
		}
	}
}
