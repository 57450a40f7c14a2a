package netslot

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/wrennhq/wrenn/internal/testutil"
)

// Slot indices of these tests: 64700..64709.

// ipNetns runs the real iproute2 `ip netns ...`, as an operator (or the e2e harness)
// would, next to the slots.
func ipNetns(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// checkNoMounts fails when /proc/self/mountinfo still mounts something on a file named
// after the namespace, shadowed mounts included.
func checkNoMounts(t *testing.T, name string) {
	t.Helper()
	m, err := netnsMounts(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range m {
		t.Errorf("%s still mounted: %s", name, line)
	}
}

// mountPoints counts the mounts on netnsDir itself (stacked ones each count).
func mountPoints(t *testing.T) int {
	t.Helper()
	dir, err := filepath.EvalSymlinks(netnsDir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			n++
		}
	}
	return n
}

// An operator's `ip netns add` / `ip netns del` of an unrelated namespace, while a slot
// exists, must not keep the slot from being destroyed nor leave its mount behind.
func TestDestroyAfterIPNetnsAdd(t *testing.T) {
	testutil.RequireRoot(t, rootFor)
	const idx, other = 64700, "wrenn-test-unrelated-64700"
	t.Cleanup(func() { checkNoLeftovers(t, idx, idx) })
	s, err := DefaultConfig().Create(idx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Destroy() })
	_ = exec.Command("ip", "netns", "del", other).Run() // a leftover of an interrupted run
	ipNetns(t, "add", other)
	ipNetns(t, "del", other)
	if err := s.Destroy(); err != nil {
		t.Fatalf("destroy after ip netns add/del: %v", err)
	}
	checkNoMounts(t, s.NetNS)
	checkNoMounts(t, other)
}

// remountChild, when set, is the mount namespace (/proc/self/ns/mnt) of the test process
// that re-ran this test binary in a mount namespace of its own.
const remountChild = "WRENN_NETSLOT_TEST_PARENT_MNTNS"

// TestNetNSDirRemount starts from what a fresh host has — netnsDir a plain directory,
// not a mount point — and remounts netnsDir between two slots; both slots must be
// destroyed cleanly. It also checks that the setup reproduces the fault this guards
// against: a namespace mounted without PrepareNetNSDir is shadowed by iproute2's first
// `ip netns add` and cannot be removed.
//
// Making netnsDir a plain directory again, and stacking mounts on it, would break every
// other namespace on the host; so the test runs itself again in a private mount
// namespace (which shares the directory's files, the host's network namespace and its
// firewall, so slot bookkeeping stays right) and does it there.
func TestNetNSDirRemount(t *testing.T) {
	testutil.RequireRoot(t, rootFor)
	const a, b = 64701, 64702
	const oldStyle, other = "wrenn-test-oldmount-64703", "wrenn-test-unrelated-64703"
	parent := os.Getenv(remountChild)
	if parent == "" {
		self, err := os.Readlink("/proc/self/ns/mnt")
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestNetNSDirRemount$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), remountChild+"="+self)
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
		out, err := cmd.CombinedOutput()
		t.Logf("in a private mount namespace:\n%s", out)
		// The child's mounts died with its mount namespace, but not the files it made in
		// the shared directory: the one it could not remove on purpose, and on failure
		// its slots'. Here they are plain files again.
		_ = DeleteNamedNS(oldStyle)
		_ = DeleteNamedNS(other)
		if err != nil {
			for _, i := range []int{a, b} {
				_ = DeleteNamedNS(nsPrefix + strconv.Itoa(i))
			}
			_ = releaseHost()
			t.Fatalf("child: %v", err)
		}
		checkNoLeftovers(t, a, b)
		return
	}

	// In the child. Never touch the mounts of a mount namespace that is not our own.
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil || self == parent {
		t.Fatalf("not in a mount namespace of its own (%s, parent %s, %v): refusing to remount %s", self, parent, err, netnsDir)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Fatalf("make / private: %v", err)
	}
	// plainDir detaches every mount on netnsDir (here only), leaving the directory as a
	// fresh host has it.
	plainDir := func() {
		t.Helper()
		for mountPoints(t) > 0 {
			if err := unix.Unmount(netnsDir, unix.MNT_DETACH); err != nil {
				t.Fatalf("unmount %s: %v", netnsDir, err)
			}
		}
	}
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	plainDir()
	_ = exec.Command("ip", "netns", "del", other).Run()

	c := DefaultConfig()
	sa, err := c.Create(a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sa.Destroy() })
	if n := mountPoints(t); n != 1 {
		t.Errorf("after the first slot %s has %d mounts, want 1 (shared, as iproute2 makes it)", netnsDir, n)
	}
	ipNetns(t, "add", other) // iproute2 finds the directory prepared and keeps it
	ipNetns(t, "del", other)
	if n := mountPoints(t); n != 1 {
		t.Errorf("after ip netns add %s has %d mounts, want 1", netnsDir, n)
	}
	// Someone mounts the directory again, on top (as iproute2 itself would have done on
	// the plain directory).
	if err := unix.Mount(netnsDir, netnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		t.Fatalf("remount %s: %v", netnsDir, err)
	}
	sb, err := c.Create(b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Destroy() })
	for _, s := range []*Slot{sa, sb} {
		if err := s.Destroy(); err != nil {
			t.Errorf("destroy slot %d: %v", s.Index, err)
		}
		checkNoMounts(t, s.NetNS)
	}
	checkNoLeftovers(t, a, b)

	// The fault itself, as before the fix: a namespace mounted on the plain directory,
	// then `ip netns add`.
	plainDir()
	if err := mountOldStyle(oldStyle); err != nil {
		t.Fatal(err)
	}
	ipNetns(t, "add", other)
	ipNetns(t, "del", other)
	err = DeleteNamedNS(oldStyle)
	if !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), "beneath a later mount") {
		t.Errorf("deleting a namespace shadowed by ip netns add: %v, want EBUSY naming the shadowing mount", err)
	}
	if m, _ := netnsMounts(oldStyle); len(m) != 1 {
		t.Errorf("shadowed namespace: %d mounts left, want the 1 that reproduces the fault", len(m))
	}
}

// mountOldStyle mounts a new namespace under netnsDir the way this package did before
// PrepareNetNSDir (vishvananda/netns's NewNamed, on whatever netnsDir is).
func mountOldStyle(name string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if err == nil {
			ns.Close()
		}
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
