package agent

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/wrennhq/wrenn/internal/envdclient"
	"github.com/wrennhq/wrenn/internal/hostproto"
)

// fsTimeout bounds one filesystem call into a guest: a listing, a mkdir, a remove. A
// guest that does not answer in that time is wedged; the caller should hear so rather
// than wait with it.
const fsTimeout = 30 * time.Second

// checkFSPath refuses a path the guest cannot be asked about: empty, or with a NUL
// byte (envd would reject it less clearly).
func checkFSPath(path string) error {
	switch {
	case path == "":
		return invalid("path is required")
	case strings.ContainsRune(path, 0):
		return invalid("path contains a NUL byte")
	}
	return nil
}

// fsCall runs one filesystem call against a running sandbox: the state check, the
// activity touch (before and after, so a long call does not let the idle timeout
// pause the sandbox under it), the deadline and the VM watch.
func fsCall[T any](ctx context.Context, m *Manager, id, op string, call func(ctx context.Context, c *envdclient.Client) (T, error)) (T, error) {
	var zero T
	sb, err := m.running(id, op)
	if err != nil {
		return zero, err
	}
	defer sb.touch(m.cfg.Now())
	ctx, cancel := context.WithTimeout(ctx, fsTimeout)
	defer cancel()
	out, err := call(watchVM(ctx, sb), sb.client())
	if err != nil {
		return zero, fmt.Errorf("%s in %s: %w", op, id, err)
	}
	return out, nil
}

// ListDir lists path in the sandbox to depth levels (0 = 1) as user ("" = the
// sandbox's default user). It keeps the first hostproto.MaxListEntries entries and
// reports whether there were more.
func (m *Manager) ListDir(ctx context.Context, id, path string, depth uint32, user string) ([]envdclient.Entry, bool, error) {
	if err := checkFSPath(path); err != nil {
		return nil, false, err
	}
	if depth > hostproto.MaxListDepth {
		return nil, false, invalid("depth %d: at most %d", depth, hostproto.MaxListDepth)
	}
	entries, err := fsCall(ctx, m, id, "list files", func(ctx context.Context, c *envdclient.Client) ([]envdclient.Entry, error) {
		return c.ListDir(ctx, path, depth, user)
	})
	if len(entries) > hostproto.MaxListEntries {
		return entries[:hostproto.MaxListEntries:hostproto.MaxListEntries], true, nil
	}
	return entries, false, err
}

// MakeDir creates path and its missing parents in the sandbox, owned by user.
func (m *Manager) MakeDir(ctx context.Context, id, path, user string) (envdclient.Entry, error) {
	if err := checkFSPath(path); err != nil {
		return envdclient.Entry{}, err
	}
	return fsCall(ctx, m, id, "make directories", func(ctx context.Context, c *envdclient.Client) (envdclient.Entry, error) {
		return c.MakeDir(ctx, path, user)
	})
}

// RemovePath removes path (recursively) from the sandbox. envd calls a missing path
// removed; it is checked first so that the caller learns of a mistyped path (a race
// with another remover still ends in success, which is what both wanted).
func (m *Manager) RemovePath(ctx context.Context, id, path, user string) error {
	if err := checkFSPath(path); err != nil {
		return err
	}
	_, err := fsCall(ctx, m, id, "remove files", func(ctx context.Context, c *envdclient.Client) (struct{}, error) {
		if _, err := c.Stat(ctx, path, user); err != nil {
			return struct{}{}, err
		}
		return struct{}{}, c.Remove(ctx, path, user)
	})
	return err
}
