package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/wrennhq/wrenn/internal/atomicfile"
	"github.com/wrennhq/wrenn/internal/ident"
	"github.com/wrennhq/wrenn/internal/lifecycle"
	"github.com/wrennhq/wrenn/internal/rootfs"
	"github.com/wrennhq/wrenn/internal/vmm"
)

// Snapshots are sandboxes frozen under a name, from which any number of sandboxes are
// created by restore: the templates users make. One lives in WRENN_DIR/snapshots/{name},
// laid out like a warm snapshot (warm.go), so a create restores either the same way:
//
//	snapshot/     a detached vmm snapshot: never written after it is taken
//	rootfs.ext4   a flattened copy of the sandbox's disk at the same instant
//	info.json     SnapshotInfo
//
// A snapshot is built in a hidden sibling directory (".{name}.new-*") and published by
// a rename — an atomic exchange when it overwrites one — so a reader finds the old
// snapshot or the new, never a mix or a gap. Creates restoring a snapshot hold snapMu
// for reading while they copy its files; publishing and deleting hold it for writing,
// so files never change or vanish under a restore.

const (
	snapshotsDirName = "snapshots"
	snapshotInfoFile = "info.json"
)

// Errors of named snapshots (mapped to already_exists and not_found).
var (
	ErrSnapshotExists   = errors.New("snapshot already exists")
	ErrSnapshotNotFound = errors.New("snapshot not found")
)

// SnapshotInfo describes a named snapshot.
type SnapshotInfo struct {
	Name string `json:"name"`
	// SandboxID is the sandbox it was taken from, Template that sandbox's template.
	SandboxID string `json:"sandbox_id"`
	Template  string `json:"template"`
	// VCPUs, MemoryMiB and DiskMiB are the shape of every sandbox made from it.
	VCPUs     int `json:"vcpus"`
	MemoryMiB int `json:"memory_mib"`
	DiskMiB   int `json:"disk_mib"`
	// VMM, Kernel and Initrd are what the snapshot's memory was booted with: its
	// sandboxes restore and later resume with the same.
	VMM       string    `json:"vmm"`
	Kernel    string    `json:"kernel"`
	Initrd    string    `json:"initrd"`
	CreatedAt time.Time `json:"created_at"`
	// SealedToken is the envd access token the snapshot's guest holds, sealed with
	// the record key (bound to the snapshot's name): a sandbox restored from it
	// presents that token to /init, which replaces it with the sandbox's own. Empty
	// for a guest never given one.
	SealedToken []byte `json:"sealed_token,omitempty"`
	// SizeBytes is the disk space the snapshot's files take (not stored: measured).
	SizeBytes int64 `json:"-"`
}

func (m *Manager) snapshotsDir() string { return filepath.Join(m.cfg.Dir, snapshotsDirName) }

// CreateSnapshot freezes a running or paused sandbox into the snapshot name. A running
// sandbox's vCPUs stop while its memory and disk are copied, then run on (its clock
// is set again); a paused one stays paused. overwrite replaces an existing snapshot of
// that name atomically; without it that is ErrSnapshotExists.
func (m *Manager) CreateSnapshot(ctx context.Context, id, name string, overwrite bool) (_ *SnapshotInfo, took time.Duration, err error) {
	start := time.Now()
	if err := ident.CheckTemplate(name); err != nil {
		return nil, 0, invalid("snapshot name: %v", err)
	}
	if _, err := m.restorer(); err != nil {
		return nil, 0, err
	}
	final := filepath.Join(m.snapshotsDir(), name)
	if !overwrite && exists(final) {
		return nil, 0, fmt.Errorf("%w: %s", ErrSnapshotExists, name)
	}
	sb, err := m.lookup(id)
	if err != nil {
		return nil, 0, err
	}
	sb.op.Lock()
	defer sb.op.Unlock()
	if !m.current(sb) {
		return nil, 0, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err := os.MkdirAll(m.snapshotsDir(), 0o700); err != nil {
		return nil, 0, err
	}
	tmp, err := os.MkdirTemp(m.snapshotsDir(), "."+name+".new-")
	if err != nil {
		return nil, 0, fmt.Errorf("snapshot dir: %w", err)
	}
	defer func() {
		// After a successful exchange tmp holds the replaced snapshot.
		m.logFailure(sb, "remove snapshot work dir", os.RemoveAll(tmp))
		if err != nil {
			err = fmt.Errorf("snapshot %s as %s: %w", id, name, err)
		}
	}()
	switch state := sb.state(); state {
	case lifecycle.Running:
		err = m.snapshotRunning(ctx, sb, tmp)
	case lifecycle.Paused:
		err = m.snapshotPaused(ctx, sb, tmp)
	default:
		err = &ErrState{ID: id, State: state, Op: "snapshot"}
	}
	if err != nil {
		return nil, 0, err
	}
	sb.mu.Lock()
	rec := sb.rec
	sb.mu.Unlock()
	info := SnapshotInfo{
		Name: name, SandboxID: id, Template: rec.Spec.Template,
		VCPUs: rec.Spec.VCPUs, MemoryMiB: rec.Spec.MemoryMiB, DiskMiB: int(fileSize(filepath.Join(tmp, rootfs.DiskName)) >> 20),
		VMM: m.cfg.Driver.Name(), Kernel: rec.Kernel, Initrd: rec.Initrd, CreatedAt: m.cfg.Now().UTC(),
	}
	if rec.Token != "" {
		info.SealedToken = m.sealer.Seal([]byte(rec.Token), snapshotAD(name))
	}
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return nil, 0, err
	}
	if err := atomicfile.Write(filepath.Join(tmp, snapshotInfoFile), append(b, '\n'), 0o600); err != nil {
		return nil, 0, err
	}
	if err := m.publishSnapshot(tmp, final, overwrite); err != nil {
		return nil, 0, err
	}
	m.faultPoint("snapshot/published", sb)
	info.SizeBytes = diskUsage(final)
	took = time.Since(start)
	m.log.Info("snapshot created", "snapshot", name, "sandbox", id, "overwrite", overwrite, "bytes", info.SizeBytes, "took", took)
	return &info, took, nil
}

