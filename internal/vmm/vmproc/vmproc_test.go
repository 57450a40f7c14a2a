package vmproc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/testutil"
)

func TestProcHelpers(t *testing.T) {
	start, err := StartTime(os.Getpid())
	if err != nil || start == 0 {
		t.Fatalf("StartTime(self) = %d, %v", start, err)
	}
	exe, err := Exe(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	if !SameBinary(exe, self) {
		t.Errorf("Exe %q vs os.Executable %q", exe, self)
	}
	if SameBinary(exe, "/usr/bin/qemu-system-x86_64") {
		t.Error("SameBinary matched another binary")
	}
	if h, err := Open(os.Getpid(), start+1); err == nil {
		h.Close()
		t.Error("Open accepted a wrong start time")
	}
	if !HasArgPair([]string{"q", "-pidfile", "/d/qemu.pid"}, "-pidfile", "/d/qemu.pid") {
		t.Error("HasArgPair")
	}
}

func sleeper(t *testing.T) (*exec.Cmd, Identity) {
	t.Helper()
	bin, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	out, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	argv := []string{bin, "1000"}
	cmd, err := Spawn(Spec{Argv: argv, Dir: t.TempDir(), Output: out})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Start returns once the exec is past its point of no return, which is a moment
	// before the kernel has set up the new program's argv; wait for that.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if args, _ := Cmdline(cmd.Process.Pid); slices.Equal(args, argv) || time.Now().After(deadline) {
			break
		}
	}
	start, err := StartTime(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return cmd, Identity{PID: cmd.Process.Pid, ProcStart: start, Binary: bin, Argv: argv}
}

func TestSpawnAttachKill(t *testing.T) {
	cmd, id := sleeper(t)
	if pgid, _ := syscall.Getpgid(id.PID); pgid != id.PID {
		t.Errorf("pgid %d, want its own group %d", pgid, id.PID)
	}
	for name, bad := range map[string]func(*Identity){
		"start time": func(i *Identity) { i.ProcStart++ },
		"binary":     func(i *Identity) { i.Binary = "/usr/bin/qemu-system-x86_64" },
		"argv":       func(i *Identity) { i.Argv = []string{i.Argv[0], "999"} },
	} {
		other := id
		other.Argv = append([]string(nil), id.Argv...)
		bad(&other)
		if h, err := Attach(other); !errors.Is(err, ErrNotSame) {
			if h != nil {
				h.Close()
			}
			t.Errorf("Attach with another %s: %v", name, err)
		}
	}
	h, err := Attach(id)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if !h.Alive() || h.PID() != id.PID {
		t.Fatal("handle: not alive or wrong pid")
	}
	go cmd.Wait() // reap, as init would for an adopted VM
	if err := h.Kill(); err != nil {
		t.Fatal(err)
	}
	if !h.WaitTimeout(5 * time.Second) {
		t.Fatal("process alive 5 s after Kill")
	}
	if err := h.Kill(); err != nil {
		t.Errorf("second Kill: %v", err)
	}
	if _, err := Attach(id); !errors.Is(err, ErrNotSame) {
		t.Errorf("Attach to a dead process: %v", err)
	}
}

func TestSpawnRefusesRelativePath(t *testing.T) {
	if _, err := Spawn(Spec{Argv: []string{"sleep", "1"}}); err == nil {
		t.Error("Spawn ran a relative argv[0]")
	}
}

func TestTails(t *testing.T) {
	p := filepath.Join(t.TempDir(), "console.log")
	var b strings.Builder
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := ConsoleTail(p, 3); got != "line 97\nline 98\nline 99" {
		t.Errorf("ConsoleTail = %q", got)
	}
	if got := ReadTail(p, 20); got != "line 98\nline 99" {
		t.Errorf("ReadTail = %q (want whole lines only)", got)
	}
	if got := ConsoleTail(p+".nope", 3); !strings.HasPrefix(got, "(no console log:") {
		t.Errorf("ConsoleTail of a missing file = %q", got)
	}
	if got := ReadTail(p+".nope", 10); got != "" {
		t.Errorf("ReadTail of a missing file = %q", got)
	}
}

func TestState(t *testing.T) {
	type st struct {
		Version int `json:"version"`
		Identity
	}
	p := filepath.Join(t.TempDir(), "state.json")
	var got st
	if err := ReadState(p, &got); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadState of a missing file: %v", err)
	}
	want := st{Version: 1, Identity: Identity{PID: 7, ProcStart: 9, Binary: "/b", Argv: []string{"/b", "x"}}}
	if err := WriteState(p, want); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(p)
	if !strings.Contains(string(raw), `"proc_start": 9`) {
		t.Errorf("identity not flattened into the state file: %s", raw)
	}
	if err := ReadState(p, &got); err != nil || got.PID != 7 || got.Argv[1] != "x" {
		t.Errorf("ReadState = %+v, %v", got, err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(p)); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

// Spawning into a namespace must put the child there and never leave one of our own
// threads in it (which would also pin the namespace after `ip netns del`).
func TestSpawnNetns(t *testing.T) {
	_, nsPath := testutil.NewNetns(t, "wrenn-vmproc")
	var want, host syscall.Stat_t
	if err := syscall.Stat(nsPath, &want); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat("/proc/self/ns/net", &host); err != nil {
		t.Fatal(err)
	}
	sleep, _ := exec.LookPath("sleep")
	for i := 0; i < 10; i++ {
		cmd, err := Spawn(Spec{Argv: []string{sleep, "100"}, NetNS: nsPath})
		if err != nil {
			t.Fatal(err)
		}
		var got syscall.Stat_t
		err = syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid), &got)
		cmd.Process.Kill()
		cmd.Wait()
		if err != nil || got.Ino != want.Ino {
			t.Errorf("child in netns inode %d (%v), want %d", got.Ino, err, want.Ino)
		}
		tasks, _ := os.ReadDir("/proc/self/task")
		for _, task := range tasks {
			var st syscall.Stat_t
			if err := syscall.Stat("/proc/self/task/"+task.Name()+"/ns/net", &st); err == nil && st.Ino != host.Ino {
				t.Fatalf("thread %s of the test process is in netns inode %d", task.Name(), st.Ino)
			}
		}
	}
	if _, err := Spawn(Spec{Argv: []string{sleep, "1"}, NetNS: nsPath + "-nope"}); err == nil {
		t.Error("Spawn into a missing namespace succeeded")
	}
}
