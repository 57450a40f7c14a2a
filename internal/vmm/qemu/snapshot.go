package qemu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wrennhq/wrenn/internal/atomicfile"
	"github.com/wrennhq/wrenn/internal/rootfs"
	"github.com/wrennhq/wrenn/internal/vmm"
)

// Snapshots of QEMU VMs; the package doc explains the memory design.

var (
	_ vmm.Snapshotter = (*Machine)(nil)
	_ vmm.Restorer    = (*Driver)(nil)
)

// Files of a snapshot directory (besides vmm.MetaFileName).
const (
	snapStateName  = "state"
	snapMemoryName = "memory"
	// withdrawnMetaName is what a pause snapshot's meta file is renamed to once the
	// VM that shares its memory runs again: the directory is then no snapshot, and
	// Restore says why.
	withdrawnMetaName = vmm.MetaFileName + ".withdrawn"
)

const (
	// migrationFD is the name under which QEMU keeps the snapshot file we hand it.
	migrationFD = "wrenn-snapshot"
	// maxBandwidth (bytes/s) lifts QEMU 7.2's default migration throttle, which
	// would otherwise pace even a 50 KB device state.
	maxBandwidth = 100 << 30
)

// bootInfo is what a VM was started with, as far as a snapshot of it must record:
// recorded in the state file at start so that a VM adopted after an agent restart
// describes itself exactly as the one that was started.
type bootInfo struct {
	// Memory is the guest RAM file QEMU maps (<Dir>/memory).
	Memory       string   `json:"memory"`
	KernelSHA256 string   `json:"kernel_sha256"`
	InitrdSHA256 string   `json:"initrd_sha256,omitempty"`
	VCPUs        int      `json:"vcpus"`
	MemoryMiB    int      `json:"memory_mib"`
	MachineArgs  []string `json:"machine_args"`
	// TSCKHz is the host's TSC rate: under TCG the guest's rdtsc reads the host's
	// TSC, and under KVM (no TSC scaling configured) the guest's TSC ticks at the
	// host's rate too. The guest calibrated against it at boot (tsc_early_khz).
	TSCKHz int64 `json:"tsc_khz,omitempty"`
}

// meta is the SnapshotMeta of a full snapshot of a VM booted as b, without files.
func (b *bootInfo) meta(version string) vmm.SnapshotMeta {
	return vmm.SnapshotMeta{
		Format: vmm.SnapshotMetaFormat, VMM: Name, VMMVersion: version, Kind: vmm.SnapshotFull,
		KernelSHA256: b.KernelSHA256, InitrdSHA256: b.InitrdSHA256,
		VCPUs: b.VCPUs, MemoryMiB: b.MemoryMiB, MachineArgs: b.MachineArgs, TSCKHz: b.TSCKHz,
	}
}

func (d *Driver) bootInfo(s spec, argv []string, tscKHz int64) (bootInfo, error) {
	b := bootInfo{
		Memory: s.memoryPath(), VCPUs: s.cfg.VCPUs, MemoryMiB: s.cfg.MemoryMiB,
		MachineArgs: machineArgs(argv), TSCKHz: tscKHz,
	}
	var err error
	if b.KernelSHA256, err = d.digests.Get(s.kernel, vmm.FileSHA256); err != nil {
		return b, err
	}
	if s.initrd != "" {
		if b.InitrdSHA256, err = d.digests.Get(s.initrd, vmm.FileSHA256); err != nil {
			return b, err
		}
	}
	return b, nil
}

var versionPattern = regexp.MustCompile(`version ([0-9]+\.[0-9]+\.[0-9]+)`)

// qemuVersion is the binary's upstream version ("7.2.22") from `--version`, which a
// restore needs before it may start QEMU. Distribution patch levels ("Debian
// 1:7.2+dfsg-7+deb12u18") are left out: they do not change the migration format,
// and comparing them would strand every paused sandbox at each security update.
func (d *Driver) qemuVersion(ctx context.Context, bin string) (string, error) {
	return d.versions.Get(bin, func(p string) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, p, "--version")
		cmd.Env = []string{}
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("%s --version: %w", p, err)
		}
		m := versionPattern.FindSubmatch(out)
		if m == nil {
			return "", fmt.Errorf("%s --version: no version in %q", p, out)
		}
		return string(m[1]), nil
	})
}

