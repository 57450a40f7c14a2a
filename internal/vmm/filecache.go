package vmm

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// FileCache caches a value computed from a file — a boot file's digest, what a VMM
// binary says about its version — keyed by the file's path, size, mtime and inode, so
// that a replaced or rewritten file is computed again. The zero value is ready.
type FileCache[T any] struct {
	mu sync.Mutex
	m  map[fileKey]T
}

type fileKey struct {
	path     string
	size     int64
	mtime    int64
	dev, ino uint64
}

// Get returns the cached value for path, or computes and caches it. Errors are not
// cached.
func (c *FileCache[T]) Get(path string, compute func(string) (T, error)) (T, error) {
	var zero T
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return zero, fmt.Errorf("stat %s: %w", path, err)
	}
	key := fileKey{path, st.Size, st.Mtim.Nano(), st.Dev, st.Ino}
	c.mu.Lock()
	v, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return v, nil
	}
	v, err := compute(path)
	if err != nil {
		return zero, err
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = map[fileKey]T{}
	}
	c.m[key] = v
	c.mu.Unlock()
	return v, nil
}
