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
)

// Snapshots are optional capabilities, in containerd's style: a Machine that can
// snapshot implements Snapshotter, a Driver that can restore implements Restorer, and
// callers find out with a type assertion:
//
//	if s, ok := m.(vmm.Snapshotter); ok { snap, err := s.Snapshot(ctx, opts) … }
//
// No driver implements them yet: QEMU snapshots (guest RAM in a memory file + device
// state via migration, restore with -incoming) are the next piece of work, Firecracker
// (PUT /snapshot/create, /snapshot/load) comes with its driver. What exists is the
// contract below, the metadata every snapshot carries, and the conformance cases in
// vmmtest that run as soon as a driver implements the interfaces.

// Snapshotter is implemented by Machines that can save a paused VM.
type Snapshotter interface {
	// Snapshot writes the VM's memory and device state into opts.Dir. The VM must be
	// paused (ErrNotPaused otherwise) and stays paused; the caller resumes or stops
	// it. The disk is not copied (the caller owns it), but the driver has flushed
	// the VMM's writes to it. On failure opts.Dir holds no half snapshot: whatever
	// the driver wrote there is removed, and the error says what failed.
	Snapshot(ctx context.Context, opts SnapshotOptions) (*Snapshot, error)
}

// Restorer is implemented by Drivers that can start a VM from a snapshot.
type Restorer interface {
	// Restore starts a VM from the snapshot in snapshotDir. cfg is the new VM: its
	// ID, Dir, Disk and Net are this VM's own (a clone's disk, another TAP); Kernel,
	// Initrd, VCPUs and MemoryMiB must be what the snapshot was taken with. Before
	// loading anything the driver reads the snapshot's SnapshotMeta and refuses,
	// with an error matching ErrIncompatibleSnapshot, a snapshot it cannot load
	// (see CheckCompatible). The VM comes up paused; Resume runs it. Failures leave
	// nothing running, as with Driver.Start. Memory files are never modified: one
	// snapshot can be restored many times (clones).
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
}

// Snapshot describes a snapshot written to a directory.
type Snapshot struct {
	Dir  string
	Meta SnapshotMeta
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
	// Files lists the snapshot's files (the meta file itself excluded).
	Files     []SnapshotFile `json:"files"`
	CreatedAt time.Time      `json:"created_at"`
}

// ErrIncompatibleSnapshot is matched by errors refusing to restore a snapshot taken
// with another VMM, VMM version, kernel, initrd or machine shape.
var ErrIncompatibleSnapshot = errors.New("incompatible snapshot")

// ErrNotPaused is returned by Snapshot on a VM that is not paused.
var ErrNotPaused = errors.New("vm is not paused")

// ErrUnsupported is returned for an operation a driver does not offer in some form
// (e.g. diff snapshots).
var ErrUnsupported = errors.New("not supported by this vmm driver")

// CheckCompatible returns nil when a snapshot whose meta is snap can be restored
// where the driver would produce want for the new VM (same VMM, VMM version,
// kernel, initrd, vCPUs, memory and machine arguments). Otherwise the error matches
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
	if len(diffs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: taken with %s", ErrIncompatibleSnapshot, strings.Join(diffs, "; "))
}

// WriteSnapshotMeta writes meta to dir/MetaFileName. Drivers call it last, so that a
// directory with a meta file holds a complete snapshot.
func WriteSnapshotMeta(dir string, meta SnapshotMeta) error {
	if meta.Format == 0 {
		meta.Format = SnapshotMetaFormat
	}
	b, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return fmt.Errorf("encode snapshot meta: %w", err)
	}
	p := filepath.Join(dir, MetaFileName)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write snapshot meta: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write snapshot meta: %w", err)
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
// milliseconds; drivers restoring often should cache digests by path, size and mtime.
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