// qmpVersion is the answer to query-version.
type qmpVersion struct {
	QEMU struct{ Major, Minor, Micro int } `json:"qemu"`
}

func (v qmpVersion) String() string {
	return fmt.Sprintf("%d.%d.%d", v.QEMU.Major, v.QEMU.Minor, v.QEMU.Micro)
}

// Snapshot saves the paused VM into opts.Dir: the device state through QEMU's
// migration (x-ignore-shared: guest RAM is not in it), and the memory file —
// hard-linked after an fsync for a pause snapshot, copied (reflink or sparse copy)
// for a detached one. QEMU saves a VM once per pause, so a second Snapshot before
// Resume is refused.
func (m *Machine) Snapshot(ctx context.Context, opts vmm.SnapshotOptions) (*vmm.Snapshot, error) {
	snap, err := m.snapshot(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("snapshot qemu %s: %w", m.id, err)
	}
	return snap, nil
}

func (m *Machine) snapshot(ctx context.Context, opts vmm.SnapshotOptions) (_ *vmm.Snapshot, err error) {
	switch opts.Kind {
	case "", vmm.SnapshotFull:
	case vmm.SnapshotDiff:
		return nil, fmt.Errorf("%w: diff snapshots (a full one already writes only the device state and the pages dirtied since they were last written)", vmm.ErrUnsupported)
	default:
		return nil, fmt.Errorf("unknown snapshot kind %q", opts.Kind)
	}
	m.snapMu.Lock()
	defer m.snapMu.Unlock()
	m.mu.Lock()
	boot := m.st.Boot
	m.mu.Unlock()
	if boot == nil {
		return nil, errors.New("the vm was started by an older agent that kept guest RAM anonymous; it cannot be snapshotted")
	}
	dir, err := emptyDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	if m.exitedAlready() {
		return nil, vmm.ErrNotRunning
	}
	qs, err := m.qmp.status(ctx)
	if err != nil {
		return nil, fmt.Errorf("query status: %w", err)
	}
	switch qs.Status {
	case "paused":
	case "postmigrate":
		return nil, errors.New("the vm was already saved (or a save failed) since it was paused, and QEMU saves a vm once per pause: resume it before the next snapshot")
	case "running":
		return nil, vmm.ErrNotPaused
	default:
		return nil, fmt.Errorf("%w (qemu status %q)", vmm.ErrNotPaused, qs.Status)
	}
	var ver qmpVersion
	if err := m.qmp.do(ctx, "query-version", nil, &ver); err != nil {
		return nil, err
	}

	t0 := time.Now()
	var created []string // removed again on failure, newest first
	defer func() {
		if err != nil {
			m.dropShared(dir)
			for _, p := range slices.Backward(created) {
				os.Remove(p)
			}
		}
	}()
	statePath := filepath.Join(dir, snapStateName)
	f, err := os.OpenFile(statePath, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create state file: %w", err)
	}
	created = append(created, statePath)
	defer f.Close()
	if err := m.saveState(ctx, f); err != nil {
		return nil, fmt.Errorf("save device state: %w", err)
	}
	stateFile, err := syncedSnapshotFile(f, vmm.FileState, snapStateName)
	if err != nil {
		return nil, fmt.Errorf("state file: %w", err)
	}
	tState := time.Since(t0)

	memPath := filepath.Join(dir, snapMemoryName)
	dirty := dirtyBytes(boot.Memory) // what the fsync (or copy) below has to write
	how := "link"
	if opts.Detached {
		var method rootfs.Method
		method, err = copyMemory(boot.Memory, memPath)
		how = string(method)
	} else {
		err = linkMemory(boot.Memory, memPath)
	}
	if err != nil {
		return nil, fmt.Errorf("memory file: %w", err)
	}
	created = append(created, memPath)
	memInfo, err := os.Stat(memPath)
	if err != nil {
		return nil, fmt.Errorf("memory file: %w", err)
	}
	if !opts.Detached {
		// Recorded before the meta exists, so that no complete pause snapshot can
		// escape withdrawal when the guest runs again.
		if err := m.addShared(dir); err != nil {
			return nil, err
		}
	}
	meta := boot.meta(ver.String())
	meta.Files = []vmm.SnapshotFile{stateFile, {Role: vmm.FileMemory, Name: snapMemoryName, Size: memInfo.Size()}}
	meta.CreatedAt = time.Now().UTC()
	if err := vmm.WriteSnapshotMeta(dir, meta); err != nil {
		created = append(created, filepath.Join(dir, vmm.MetaFileName))
		return nil, err
	}
	m.log.Info("qemu snapshot taken", "dir", dir, "detached", opts.Detached, "memory", how,
		"state_bytes", stateFile.Size, "memory_dirty_bytes", dirty,
		"state_time", tState, "total_time", time.Since(t0))
	written := stateFile.Size
	if opts.Detached {
		written += memInfo.Size() // at most: a copy writes the memory's data, not its holes
	} else if dirty > 0 {
		written += dirty
	}
	return &vmm.Snapshot{Dir: dir, Meta: meta, Written: written}, nil
}