// publishSnapshot makes the complete snapshot in tmp the snapshot final.
func (m *Manager) publishSnapshot(tmp, final string, overwrite bool) error {
	m.snapMu.Lock()
	defer m.snapMu.Unlock()
	if !overwrite && exists(final) {
		return fmt.Errorf("%w: %s", ErrSnapshotExists, filepath.Base(final))
	}
	if err := atomicfile.ReplaceDir(tmp, final); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	return nil
}

// snapshotRunning snapshots a running sandbox's VM and disk into dir, stopping its
// vCPUs meanwhile: a detached snapshot, so the VM runs on while the snapshot stays
// valid. Whatever happens the vCPUs run again; should they not, the sandbox fails.
func (m *Manager) snapshotRunning(ctx context.Context, sb *sandbox, dir string) (err error) {
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
	m.faultPoint("snapshot/vcpus", sb)
	defer func() {
		if rerr := machine.Resume(context.WithoutCancel(ctx)); rerr != nil {
			err = errors.Join(err, fmt.Errorf("run the vm again: %w", rerr))
			m.fail(sb, fmt.Sprintf("a snapshot stopped the vm and it could not run again: %v", rerr))
			return
		}
		// The guest's clock stood still while its vCPUs did: set it again.
		sb.mu.Lock()
		token, tmpl := sb.rec.Token, sb.rec.Spec.Template
		sb.mu.Unlock()
		if ierr := m.initGuest(context.WithoutCancel(ctx), sb, token, tmpl); ierr != nil {
			m.log.Warn("set the clock after a snapshot", "sandbox", sb.id, "err", ierr)
		}
	}()
	snapDir := filepath.Join(dir, warmSnapshot)
	if err := os.Mkdir(snapDir, 0o700); err != nil {
		return err
	}
	if _, err := snapshotter.Snapshot(ctx, vmm.SnapshotOptions{Dir: snapDir, Kind: vmm.SnapshotFull, Detached: true}); err != nil {
		return fmt.Errorf("snapshot vm: %w", err)
	}
	m.faultPoint("snapshot/memory", sb)
	// The driver flushed its writes to the disk, and the guest writes nothing until
	// its vCPUs run: the copy is what the memory snapshot's page cache saw.
	if err := m.cfg.Disks.Flatten(ctx, sb.dir, filepath.Join(dir, rootfs.DiskName)); err != nil {
		return fmt.Errorf("copy disk: %w", err)
	}
	m.faultPoint("snapshot/disk", sb)
	return nil
}

// snapshotPaused copies a paused sandbox's snapshot and disk into dir. Neither changes
// while it is paused (the caller holds op); the copies share nothing it later writes.
func (m *Manager) snapshotPaused(ctx context.Context, sb *sandbox, dir string) error {
	src := filepath.Join(sb.dir, snapshotDir)
	meta, err := vmm.ReadSnapshotMeta(src)
	if err != nil {
		return fmt.Errorf("the sandbox's pause snapshot: %w", err)
	}
	dst := filepath.Join(dir, warmSnapshot)
	if err := os.Mkdir(dst, 0o700); err != nil {
		return err
	}
	for _, f := range meta.Files {
		if err := ctx.Err(); err != nil {
			return err
		}
		// No page-sized writes for memory: a restore copies it again before QEMU maps it.
		if _, err := rootfs.CloneWith(filepath.Join(src, f.Name), filepath.Join(dst, f.Name), rootfs.CloneOptions{Sync: true}); err != nil {
			return fmt.Errorf("copy snapshot: %w", err)
		}
	}
	if err := vmm.WriteSnapshotMeta(dst, meta); err != nil {
		return err
	}
	if err := m.cfg.Disks.Flatten(ctx, sb.dir, filepath.Join(dir, rootfs.DiskName)); err != nil {
		return fmt.Errorf("copy disk: %w", err)
	}
	return nil
}

