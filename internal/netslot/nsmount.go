package netslot

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Named network namespaces are nsfs bind mounts on files under netnsDir, the convention
// iproute2 set. iproute2's `ip netns add` also turns netnsDir into a shared mount point
// of its own before its first mount there, and when it finds netnsDir not yet a mount
// point it bind-mounts the directory onto itself, recursively. A namespace mounted
// before that (on the plain directory) is then copied into the new mount and the
// original stays underneath it, shadowed: unmounting the path only removes the copy,
// the file can no longer be removed (EBUSY), and the original mount — and with it the
// namespace — stays until reboot. So every namespace mount here goes through
// PrepareNetNSDir first, the way iproute2 does it; with netnsDir shared, later bind
// mounts stacked on it are peers, and an unmount in one propagates to the others.

// maxStacked bounds how many mounts deleteNetNS removes from one path; more than a
// handful means something keeps mounting there.
const maxStacked = 64

// PrepareNetNSDir makes netnsDir a shared mount point as iproute2's netns_add does:
// create the directory, make it shared (recursively), and when that fails because it is
// not a mount point, bind-mount it onto itself and try again. It holds iproute2's lock
// (flock on the directory) meanwhile, so it cannot race an `ip netns add` into stacking
// two bind mounts. It is idempotent and cheap once done; callers that mount namespaces
// under netnsDir without this package (tests) call it first.
func PrepareNetNSDir() error {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", netnsDir, err)
	}
	lock, err := unix.Open(netnsDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", netnsDir, err)
	}
	defer unix.Close(lock)
	// iproute2 goes on without the lock when it cannot take it; so do we. Closing the
	// descriptor releases it.
	_ = unix.Flock(lock, unix.LOCK_EX)
	bound := false
	for {
		err := unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		if err == nil {
			return nil
		}
		// EINVAL: not a mount point (yet). Anything else, or EINVAL after the bind mount,
		// is a real failure.
		if !errors.Is(err, unix.EINVAL) || bound {
			return fmt.Errorf("make %s a shared mount: %w", netnsDir, err)
		}
		if err := unix.Mount(netnsDir, netnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mount %s onto itself: %w", netnsDir, err)
		}
		bound = true
	}
}

// mountNetNS makes the calling thread's network namespace a named one: it prepares
// netnsDir, creates netnsDir/name (os.ErrExist when it exists) and bind-mounts the
// namespace on it. The caller must hold the thread (runtime.LockOSThread) inside the
// namespace. On failure nothing of it is left.
func mountNetNS(name string) error {
	if err := PrepareNetNSDir(); err != nil {
		return err
	}
	path := netnsDir + "/" + name
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err // *PathError: names the path, matches os.ErrExist
	}
	f.Close()
	if err := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("bind-mount namespace on %s: %w", path, err)
	}
	return nil
}

// DeleteNamedNS removes a named namespace: it detaches every mount on netnsDir/name —
// there may be several stacked on one another — and removes the file. A namespace that
// is already gone, or a file that was never mounted (a create cut short), is no error.
// The namespace itself goes once no process or open handle holds it.
func DeleteNamedNS(name string) error {
	path := netnsDir + "/" + name
	for n := 0; ; n++ {
		if n == maxStacked {
			return fmt.Errorf("unmount %s: still a mount point after %d unmounts", path, n)
		}
		err := unix.Unmount(path, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		if errors.Is(err, unix.EINVAL) {
			break // no (more) mount on it
		}
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", path, err)
		}
	}
	err := os.Remove(path)
	if err == nil || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if errors.Is(err, unix.EBUSY) {
		// The file is a mount point elsewhere: a mount shadowed by a later mount of
		// netnsDir (made before PrepareNetNSDir ran, e.g. by an older Wrenn).
		if m, merr := netnsMounts(name); merr == nil && len(m) > 0 {
			return fmt.Errorf("%w (still mounted %d time(s) beneath a later mount of %s, see /proc/self/mountinfo)", err, len(m), netnsDir)
		}
	}
	return err
}

// netnsMounts returns the lines of /proc/self/mountinfo whose mount point is a file
// called name in a directory called netns — shadowed mounts included, which is what a
// path lookup cannot see.
func netnsMounts(name string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// "id parent major:minor root mountpoint options ...": the 5th field, with
		// spaces and the like octal-escaped (names here have none).
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := fields[4]
		if filepath.Base(mp) == name && filepath.Base(filepath.Dir(mp)) == "netns" {
			out = append(out, sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read /proc/self/mountinfo: %w", err)
	}
	return out, nil
}
