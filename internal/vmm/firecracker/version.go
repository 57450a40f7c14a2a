package firecracker

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/wrennhq/wrenn/internal/vmm"
)

// minVersion is the oldest Firecracker the driver drives: 1.13 takes
// track_dirty_pages on snapshot load (exact diffs after a restore), and from 1.12 the
// uffd handshake carries page_size and the socket stays open (a hang-up means the VMM
// is gone).
var minVersion = [2]int{1, 13}

// binaryInfo is what a Firecracker binary says about itself.
type binaryInfo struct {
	release  string // "1.16.1"
	snapshot string // snapshot format version, "8.0.0": what decides whether a snapshot loads
}

// probe asks a Firecracker binary for its versions, once per binary file (cache), so
// that a restore does not exec Firecracker twice more.
func probe(ctx context.Context, cache *vmm.FileCache[binaryInfo], bin string) (binaryInfo, error) {
	info, err := cache.Get(bin, func(bin string) (binaryInfo, error) {
		var info binaryInfo
		var err error
		if info.release, err = lastWord(ctx, bin, "--version"); err != nil {
			return info, err
		}
		info.snapshot, err = lastWord(ctx, bin, "--snapshot-version")
		return info, err
	})
	if err != nil {
		return info, fmt.Errorf("firecracker binary: %w", err)
	}
	if !atLeast(info.release, minVersion) {
		return info, fmt.Errorf("firecracker %s is older than %d.%d, the oldest Wrenn drives", info.release, minVersion[0], minVersion[1])
	}
	return info, nil
}

// lastWord runs bin flag and returns the last word of the first line it prints,
// without a leading "v": "Firecracker v1.16.1" → "1.16.1", "v8.0.0" → "8.0.0".
func lastWord(ctx context.Context, bin, flag string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, flag).Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", bin, flag, err)
	}
	f := strings.Fields(strings.SplitN(string(out), "\n", 2)[0])
	if len(f) == 0 {
		return "", fmt.Errorf("%s %s printed nothing", bin, flag)
	}
	return strings.TrimPrefix(f[len(f)-1], "v"), nil
}

// atLeast compares a "major.minor[.patch…]" version with want.
func atLeast(v string, want [2]int) bool {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return false
	}
	return major > want[0] || major == want[0] && minor >= want[1]
}
