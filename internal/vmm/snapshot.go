package vmm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/wrennhq/wrenn/internal/atomicfile"
)

// Snapshots are optional capabilities, in containerd's style: a Machine that can
// snapshot implements Snapshotter, a Driver that can restore implements Restorer, and
// callers find out with a type assertion:
//
//	if s, ok := m.(vmm.Snapshotter); ok { snap, err := s.Snapshot(ctx, opts) … }
//
// The QEMU driver implements both (guest RAM lives in a memory file that the snapshot
// shares or copies; device state goes through QEMU's migration into a small file);
// Firecracker (PUT /snapshot/create, /snapshot/load) comes with its driver. The
// conformance cases in vmmtest hold every implementation to the contract below.
//
// Two kinds of snapshot serve two uses:
//
//   - A pause snapshot (SnapshotOptions.Detached false) is what the agent takes right
//     before stopping a paused VM. It may share storage with the VM instead of copying
//     it (QEMU hard-links the VM's memory file), so it is cheap however often a sandbox
//     pauses. It stays valid only while the guest does not run again: once the VM (or
//     a VM restored from the snapshot in place, below) resumes, the driver withdraws it
//     (removes or renames its meta file), so it can never be restored with memory that
//     moved on. The driver knows the snapshot by the directory it was written to or
//     restored from: rename that directory only while no VM that shares it can resume
//     (e.g. after Stop).
//   - A detached snapshot (Detached true) shares nothing the VM writes: the VM may
//     resume and the snapshot stays valid for any number of restores (templates,
//     clones). It costs a copy of the memory (a reflink where the filesystem can).
//
// Restoring a pause snapshot into the Dir of the VM it was taken from (the sandbox
// resuming its own pause) may continue on the snapshot's memory in place, without a
// copy; restoring any snapshot anywhere else gives the new VM its own copy of the
// memory, so the snapshot's files stay untouched.

// Snapshotter is implemented by Machines that can save a paused VM.
type Snapshotter interface {
	// Snapshot writes the VM's memory and device state into opts.Dir. The VM must be
	// paused (ErrNotPaused otherwise) and stays paused; the caller resumes or stops
	// it. A driver may save a VM only once per pause (QEMU does); a second Snapshot
	// before Resume then fails and says so. The disk is not copied (the caller owns
	// it), but the driver has flushed the VMM's writes to it. The snapshot's files
	// are durable (fsynced) when Snapshot returns. On failure opts.Dir holds no half
	// snapshot: whatever the driver wrote there is removed, the meta file being
	// written last, and the VM is still paused and can be resumed.
	Snapshot(ctx context.Context, opts SnapshotOptions) (*Snapshot, error)
}

// Differ is implemented by Machines that can take diff snapshots. DiffBase names a
// snapshot directory that holds the memory the VM last matched (the snapshot it was
// restored from or last saved into, in a copy the VM owns) and that a SnapshotDiff
// may use as its Parent; "" when only a full snapshot can be taken now. The Parent
// it names stays valid only until the VM stops.
type Differ interface {
	DiffBase() string
}

// Restorer is implemented by Drivers that can start a VM from a snapshot.
type Restorer interface {
	// Restore starts a VM from the snapshot in snapshotDir. cfg is the new VM: its
	// ID, Dir, Disk and Net are this VM's own (a clone's disk, another TAP); Kernel,
	// Initrd, VCPUs and MemoryMiB must be what the snapshot was taken with. Before
	// starting anything the driver reads the snapshot's SnapshotMeta and refuses,
	// with an error matching ErrIncompatibleSnapshot, a snapshot it cannot load
	// (see CheckCompatible); a snapshot file that is missing, truncated or corrupt
	// is an error naming the file. The VM comes up paused; Resume runs it. Failures
	// leave nothing running and the snapshot's files unmodified, so a restore can be
	// retried. A successful restore of a pause snapshot into the Dir of the VM it was
	// taken from may use its memory in place: that snapshot is withdrawn when the
	// restored VM first resumes. Any other restore leaves the snapshot's files as
	// they are: one snapshot can be restored many times (clones).
	Restore(ctx context.Context, cfg Config, snapshotDir string) (Machine, error)
}

// SnapshotKind says what a snapshot's memory file holds.
type SnapshotKind string

const (
	// SnapshotFull holds every guest page; it loads on its own.
	SnapshotFull SnapshotKind = "full"
	// SnapshotDiff holds the pages written since the parent snapshot (or since
	// boot or restore); it is merged onto its parent's memory before loading.
	SnapshotDiff SnapshotKind = "diff"
)

