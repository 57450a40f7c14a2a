package qemu

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/testutil"
	"github.com/wrennhq/wrenn/internal/vmm"
)

// A jailed QEMU boots, takes its NIC from a TAP descriptor, runs as the jail's uid
// with no capabilities and no_new_privs, sees only its own files, is adopted by
// another driver, pauses to a snapshot and resumes from it under another uid (a
// resume may land on another slot), and leaves nothing behind.
func TestVMJailed(t *testing.T) {
	requireQEMU(t)
	ns, nsPath := testutil.NewNetns(t, "wrenn-qj")
	for _, args := range [][]string{{"-n", ns, "tuntap", "add", "dev", "tap0", "mode", "tap", "vnet_hdr"}, {"-n", ns, "link", "set", "tap0", "up"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	cfg := realConfig(t, "jailed", testKernel(t), testInitramfs(t))
	cfg.Net = testNet()
	cfg.Net.NetNS = nsPath
	cfg.KernelArgs = counterArgs
	cfg.Jail = &vmm.Jail{UID: 4243001, GID: 4243001}
	d := New(Options{})
	if err := os.Chmod(cfg.Initrd, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Start(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "not readable by others") {
		t.Fatalf("jailed start with an initrd only root may read: %v", err)
	}
	if err := os.Chmod(cfg.Initrd, 0o644); err != nil { // as image builds make them
		t.Fatal(err)
	}
	m := startReal(t, d, cfg)
	token, _ := waitNewTick(t, m.ConsoleLog(), bootTimeout)
	checkJailed(t, m.PID(), cfg)

	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	adopted, err := New(Options{}).Adopt(ctx, cfg.Dir)
	if err != nil {
		t.Fatalf("adopt a jailed vm: %v", err)
	}
	if adopted.PID() != m.PID() {
		t.Fatalf("adopted pid %d, want %d", adopted.PID(), m.PID())
	}
	_, before := waitNewTick(t, m.ConsoleLog(), 10*time.Second)
	snap, _ := pauseToSnapshot(t, adopted.(*Machine))

	cfg.Jail = &vmm.Jail{UID: 4243002, GID: 4243002}
	m2, _ := resumeFromSnapshot(t, d, cfg, snap)
	checkJailed(t, m2.PID(), cfg)
	if tok, after := waitNewTick(t, m2.ConsoleLog(), 10*time.Second); tok != token || after <= before {
		t.Errorf("the guest's counter went from %s/%d to %s/%d over a jailed pause and resume", token, before, tok, after)
	}
	if err := m2.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	assertNoProcesses(t, cfg.Dir)
}

// checkJailed looks at a jailed QEMU from the host.
func checkJailed(t *testing.T, pid int, cfg vmm.Config) {
	t.Helper()
	proc := "/proc/" + strconv.Itoa(pid)
	status, err := os.ReadFile(proc + "/status")
	if err != nil {
		t.Fatal(err)
	}
	uid := strconv.Itoa(int(cfg.Jail.UID))
	for _, want := range []string{
		"\nUid:\t" + uid + "\t" + uid + "\t" + uid + "\t" + uid + "\n",
		"\nGid:\t" + uid + "\t" + uid + "\t" + uid + "\t" + uid + "\n",
		"\nNoNewPrivs:\t1\n", "\nCapEff:\t0000000000000000\n", "\nCapPrm:\t0000000000000000\n",
	} {
		if !strings.Contains(string(status), want) {
			t.Errorf("jailed qemu's status lacks %q", strings.TrimSpace(want))
		}
	}
	var root []string
	entries, err := os.ReadDir(proc + "/root/")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		root = append(root, e.Name())
	}
	for _, absent := range []string{"proc", "sys", "var", "home", "root", "run"} {
		if slices.Contains(root, absent) && !strings.HasPrefix(cfg.Dir, "/"+absent+"/") {
			t.Errorf("the jail's root holds /%s: %q", absent, root)
		}
	}
	var dir []string
	entries, err = os.ReadDir(proc + "/root" + cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		dir = append(dir, e.Name())
	}
	if want := []string{consoleName, memoryName, pidFileName}; !slices.Equal(dir, want) {
		t.Errorf("the VM's dir in the jail holds %q, want only %q", dir, want)
	}
	if _, err := os.Stat(proc + "/root" + filepath.Join(cfg.Dir, stateFileName)); err == nil {
		t.Error("the driver's state file is visible in the jail")
	}
}
