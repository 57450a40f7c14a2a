package leakcheck

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/wrennhq/wrenn/internal/testutil"
)

// TestEveryKindIsSeen leaves one of each kind of thing behind and checks the
// checker names each, then removes them and checks it reports nothing.
func TestEveryKindIsSeen(t *testing.T) {
	testutil.RequireRoot(t, "network namespaces, links, nftables tables, mounts and cgroups")
	dir := t.TempDir()
	opts := Options{Dirs: []string{filepath.Join(dir, "sandboxes")}, Processes: []string{"envd"}}
	if err := os.Mkdir(opts.Dirs[0], 0o755); err != nil {
		t.Fatal(err)
	}
	before, err := Take(opts)
	if err != nil {
		t.Fatal(err)
	}
	suffix := fmt.Sprint(os.Getpid() % 100000)

	ns, _ := testutil.NewNetns(t, "wrenn-leak")
	link := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "wrenn-lk" + suffix}, PeerName: "wrenn-lp" + suffix}
	if err := netlink.LinkAdd(link); err != nil {
		t.Fatalf("add a veth pair: %v", err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(link) })
	conn, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	table := conn.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "wrenn-leak" + suffix})
	if err := conn.Flush(); err != nil {
		t.Fatalf("add an nftables table: %v", err)
	}
	t.Cleanup(func() { conn.DelTable(table); _ = conn.Flush() })
	// A process named envd: a copy of sleep under that name.
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	envd := filepath.Join(dir, "envd")
	raw, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(envd, raw, 0o755); err != nil {
		t.Fatal(err)
	}
	proc := exec.Command(envd, "600")
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proc.Process.Kill(); _ = proc.Wait() })
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(mnt, syscall.MNT_DETACH) })
	cgroup := ""
	for _, h := range []string{"pids", "unified", ""} {
		if p := filepath.Join("/sys/fs/cgroup", h, "wrenn-leak"+suffix); os.Mkdir(p, 0o755) == nil {
			cgroup = p
			t.Cleanup(func() { _ = os.Remove(p) })
			break
		}
	}
	file := filepath.Join(opts.Dirs[0], "sb1", "rootfs.ext4")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	after, err := Take(opts)
	if err != nil {
		t.Fatal(err)
	}
	left := before.Leftovers(after)
	want := []string{
		"netns: " + ns,
		"mount: /run/netns/" + ns, // a named namespace is a bind mount
		"link: " + link.Name + " (veth)",
		"link: " + link.PeerName + " (veth)",
		"nft table: inet " + table.Name,
		fmt.Sprintf("process: %d envd", proc.Process.Pid),
		"mount: " + mnt,
		"file: " + filepath.Dir(file),
		"file: " + file,
	}
	if cgroup != "" {
		want = append(want, "cgroup: "+cgroup)
	} else {
		t.Log("no cgroup hierarchy takes a new directory here: the cgroup kind is not checked")
	}
	for _, w := range want {
		if !slices.Contains(left, w) {
			t.Errorf("leftovers do not name %q:\n%s", w, strings.Join(left, "\n"))
		}
	}
	if len(left) != len(want) {
		t.Errorf("leftovers %d, want %d:\n%s", len(left), len(want), strings.Join(left, "\n"))
	}

	// Everything removed: nothing is left over.
	if err := os.RemoveAll(filepath.Dir(file)); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	_ = proc.Process.Kill()
	_ = proc.Wait()
	if cgroup != "" {
		if err := os.Remove(cgroup); err != nil {
			t.Fatal(err)
		}
	}
	conn.DelTable(table)
	if err := conn.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkDel(link); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del: %v %s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if left, err := Wait(ctx, before, opts); err != nil || len(left) > 0 {
		t.Fatalf("after removing everything: %v %v", left, err)
	}
}
