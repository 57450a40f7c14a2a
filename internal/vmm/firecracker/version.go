package firecracker

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
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

// probeCache remembers binaryInfo per binary (path, size, mtime), so that a restore
// does not exec Firecracker twice more.
type probeCache struct {
	mu   sync.Mutex
	seen map[string]binaryInfo
}

func (c *probeCache) probe(ctx context.Context, bin string) (binaryInfo, error) {
	fi, err := os.Stat(bin)
	if err != nil {
		return binaryInfo{}, fmt.Errorf("firecracker binary: %w", err)
	}
	key := fmt.Sprintf("%s\x00%d\x00%d", bin, fi.Size(), fi.ModTime().UnixNano())
	c.mu.Lock()
	info, ok := c.seen[key]
	c.mu.Unlock()
	if ok {
		return info, nil
	}
	// The last word of the first line: "Firecracker v1.16.1", "v8.0.0".
	word := func(flag string) (string, error) {
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
	if info.release, err = word("--version"); err != nil {
		return info, err
	}
	if info.snapshot, err = word("--snapshot-version"); err != nil {
		return info, err
	}
	if !atLeast(info.release, minVersion) {
		return info, fmt.Errorf("firecracker %s is older than %d.%d, the oldest Wrenn drives", info.release, minVersion[0], minVersion[1])
	}
	c.mu.Lock()
	if c.seen == nil {
		c.seen = map[string]binaryInfo{}
	}
	c.seen[key] = info
	c.mu.Unlock()
	return info, nil
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

// digestCache remembers SHA-256 digests of boot files by path, size and mtime: a
// snapshot or restore records or compares them, and a kernel takes tens of
// milliseconds to hash.
type digestCache struct {
	mu   sync.Mutex
	sums map[string]string
}

func (c *digestCache) sum(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	key := fmt.Sprintf("%s\x00%d\x00%d", path, fi.Size(), fi.ModTime().UnixNano())
	c.mu.Lock()
	s, ok := c.sums[key]
	c.mu.Unlock()
	if ok {
		return s, nil
	}
	if s, err = vmm.FileSHA256(path); err != nil {
		return "", err
	}
	c.mu.Lock()
	if c.sums == nil {
		c.sums = map[string]string{}
	}
	c.sums[key] = s
	c.mu.Unlock()
	return s, nil
}