// SnapshotOptions says where and how to snapshot.
type SnapshotOptions struct {
	// Dir receives the snapshot. It must exist and be empty.
	Dir string
	// Kind is SnapshotFull (the default when empty) or SnapshotDiff. A driver
	// that cannot take diffs returns ErrUnsupported for SnapshotDiff.
	Kind SnapshotKind
	// Parent is the directory of the snapshot a diff layers on, recorded in the
	// diff's meta; empty for a full snapshot.
	Parent string
	// Detached asks for a snapshot that shares nothing the VM writes, so that the
	// VM may resume and the snapshot stays restorable (templates). Without it the
	// snapshot is a pause snapshot, valid until the VM runs again (see above).
	Detached bool
}

// Snapshot describes a snapshot written to a directory.
type Snapshot struct {
	Dir  string
	Meta SnapshotMeta
	// Written is what taking the snapshot wrote to disk, in bytes: its new files and
	// the guest memory it flushed to a file the VM already kept. 0 = not known.
	Written int64
}

// File returns the snapshot's file of a role (Meta.Files), or false.
func (s *Snapshot) File(role string) (SnapshotFile, bool) {
	for _, f := range s.Meta.Files {
		if f.Role == role {
			return f, true
		}
	}
	return SnapshotFile{}, false
}

// Roles of snapshot files.
const (
	// FileMemory is guest RAM (sparse for diffs).
	FileMemory = "memory"
	// FileState is the VMM's device and vCPU state.
	FileState = "state"
	// FileMeta is the SnapshotMeta, written by WriteSnapshotMeta.
	FileMeta = "meta"
)

// SnapshotFile is one file of a snapshot.
type SnapshotFile struct {
	// Role is FileMemory, FileState, FileMeta or a driver-specific role.
	Role string `json:"role"`
	// Name is the file's name inside the snapshot's Dir.
	Name string `json:"name"`
	// Size is the file's apparent size in bytes (a sparse file uses less).
	Size int64 `json:"size"`
	// SHA256 is the hex digest of small files (device state), checked before a
	// restore loads them; "" for files too big to hash on every restore (memory).
	SHA256 string `json:"sha256,omitempty"`
}

// MetaFileName is the name of the SnapshotMeta file in a snapshot directory.
const MetaFileName = "snapshot.json"

// SnapshotMetaFormat is the current encoding of SnapshotMeta.
const SnapshotMetaFormat = 1

// SnapshotMeta records what a snapshot can be restored on. Every field but CreatedAt,
// Parent and Files takes part in CheckCompatible.
type SnapshotMeta struct {
	// Format is SnapshotMetaFormat when written.
	Format int `json:"format"`
	// VMM is the driver's Name ("qemu", "firecracker").
	VMM string `json:"vmm"`
	// VMMVersion is the version that decides whether the VMM can load the
	// snapshot: QEMU's version, Firecracker's snapshot format version. Compared
	// exactly.
	VMMVersion string `json:"vmm_version"`
	// Kind is full or diff; Parent is the parent snapshot's Dir for a diff.
	Kind   SnapshotKind `json:"kind"`
	Parent string       `json:"parent,omitempty"`
	// KernelSHA256 and InitrdSHA256 are hex SHA-256 digests (FileSHA256) of the
	// boot files; InitrdSHA256 is "" for a VM booted without one.
	KernelSHA256 string `json:"kernel_sha256"`
	InitrdSHA256 string `json:"initrd_sha256,omitempty"`
	VCPUs        int    `json:"vcpus"`
	MemoryMiB    int    `json:"memory_mib"`
	// MachineArgs are the VMM arguments that shape the guest's hardware (machine
	// type, accelerator, CPU model, devices), without per-VM paths, in the
	// driver's own syntax. Restore must use exactly these.
	MachineArgs []string `json:"machine_args"`
	// TSCKHz is the guest's TSC rate in kHz (under QEMU TCG and KVM without TSC
	// scaling: the host's). A guest calibrates its clock against the TSC once, at
	// boot, so a restore on a host whose TSC runs at another rate would make its
	// clock drift. 0 = unknown, not compared.
	TSCKHz int64 `json:"tsc_khz,omitempty"`
	// Files lists the snapshot's files (the meta file itself excluded).
	Files     []SnapshotFile `json:"files"`
	CreatedAt time.Time      `json:"created_at"`
}