// DeleteSnapshot removes a snapshot. Sandboxes created from it are not affected.
func (m *Manager) DeleteSnapshot(name string) error {
	if err := ident.CheckTemplate(name); err != nil {
		return invalid("snapshot name: %v", err)
	}
	final := filepath.Join(m.snapshotsDir(), name)
	m.snapMu.Lock()
	if !exists(final) {
		m.snapMu.Unlock()
		return fmt.Errorf("%w: %s", ErrSnapshotNotFound, name)
	}
	// Renamed out of sight first: a crash mid-removal leaves a hidden leftover that
	// Recover removes, never half a snapshot under its name.
	gone := filepath.Join(m.snapshotsDir(), fmt.Sprintf(".%s.deleted-%d", name, time.Now().UnixNano()))
	err := os.Rename(final, gone)
	m.snapMu.Unlock()
	if err != nil {
		return fmt.Errorf("delete snapshot %s: %w", name, err)
	}
	if err := os.RemoveAll(gone); err != nil {
		return fmt.Errorf("delete snapshot %s: %w", name, err)
	}
	m.log.Info("snapshot deleted", "snapshot", name)
	return nil
}

// ListSnapshots returns every snapshot, by name.
func (m *Manager) ListSnapshots() ([]*SnapshotInfo, error) {
	entries, err := os.ReadDir(m.snapshotsDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	var out []*SnapshotInfo
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		info, err := m.snapshotInfo(e.Name())
		if err != nil {
			m.log.Warn("unreadable snapshot left out of the list", "snapshot", e.Name(), "err", err)
			continue
		}
		info.SizeBytes = diskUsage(filepath.Join(m.snapshotsDir(), e.Name()))
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// snapshotInfo reads a snapshot's info.json; a snapshot that is not there is
// ErrSnapshotNotFound.
func (m *Manager) snapshotInfo(name string) (*SnapshotInfo, error) {
	b, err := os.ReadFile(filepath.Join(m.snapshotsDir(), name, snapshotInfoFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrSnapshotNotFound, name)
	}
	if err != nil {
		return nil, err
	}
	var info SnapshotInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", name, err)
	}
	return &info, nil
}

// snapshotAD binds a snapshot's sealed token to its name.
func snapshotAD(name string) []byte { return []byte("wrenn snapshot token v1\x00" + name) }

// guestToken is the envd token a snapshot's guest holds ("" for none).
func (m *Manager) guestToken(info *SnapshotInfo) (string, error) {
	if len(info.SealedToken) == 0 {
		return "", nil
	}
	tok, err := m.sealer.Open(info.SealedToken, snapshotAD(info.Name))
	if err != nil {
		return "", fmt.Errorf("snapshot %s: its guest's token does not open with this agent's record key: %w", info.Name, err)
	}
	return string(tok), nil
}

// cleanSnapshotLeftovers removes what interrupted snapshot builds and deletes left.
func (m *Manager) cleanSnapshotLeftovers() {
	dirs, _ := filepath.Glob(filepath.Join(m.snapshotsDir(), ".*"))
	for _, dir := range dirs {
		if err := os.RemoveAll(dir); err != nil {
			m.log.Warn("remove snapshot leftover", "dir", dir, "err", err)
		}
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// diskUsage is the space the files under dir take (allocated blocks: sparse files
// count what they hold, not their length).
func diskUsage(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	return n
}

// snapshotSpec fits a create from a named snapshot to it: its template and shape are
// the snapshot's; a create asking for another shape is invalid.
func (m *Manager) snapshotSpec(spec *Spec) (*SnapshotInfo, error) {
	if err := ident.CheckTemplate(spec.Snapshot); err != nil {
		return nil, invalid("snapshot name: %v", err)
	}
	if _, err := m.restorer(); err != nil {
		return nil, err
	}
	info, err := m.snapshotInfo(spec.Snapshot)
	if errors.Is(err, ErrSnapshotNotFound) {
		return nil, invalid("snapshot %q is not on this host", spec.Snapshot)
	}
	if err != nil {
		return nil, err
	}
	if info.VMM != m.cfg.Driver.Name() {
		return nil, invalid("snapshot %q was taken with the %s driver; this host runs %s", spec.Snapshot, info.VMM, m.cfg.Driver.Name())
	}
	mismatch := func(what string, asked, has int) error {
		if asked != 0 && asked != has {
			return invalid("snapshot %q has %d %s; a sandbox made from it has the same, not %d", spec.Snapshot, has, what, asked)
		}
		return nil
	}
	if err := errors.Join(mismatch("vCPUs", spec.VCPUs, info.VCPUs), mismatch("MiB of memory", spec.MemoryMiB, info.MemoryMiB),
		mismatch("MiB of disk", spec.DiskMiB, info.DiskMiB)); err != nil {
		return nil, err
	}
	if spec.Template != "" && spec.Template != info.Template {
		return nil, invalid("snapshot %q was made from template %q, not %q", spec.Snapshot, info.Template, spec.Template)
	}
	spec.Template, spec.VCPUs, spec.MemoryMiB, spec.DiskMiB = info.Template, info.VCPUs, info.MemoryMiB, info.DiskMiB
	return info, nil
}
