package firecracker

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wrennhq/wrenn/internal/atomicfile"
	"github.com/wrennhq/wrenn/internal/memfile"
	"github.com/wrennhq/wrenn/internal/rootfs"
	"github.com/wrennhq/wrenn/internal/uffd/pagerproc"
	"github.com/wrennhq/wrenn/internal/vmm"
)

// prefetchName lists the memory-file offsets the guest touched after its last
// restore (uffd.Handler.Touched), for the next restore to prefetch.
const prefetchName = "memfile.prefetch"

// Snapshot saves the paused VM into opts.Dir: Firecracker writes its vm state and
// memory into the VM's Dir (the only place a jailed Firecracker can write), then the
// memory becomes memfile generations in opts.Dir — all of it for a full snapshot, the
// blocks Firecracker wrote into its sparse diff file (the pages dirtied since the
// boot, load or last snapshot) for a diff layered on opts.Parent — and the scratch
// files are removed. Every snapshot is detached: nothing in it is shared with the VM.
func (m *Machine) Snapshot(ctx context.Context, opts vmm.SnapshotOptions) (_ *vmm.Snapshot, err error) {
	kind := opts.Kind
	if kind == "" {
		kind = vmm.SnapshotFull
	}
	// Firecracker's diff holds what changed since the VM's last snapshot, load or
	// boot: it is a diff of the VM's base (named by its links, DiffBase, or by the
	// snapshot they were made from) and of nothing else.
	if m.exited() {
		return nil, fmt.Errorf("snapshot vm %s: %w", m.id, vmm.ErrNotRunning)
	}
	base, baseFrom := m.diffBase()
	if kind == vmm.SnapshotDiff && (base == "" || (opts.Parent != base && opts.Parent != baseFrom)) {
		return nil, fmt.Errorf("snapshot vm %s: a diff must layer on the snapshot the vm's memory last matched (%q, or its links %q), not %q", m.id, baseFrom, base, opts.Parent)
	}
	if ents, err := os.ReadDir(opts.Dir); err != nil || len(ents) > 0 {
		return nil, fmt.Errorf("snapshot vm %s: %s must be an existing, empty directory (%v)", m.id, opts.Dir, err)
	}
	var info instanceInfo
	if err := m.api.do(ctx, "GET", "/", nil, &info); err != nil {
		return nil, fmt.Errorf("snapshot vm %s: %w", m.id, err)
	}
	if info.State != "Paused" {
		return nil, fmt.Errorf("snapshot vm %s: %w (state %q)", m.id, vmm.ErrNotPaused, info.State)
	}
	defer func() {
		os.RemoveAll(filepath.Join(m.dir, scratchName))
		if err != nil {
			removeSnapshotFiles(opts.Dir)
			if m.DiffBase() == "" {
				os.RemoveAll(filepath.Join(m.dir, baseName)) // no longer what the VM matches
			}
			err = fmt.Errorf("snapshot vm %s: %w", m.id, err)
		}
	}()
	scratch := filepath.Join(m.dir, scratchName)
	os.RemoveAll(scratch) // a crash's leftover
	if err := os.Mkdir(scratch, 0o700); err != nil {
		return nil, err
	}
	if err := own(m.cfg, scratch); err != nil {
		return nil, err
	}
	fcType := "Full"
	if kind == vmm.SnapshotDiff {
		fcType = "Diff"
	}
	// Taken before the create: a full dump faults every page in through the handler.
	touched := m.touched(ctx)
	// The create resets Firecracker's dirty bitmap: from here until this snapshot
	// is complete, no earlier snapshot is a base a diff could layer on.
	m.setBase("", "")
	req := snapshotCreate{SnapshotType: fcType, SnapshotPath: scratchName + "/" + vmstateName, MemFilePath: scratchName + "/" + memfile.RawName}
	if err := m.api.do(ctx, "PUT", "/snapshot/create", req, nil); err != nil {
		return nil, err
	}
	parent := opts.Parent
	if parent == base {
		parent = baseFrom // recorded as the snapshot it came from, not the VM's links
	}
	if kind == vmm.SnapshotDiff {
		opts.Parent = base // the diff layers on the VM's own links, never moved or removed
	}
	written, err := m.convertMemory(kind, opts)
	if err != nil {
		return nil, err
	}
	state, err := moveFile(filepath.Join(m.dir, scratchName, vmstateName), filepath.Join(opts.Dir, vmstateName))
	if err != nil {
		return nil, fmt.Errorf("vm state: %w", err)
	}
	meta, err := m.meta(kind, parent)
	if err != nil {
		return nil, err
	}
	meta.Files = append(meta.Files, state)
	if f, ok := m.savePrefetch(opts.Dir, touched); ok {
		meta.Files = append(meta.Files, f)
	}
	if !opts.Detached {
		f, err := m.writeOrigin(opts.Dir)
		if err != nil {
			return nil, err
		}
		meta.Files = append(meta.Files, f)
	}
	names, err := memfile.Files(opts.Dir)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		fi, err := os.Stat(filepath.Join(opts.Dir, n))
		if err != nil {
			return nil, err
		}
		role := "memory-generation"
		if n == memfile.HeaderName {
			role = vmm.FileMemory
		}
		meta.Files = append(meta.Files, vmm.SnapshotFile{Role: role, Name: n, Size: fi.Size()})
	}
	if err := vmm.WriteSnapshotMeta(opts.Dir, meta); err != nil {
		return nil, err
	}
	if !opts.Detached {
		if err := m.share(opts.Dir); err != nil {
			return nil, err
		}
	}
	// What the VM matches now is this snapshot: the next diff layers on it.
	if newBase, err := linkBase(opts.Dir, m.dir); err != nil {
		m.log.Warn("diff snapshots unavailable until the next full one", "err", err)
	} else {
		m.setBase(newBase, opts.Dir)
	}
	return &vmm.Snapshot{Dir: opts.Dir, Meta: meta, Written: written + state.Size}, nil
}