// emptyDir returns p made absolute after checking that it is an empty directory.
func emptyDir(p string) (string, error) {
	if p == "" {
		return "", errors.New("snapshot dir is empty")
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return "", fmt.Errorf("snapshot dir: %w", err)
	}
	if len(entries) > 0 {
		return "", fmt.Errorf("snapshot dir %s is not empty", abs)
	}
	return abs, nil
}

// syncedSnapshotFile fsyncs a small snapshot file and describes it with its digest.
func syncedSnapshotFile(f *os.File, role, name string) (vmm.SnapshotFile, error) {
	if err := f.Sync(); err != nil {
		return vmm.SnapshotFile{}, err
	}
	fi, err := f.Stat()
	if err != nil {
		return vmm.SnapshotFile{}, err
	}
	sum, err := sectionSHA256(f, fi.Size())
	if err != nil {
		return vmm.SnapshotFile{}, err
	}
	return vmm.SnapshotFile{Role: role, Name: name, Size: fi.Size(), SHA256: sum}, nil
}

// sectionSHA256 hashes the first size bytes of f without moving its offset (QEMU
// may share the open file description).
func sectionSHA256(f *os.File, size int64) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// linkMemory makes dst a second name of the VM's memory file after writing its dirty
// pages to disk: the guest is paused, so the file stays as saved until it runs again
// (when Resume withdraws the snapshot).
func linkMemory(src, dst string) error {
	if err := rootfs.SyncFile(src); err != nil {
		return err
	}
	return os.Link(src, dst)
}

// copyMemory copies the VM's memory file into a detached snapshot. The copy reads
// the page cache QEMU maps, so it sees the paused guest's memory as it is; a reflink
// flushes the source's dirty pages before sharing its blocks.
func copyMemory(src, dst string) (rootfs.Method, error) {
	return rootfs.CloneWith(src, dst, rootfs.CloneOptions{Sync: true})
}

// dirtyBytes is how much of a file's page cache is dirty or under writeback
// (cachestat(2), Linux 6.5+): for the memory file of a paused VM, what a pause
// snapshot's fsync writes. -1 when the kernel cannot tell.
func dirtyBytes(path string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return -1
	}
	defer f.Close()
	var cs unix.Cachestat_t
	if err := unix.Cachestat(uint(f.Fd()), &unix.CachestatRange{}, &cs, 0); err != nil {
		return -1
	}
	return int64(cs.Dirty+cs.Writeback) * int64(os.Getpagesize())
}

// migrationInfo is the part of query-migrate's answer the driver reads.
type migrationInfo struct {
	Status    string `json:"status"`
	ErrorDesc string `json:"error-desc"`
}

// setIgnoreShared turns on x-ignore-shared: migration skips share=on RAM (our
// memory file). Source and destination must agree, or the load fails.
func setIgnoreShared(ctx context.Context, q *qmpConn) error {
	return q.Execute(ctx, "migrate-set-capabilities", map[string]any{
		"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}},
	}, nil)
}

