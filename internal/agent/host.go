package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"

	"github.com/wrennhq/wrenn/internal/rootfs"
)

func hostCPUs() int { return runtime.NumCPU() }

// cloneDisk makes the sandbox's copy-on-write disk and, when a larger size is asked
// for, grows the file and its ext4 filesystem (offline, before boot: fast for a grow).
func cloneDisk(ctx context.Context, template, disk string, sizeMiB int) error {
	if _, err := rootfs.Clone(template, disk); err != nil {
		return err
	}
	if sizeMiB == 0 {
		return nil
	}
	fi, err := os.Stat(disk)
	if err != nil {
		return err
	}
	want := int64(sizeMiB) << 20
	if want < fi.Size() {
		return fmt.Errorf("%w: disk %d MiB is smaller than the template's %d MiB", ErrInvalid, sizeMiB, fi.Size()>>20)
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
