package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// NewNetns makes an empty network namespace, deleted when the test ends, and returns
// its name and path. The name is prefix with this process's pid appended, so runs of
// different packages at once do not collide. It skips without root or the ip command.
func NewNetns(t testing.TB, prefix string) (name, path string) {
	t.Helper()
	RequireRoot(t, "a network namespace")
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("skipped: no ip command to make a test namespace")
	}
	name = fmt.Sprintf("%s-%d", prefix, os.Getpid())
	if out, err := exec.Command(ip, "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() { _ = exec.Command(ip, "netns", "del", name).Run() })
	return name, "/var/run/netns/" + name
}