// saveState migrates the paused VM's device state into f and waits until QEMU has
// written all of it. On failure QEMU's VM stays paused (QEMU reports it as
// postmigrate) and Resume runs it again.
func (m *Machine) saveState(ctx context.Context, f *os.File) error {
	if m.exitedAlready() {
		return vmm.ErrNotRunning
	}
	err := m.qmp.session(ctx, func(q *qmpConn) error {
		if err := setIgnoreShared(ctx, q); err != nil {
			return err
		}
		if err := q.Execute(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": maxBandwidth}, nil); err != nil {
			return err
		}
		// The name is bound to this monitor; migrate resolves it at once.
		if err := q.ExecuteFD(ctx, "getfd", map[string]string{"fdname": migrationFD}, f, nil); err != nil {
			return err
		}
		return q.Execute(ctx, "migrate", map[string]string{"uri": "fd:" + migrationFD}, nil)
	})
	if err != nil {
		return err
	}
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		var mi migrationInfo
		if err := m.QMP(ctx, "query-migrate", nil, &mi); err != nil {
			if ctx.Err() != nil {
				m.cancelMigration(ctx)
				return ctx.Err()
			}
			return fmt.Errorf("query migration: %w", err)
		}
		switch mi.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			if strings.Contains(mi.ErrorDesc, "No space left on device") {
				// QEMU reports its write's errno only as text: keep it matchable.
				return fmt.Errorf("migration %s: %s: %w", mi.Status, mi.ErrorDesc, unix.ENOSPC)
			}
			return fmt.Errorf("migration %s: %s", mi.Status, mi.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			m.cancelMigration(ctx)
			return ctx.Err()
		case <-m.done:
			return vmm.ErrNotRunning
		case <-tick.C:
		}
	}
}

// cancelMigration stops a migration whose caller gave up and waits (briefly) until
// QEMU has let go of the file.
func (m *Machine) cancelMigration(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := m.QMP(ctx, "migrate_cancel", nil, nil); err != nil {
		m.log.Warn("cancel migration", "err", err)
		return
	}
	for ctx.Err() == nil {
		var mi migrationInfo
		if err := m.QMP(ctx, "query-migrate", nil, &mi); err != nil {
			return
		}
		switch mi.Status {
		case "setup", "active", "cancelling", "device", "pre-switchover":
			time.Sleep(5 * time.Millisecond)
		default:
			return
		}
	}
}

// loadState feeds a snapshot's device state from f to a QEMU started with
// -incoming defer and waits until it is loaded (QEMU then reports the snapshot's
// run state, paused). A QEMU that cannot load the state exits; its stderr says why.
func (m *Machine) loadState(ctx context.Context, f *os.File) error {
	err := m.qmp.session(ctx, func(q *qmpConn) error {
		if err := setIgnoreShared(ctx, q); err != nil {
			return err
		}
		if err := q.ExecuteFD(ctx, "getfd", map[string]string{"fdname": migrationFD}, f, nil); err != nil {
			return err
		}
		return q.Execute(ctx, "migrate-incoming", map[string]string{"uri": "fd:" + migrationFD}, nil)
	})
	if err != nil {
		return err
	}
	exited := errors.New("qemu exited while loading it")
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-m.done:
			return exited
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		qs, err := m.qmp.status(ctx)
		if err != nil {
			// A failed load ends QEMU; its socket may go away a moment first.
			select {
			case <-m.done:
				return exited
			case <-time.After(time.Second):
				return fmt.Errorf("query status: %w", err)
			}
		}
		switch qs.Status {
		case "inmigrate":
			continue
		case "paused":
			return nil
		default:
			return fmt.Errorf("qemu status %q after loading, want paused", qs.Status)
		}
	}
}

// addShared records (in memory and in the state file, for an agent that adopts the
// VM later) a pause snapshot that shares the memory file.
func (m *Machine) addShared(dir string) error {
	m.mu.Lock()
	st := m.st
	st.Shared = append(slices.Clip(st.Shared), dir)
	m.mu.Unlock()
	if err := writeState(m.dir, st); err != nil {
		return fmt.Errorf("record shared snapshot: %w", err)
	}
	m.mu.Lock()
	m.st.Shared = st.Shared
	m.mu.Unlock()
	return nil
}

