package rootfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// DiskName is a sandbox's root disk file inside its directory.
const DiskName = "rootfs.ext4"

// ErrTooSmall is returned when a disk size below the template's is asked for.
var ErrTooSmall = errors.New("disk smaller than its template")

// CloneDisks keeps each sandbox's root disk as a file in the sandbox's directory: a
// reflink or sparse copy of the template's disk (Clone), grown on request. It is the
// first implementation of the host agent's Disks seam; a device-mapper or
// snapshot-aware one keeps the same three operations.
type CloneDisks struct{}

// Create clones template into dir and, when sizeMiB is larger than the template,
// grows the file and its ext4 filesystem (offline, before boot: fast for a grow). It
// returns the disk's path; on failure nothing of it remains.
func (CloneDisks) Create(ctx context.Context, template, dir string, sizeMiB int) (string, error) {
	disk := filepath.Join(dir, DiskName)
	if _, err := Clone(template, disk); err != nil {
		return "", err
	}
	if err := grow(ctx, disk, sizeMiB); err != nil {
		_ = os.Remove(disk)
		return "", err
	}
	return disk, nil
}

func grow(ctx context.Context, disk string, sizeMiB int) error {
	if sizeMiB == 0 {
		return nil
	}
	fi, err := os.Stat(disk)
	if err != nil {
		return fmt.Errorf("grow disk: %w", err)
	}
	want := int64(sizeMiB) << 20
	if want < fi.Size() {
		return fmt.Errorf("%w: %d MiB asked, the template has %d MiB", ErrTooSmall, sizeMiB, fi.Size()>>20)
	}
	if want == fi.Size() {
		return nil
	}
	if err := os.Truncate(disk, want); err != nil {
		return fmt.Errorf("grow disk: %w", err)
	}
	// resize2fs refuses an unchecked filesystem; -f skips that on a fresh clone.
	if out, err := exec.CommandContext(ctx, "resize2fs", "-f", disk).CombinedOutput(); err != nil {
		return fmt.Errorf("resize filesystem: %v: %s", err, out)
	}
	return nil
}

// Adopt returns the disk a sandbox in dir already has (after an agent restart).
func (CloneDisks) Adopt(dir string) (string, error) {
	disk := filepath.Join(dir, DiskName)
	if _, err := os.Stat(disk); err != nil {
		return "", fmt.Errorf("adopt disk: %w", err)
	}
	return disk, nil
}

// Flatten copies the disk of the sandbox in dir to dst (a reflink or sparse copy),
// fsynced.
func (CloneDisks) Flatten(_ context.Context, dir, dst string) error {
	_, err := CloneWith(filepath.Join(dir, DiskName), dst, CloneOptions{Sync: true})
	return err
}

// SyncFile fsyncs a file's data.
func SyncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}

// Release removes a sandbox's disk; one already gone is not an error.
func (CloneDisks) Release(dir string) error {
	if err := os.Remove(filepath.Join(dir, DiskName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove disk: %w", err)
	}
	return nil
}