// ErrIncompatibleSnapshot is matched by errors refusing to restore a snapshot taken
// with another VMM, VMM version, kernel, initrd, machine shape or TSC rate.
var ErrIncompatibleSnapshot = errors.New("incompatible snapshot")

// ErrNotPaused is returned by Snapshot on a VM that is not paused.
var ErrNotPaused = errors.New("vm is not paused")

// ErrUnsupported is returned for an operation a driver does not offer in some form
// (e.g. diff snapshots).
var ErrUnsupported = errors.New("not supported by this vmm driver")

// TSCTolerancePPM is how far (parts per million) a restoring host's TSC rate may be
// from the snapshot's. A host's own calibration differs by a few ppm from boot to
// boot, which must not strand its paused sandboxes; NTP can slew a guest clock by at
// most 500 ppm, so a larger error would never be corrected.
const TSCTolerancePPM = 500

// CheckCompatible returns nil when a snapshot whose meta is snap can be restored
// where the driver would produce want for the new VM (same VMM, VMM version,
// kernel, initrd, vCPUs, memory and machine arguments, and a TSC rate within
// TSCTolerancePPM when both are known). Otherwise the error matches
// ErrIncompatibleSnapshot and names every difference, snapshot value first.
func CheckCompatible(snap, want SnapshotMeta) error {
	var diffs []string
	add := func(what, got, exp string) {
		if got != exp {
			diffs = append(diffs, fmt.Sprintf("%s %q, this vm needs %q", what, got, exp))
		}
	}
	if snap.Format != SnapshotMetaFormat {
		diffs = append(diffs, fmt.Sprintf("meta format %d, this build reads %d", snap.Format, SnapshotMetaFormat))
	}
	add("vmm", snap.VMM, want.VMM)
	add("vmm version", snap.VMMVersion, want.VMMVersion)
	add("kernel sha256", snap.KernelSHA256, want.KernelSHA256)
	add("initrd sha256", snap.InitrdSHA256, want.InitrdSHA256)
	add("vcpus", fmt.Sprint(snap.VCPUs), fmt.Sprint(want.VCPUs))
	add("memory MiB", fmt.Sprint(snap.MemoryMiB), fmt.Sprint(want.MemoryMiB))
	if !slices.Equal(snap.MachineArgs, want.MachineArgs) {
		add("machine args", strings.Join(snap.MachineArgs, " "), strings.Join(want.MachineArgs, " "))
	}
	if snap.TSCKHz > 0 && want.TSCKHz > 0 {
		if d := snap.TSCKHz - want.TSCKHz; max(d, -d)*1_000_000 > TSCTolerancePPM*want.TSCKHz {
			diffs = append(diffs, fmt.Sprintf("tsc %d kHz, this host runs at %d kHz", snap.TSCKHz, want.TSCKHz))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: taken with %s", ErrIncompatibleSnapshot, strings.Join(diffs, "; "))
}

// WriteSnapshotMeta writes meta to dir/MetaFileName, durably (the file and then the
// directory are fsynced: a paused sandbox's snapshot may be the only copy of its
// state). Drivers call it last, after syncing the other files, so that a directory
// with a meta file holds a complete snapshot even after a host crash.
func WriteSnapshotMeta(dir string, meta SnapshotMeta) error {
	if meta.Format == 0 {
		meta.Format = SnapshotMetaFormat
	}
	b, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return fmt.Errorf("encode snapshot meta: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, MetaFileName), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("snapshot meta: %w", err)
	}
	return nil
}

// ReadSnapshotMeta reads dir/MetaFileName. A directory without one is not a
// (complete) snapshot; the error then matches fs.ErrNotExist.
func ReadSnapshotMeta(dir string) (SnapshotMeta, error) {
	var meta SnapshotMeta
	b, err := os.ReadFile(filepath.Join(dir, MetaFileName))
	if err != nil {
		return meta, fmt.Errorf("read snapshot meta: %w", err)
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return meta, fmt.Errorf("parse snapshot meta %s: %w", filepath.Join(dir, MetaFileName), err)
	}
	return meta, nil
}

// FileSHA256 is the hex SHA-256 of a file's contents, for SnapshotMeta's kernel and
// initrd digests. An empty path hashes to "". Hashing a kernel takes tens of
// milliseconds; drivers restoring often cache digests in a FileCache.
func FileSHA256(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