// convertMemory turns Firecracker's memory file into generations in opts.Dir.
func (m *Machine) convertMemory(kind vmm.SnapshotKind, opts vmm.SnapshotOptions) (int64, error) {
	f, err := os.Open(filepath.Join(m.dir, scratchName, memfile.RawName))
	if err != nil {
		return 0, fmt.Errorf("memory file: %w", err)
	}
	defer f.Close()
	size := int64(m.cfg.MemoryMiB) << 20
	wo := memfile.WriteOptions{}
	if kind == vmm.SnapshotDiff {
		if wo.Dirty, err = memfile.DataRanges(f); err != nil {
			return 0, err
		}
		wo.Parent = opts.Parent
	}
	res, err := memfile.Write(opts.Dir, f, size, wo)
	if err != nil {
		return 0, err
	}
	if res.Merged {
		m.log.Info("snapshot chain merged into one generation", "dir", opts.Dir)
	}
	return res.Written, nil
}

// touched is what the guest touched since a lazy restore (nil after a boot, or if
// the page server cannot say: the next restore then prefetches nothing).
func (m *Machine) touched(ctx context.Context) []int64 {
	m.mu.Lock()
	lazy := m.pager != nil
	m.mu.Unlock()
	if !lazy {
		return nil
	}
	offs, err := pagerproc.Touched(ctx, filepath.Join(m.dir, pagerCtlName))
	if err != nil {
		m.log.Warn("no prefetch list for the next restore", "err", err)
	}
	return offs
}

// savePrefetch records the pages the guest touched since a lazy restore, as a file
// of the snapshot; false when there are none.
func (m *Machine) savePrefetch(dir string, touched []int64) (vmm.SnapshotFile, bool) {
	if len(touched) == 0 {
		return vmm.SnapshotFile{}, false
	}
	b, err := json.Marshal(touched)
	if err == nil {
		err = atomicfile.Create(filepath.Join(dir, prefetchName), b, 0o600)
	}
	if err != nil {
		m.log.Warn("prefetch list not saved", "err", err)
		return vmm.SnapshotFile{}, false
	}
	return vmm.SnapshotFile{Role: "prefetch", Name: prefetchName, Size: int64(len(b))}, true
}

func readPrefetch(dir string) []int64 {
	var offs []int64
	if b, err := os.ReadFile(filepath.Join(dir, prefetchName)); err == nil {
		json.Unmarshal(b, &offs)
	}
	return offs
}

// meta is what the snapshot records for CheckCompatible.
func (m *Machine) meta(kind vmm.SnapshotKind, parent string) (vmm.SnapshotMeta, error) {
	meta, err := wantMeta(m.cfg, m.version, m.digests)
	meta.Kind, meta.CreatedAt = kind, time.Now().UTC()
	if kind == vmm.SnapshotDiff {
		meta.Parent = parent
	}
	return meta, err
}

// wantMeta is the compatibility part of the meta of a VM made from cfg.
func wantMeta(cfg vmm.Config, version string, digests *vmm.FileCache[string]) (vmm.SnapshotMeta, error) {
	meta := vmm.SnapshotMeta{Format: vmm.SnapshotMetaFormat, VMM: Name, VMMVersion: version,
		VCPUs: cfg.VCPUs, MemoryMiB: cfg.MemoryMiB, MachineArgs: machineArgs(cfg)}
	var err error
	if meta.KernelSHA256, err = digests.Get(cfg.Kernel, vmm.FileSHA256); err != nil || cfg.Initrd == "" {
		return meta, err
	}
	meta.InitrdSHA256, err = digests.Get(cfg.Initrd, vmm.FileSHA256)
	return meta, err
}

// moveFile renames (or copies) a file into place, synced, and describes it.
func moveFile(from, to string) (vmm.SnapshotFile, error) {
	if err := os.Rename(from, to); err != nil {
		if _, err := rootfs.Clone(from, to); err != nil {
			return vmm.SnapshotFile{}, err
		}
	}
	f, err := os.Open(to)
	if err != nil {
		return vmm.SnapshotFile{}, err
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return vmm.SnapshotFile{}, err
	}
	sum, err := vmm.FileSHA256(to)
	if err != nil {
		return vmm.SnapshotFile{}, err
	}
	fi, err := os.Stat(to)
	if err != nil {
		return vmm.SnapshotFile{}, err
	}
	return vmm.SnapshotFile{Role: vmm.FileState, Name: filepath.Base(to), Size: fi.Size(), SHA256: sum}, nil
}

// removeSnapshotFiles removes what a failed Snapshot may have written to dir, the meta
// file first: a crash part way must not leave a meta naming missing files.
func removeSnapshotFiles(dir string) {
	if os.Remove(filepath.Join(dir, vmm.MetaFileName)) == nil {
		atomicfile.SyncDir(dir)
	}
	for _, n := range []string{vmstateName, originName} {
		os.Remove(filepath.Join(dir, n))
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "memfile.") { // header, generations, prefetch list
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