// dropShared forgets dir (a snapshot that failed half-way).
func (m *Machine) dropShared(dir string) {
	m.mu.Lock()
	if !slices.Contains(m.st.Shared, dir) {
		m.mu.Unlock()
		return
	}
	m.st.Shared = slices.DeleteFunc(slices.Clone(m.st.Shared), func(d string) bool { return d == dir })
	st := m.st
	m.mu.Unlock()
	if err := writeState(m.dir, st); err != nil {
		m.log.Warn("forget shared snapshot", "dir", dir, "err", err)
	}
}

// forgetShared clears the list once the guest runs again (its snapshots withdrawn).
func (m *Machine) forgetShared() {
	m.mu.Lock()
	if len(m.st.Shared) == 0 {
		m.mu.Unlock()
		return
	}
	m.st.Shared = nil
	st := m.st
	m.mu.Unlock()
	if err := writeState(m.dir, st); err != nil {
		m.log.Warn("forget shared snapshots", "err", err)
	}
}

// withdrawShared renames the meta file of every pause snapshot that still shares
// the memory file (same inode), so none can be restored once the guest has changed
// that memory. Snapshots since removed or replaced are left alone.
func (m *Machine) withdrawShared() ([]string, error) {
	m.mu.Lock()
	shared, boot := slices.Clone(m.st.Shared), m.st.Boot
	m.mu.Unlock()
	var done []string
	for _, dir := range shared {
		if boot == nil || !sameFile(filepath.Join(dir, snapMemoryName), boot.Memory) {
			continue
		}
		err := os.Rename(filepath.Join(dir, vmm.MetaFileName), filepath.Join(dir, withdrawnMetaName))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err == nil {
			err = atomicfile.SyncDir(dir)
		}
		if err != nil {
			m.reinstate(done)
			return nil, fmt.Errorf("withdraw pause snapshot %s before the guest runs: %w", dir, err)
		}
		m.log.Info("pause snapshot withdrawn: the guest runs again", "snapshot", dir)
		done = append(done, dir)
	}
	return done, nil
}

// reinstate undoes withdrawShared for a guest that did not run after all.
func (m *Machine) reinstate(dirs []string) {
	for _, dir := range dirs {
		if err := os.Rename(filepath.Join(dir, withdrawnMetaName), filepath.Join(dir, vmm.MetaFileName)); err != nil {
			m.log.Warn("reinstate pause snapshot", "snapshot", dir, "err", err)
		}
	}
}

func sameFile(a, b string) bool {
	ai, err := os.Stat(a)
	if err != nil {
		return false
	}
	bi, err := os.Stat(b)
	return err == nil && os.SameFile(ai, bi)
}

// folioSeedStride is the PMD size: the largest page cache folio the kernel makes for
// a file mapping with MADV_HUGEPAGE.
const folioSeedStride = 2 << 20

// seedSmallFolios keeps the kernel from caching the memory file in 2 MiB folios,
// which would make every pause write 2 MiB for each page the guest touched.
//
// Why: QEMU madvises all guest RAM MADV_HUGEPAGE (unconditionally, in every version),
// and for a file mapping that makes a page fault read the file in PMD-sized folios
// (ext4 and XFS support large folios). The kernel tracks dirtiness and writes back
// per folio, so a guest writing one 4 KiB page dirties 2 MiB: measured, a guest
// printing a counter every second then wrote ~40 MiB per pause instead of ~1 MiB.
// A large folio is only made where no page of its range is cached yet; otherwise the
// fault falls back to page-sized folios. So before QEMU maps the file we make one
// page of every 2 MiB cached (a page-sized read-ahead, which for a hole is a clean
// zero page: nothing is written or allocated on disk). Pages cached already (a
// restore in place) are left as they are. Under memory pressure a seed page may be
// reclaimed before QEMU first touches its range; that range then costs 2 MiB per
// pause again — a cost, never an error, so failures here are only logged.
func seedSmallFolios(log *slog.Logger, path string) {
	f, err := os.Open(path)
	if err != nil {
		log.Warn("seed guest memory page cache", "path", path, "err", err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return
	}
	page := int64(os.Getpagesize())
	for off := int64(0); off < fi.Size(); off += folioSeedStride {
		if err := unix.Fadvise(int(f.Fd()), off, page, unix.FADV_WILLNEED); err != nil {
			log.Warn("seed guest memory page cache", "path", path, "err", err)
			return
		}
	}
}
