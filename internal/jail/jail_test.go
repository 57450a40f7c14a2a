package jail

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/testutil"
)

const testUID, testGID = 4242001, 4242001

// command runs s through a helper the way a driver does: this test binary is the
// helper (the package's init), in a new mount namespace.
func command(t *testing.T, s Spec) *exec.Cmd {
	t.Helper()
	argv, err := HelperArgv(s)
	if err != nil {
		t.Fatal(err)
	}
	return &exec.Cmd{
		Path: HelperPath, Args: argv,
		SysProcAttr: &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS},
	}
}

func needRoot(t *testing.T) {
	if why := testutil.NotRoot("a jail mounts, pivots and changes uid"); why != "" {
		t.Skip(why)
	}
}

// A jailed shell sees only what was bound in, runs as the jail's uid/gid, can write
// its writable binds and nothing else.
func TestJailShowsOnlyItsMounts(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	rw, ro := filepath.Join(dir, "rw"), filepath.Join(dir, "ro")
	for _, f := range []string{rw, ro} {
		if err := os.WriteFile(f, []byte("before\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(rw, testUID, testGID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(ro, testUID, testGID); err != nil {
		t.Fatal(err)
	}
	script := strings.Join([]string{
		"id -u; id -g; pwd",
		"ls -A / | tr '\\n' ' '; echo",
		"ls -A /etc; ls -A /dev | tr '\\n' ' '; echo",
		"ls -A /data | tr '\\n' ' '; echo",
		"echo after > /data/rw && echo rw-written",
		"(echo after > /data/ro) 2>/dev/null && echo ro-WRITTEN || echo ro-refused",
		"(touch /new) 2>/dev/null && echo root-WRITTEN || echo root-refused",
		"(touch /usr/new) 2>/dev/null && echo usr-WRITTEN || echo usr-refused",
		"test -e /proc/self && echo proc-PRESENT || echo proc-absent",
		"test -e /etc/shadow && echo shadow-PRESENT || echo shadow-absent",
		"test -e " + dir + " && echo hostdir-PRESENT || echo hostdir-absent",
	}, "\n")
	cmd := command(t, Spec{
		Argv: []string{"/usr/bin/sh", "-c", script}, Dir: "/data",
		UID: testUID, GID: testGID, SystemDirs: true,
		Mounts: []Mount{{Source: rw, Target: "/data/rw", Writable: true}, {Source: ro, Target: "/data/ro"}},
	})
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("jailed shell: %v\n%s", err, out)
	}
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i := range got {
		got[i] = strings.TrimSpace(got[i])
	}
	want := []string{
		strconv.Itoa(testUID), strconv.Itoa(testGID), "/data",
		"bin data dev etc lib lib32 lib64 libx32 sbin usr",
		"ld.so.cache", "null random urandom zero",
		"ro rw",
		"rw-written", "ro-refused", "root-refused", "usr-refused",
		"proc-absent", "shadow-absent", "hostdir-absent",
	}
	// The root lists the host's /bin, /lib… links only where the host has them.
	var root []string
	for _, e := range strings.Fields(want[3]) {
		if _, err := os.Lstat("/" + e); err == nil || e == "data" || e == "dev" {
			root = append(root, e)
		}
	}
	want[3] = strings.Join(root, " ")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("inside the jail:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if b, _ := os.ReadFile(rw); string(b) != "after\n" {
		t.Errorf("writable bind: host file holds %q", b)
	}
	if b, _ := os.ReadFile(ro); string(b) != "before\n" {
		t.Errorf("read-only bind: host file holds %q", b)
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(b, []byte(rootDir)) {
		t.Errorf("the jail's mounts show on the host:\n%s", b)
	}
}

// Seen from the host, a jailed process has no capabilities, no_new_privs, the
// jail's ids and groups, the cgroup it was told to join, and the jail as its root.
func TestJailedProcessFromOutside(t *testing.T) {
	needRoot(t)
	cg := testCgroup(t)
	cmd := command(t, Spec{
		Argv: []string{"/usr/bin/sleep", "30"},
		UID:  testUID, GID: testGID, Groups: []uint32{4242777}, SystemDirs: true,
		CgroupProcs: []string{filepath.Join(cg, "cgroup.procs")},
	})
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := strconv.Itoa(cmd.Process.Pid)
	// Wait for the exec: the helper is this test binary, the jailed process sleep.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if exe, _ := os.Readlink("/proc/" + pid + "/exe"); strings.HasSuffix(exe, "/sleep") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no exec of sleep after 10 s; stderr: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(status), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	id := strconv.Itoa(testUID)
	for k, want := range map[string]string{
		"Uid": strings.Repeat(id+" ", 3) + id, "Gid": strings.Repeat(id+" ", 3) + id,
		"Groups": "4242777", "NoNewPrivs": "1",
		"CapPrm": "0000000000000000", "CapEff": "0000000000000000", "CapAmb": "0000000000000000",
	} {
		if fields[k] != want {
			t.Errorf("%s: %q, want %q", k, fields[k], want)
		}
	}
	if procs, _ := os.ReadFile(filepath.Join(cg, "cgroup.procs")); strings.TrimSpace(string(procs)) != pid {
		t.Errorf("cgroup.procs of the test cgroup: %q, want %s", procs, pid)
	}
	entries, err := os.ReadDir("/proc/" + pid + "/root/")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if n := e.Name(); n == "var" || n == "proc" || n == "sys" || n == "root" || n == "home" || n == "run" {
			t.Errorf("the jail's root holds /%s", n)
		}
	}
}

// testCgroup makes a pids cgroup (v1) or a cgroup (v2) for one test and removes it
// after the test's processes are gone.
func testCgroup(t *testing.T) string {
	t.Helper()
	base := "/sys/fs/cgroup/pids"
	if _, err := os.Stat(base); err != nil {
		base = "/sys/fs/cgroup" // unified hierarchy
	}
	dir := filepath.Join(base, "wrenn-jail-test-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("cannot make a cgroup here: %v", err)
	}
	t.Cleanup(func() {
		for i := 0; i < 100; i++ {
			if err := os.Remove(dir); err == nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("cgroup %s not removed", dir)
	})
	return dir
}

// A helper that cannot build its jail exits 126 with the step and the reason on
// stderr, and never runs the command.
func TestHelperFailureIsReported(t *testing.T) {
	needRoot(t)
	src := filepath.Join(t.TempDir(), "gone")
	if err := os.WriteFile(src, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := command(t, Spec{Argv: []string{"/usr/bin/true"}, UID: testUID, GID: testGID, SystemDirs: true,
		Mounts: []Mount{{Source: src}}})
	os.Remove(src) // between the caller's check and the helper's bind
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 126 {
		t.Fatalf("helper: %v, want exit status 126; output %q", err, out)
	}
	if !strings.Contains(string(out), "wrenn-jail: ") || !strings.Contains(string(out), src) {
		t.Errorf("stderr %q does not say which bind failed", out)
	}
}

func TestSpecValidation(t *testing.T) {
	ok := Spec{Argv: []string{"/bin/x"}, UID: 1, GID: 1}
	for name, mod := range map[string]func(*Spec){
		"relative argv0": func(s *Spec) { s.Argv = []string{"x"} },
		"no argv":        func(s *Spec) { s.Argv = nil },
		"root uid":       func(s *Spec) { s.UID = 0 },
		"root gid":       func(s *Spec) { s.GID = 0 },
		"relative dir":   func(s *Spec) { s.Dir = "vm" },
		"mount on /":     func(s *Spec) { s.Mounts = []Mount{{Source: "/tmp", Target: "/"}} },
		"unclean target": func(s *Spec) { s.Mounts = []Mount{{Source: "/tmp", Target: "/a/../b"}} },
		"twice":          func(s *Spec) { s.Mounts = []Mount{{Source: "/tmp", Target: "/a"}, {Source: "/usr", Target: "/a"}} },
		"missing source": func(s *Spec) { s.Mounts = []Mount{{Source: "/nonexistent-wrenn"}} },
		"not procs":      func(s *Spec) { s.CgroupProcs = []string{"/sys/fs/cgroup/pids/tasks"} },
	} {
		s := ok
		mod(&s)
		if _, err := HelperArgv(s); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := HelperArgv(ok); err != nil {
		t.Errorf("valid spec: %v", err)
	}
	if isHelper([]string{HelperName}) || isHelper([]string{"x", "{}"}) || !isHelper([]string{HelperName, "{}"}) {
		t.Error("isHelper")
	}
}
