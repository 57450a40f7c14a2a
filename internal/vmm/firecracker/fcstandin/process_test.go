package fcstandin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wrennhq/wrenn/internal/uffd"
)

// standin is a stand-in process started as a driver would: through the launcher, with
// an empty environment.
type standin struct {
	*apiClient
	cmd     *exec.Cmd
	sock    string
	stderr  *bytes.Buffer
	journal string
}

func startProcess(t *testing.T, launcher string, args ...string) *standin {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "fc.sock")
	cmd := exec.Command(launcher, append([]string{"--api-sock", sock, "--id", "vm-proc", "--level", "Debug", "--boot-timer"}, args...)...)
	cmd.Env = []string{}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stand-in did not create its API socket: %s", stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return &standin{apiClient: newAPIClient(t, sock), cmd: cmd, sock: sock, stderr: &stderr, journal: filepath.Join(dir, JournalName)}
}

func (p *standin) wait(t *testing.T) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(10 * time.Second):
		t.Fatal("the stand-in did not exit")
		return -1
	}
}

func writeLauncher(t *testing.T) string {
	t.Helper()
	if specPath() == "" {
		testSpec(t) // skips
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	l, err := WriteLauncher(t.TempDir(), exe, specPath())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLauncherVersionAndFlags(t *testing.T) {
	l := writeLauncher(t)
	cmd := exec.Command(l, "--version")
	cmd.Env = []string{}
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "Firecracker v"+Version {
		t.Fatalf("--version: %q, %v", out, err)
	}
	if code := run(nil, &bytes.Buffer{}, &bytes.Buffer{}); code == 0 {
		t.Error("no --api-sock accepted")
	}
	existing := filepath.Join(t.TempDir(), "sock")
	os.WriteFile(existing, nil, 0o644)
	var stderr bytes.Buffer
	if code := run([]string{"--api-sock", existing, "--standin-spec", specPath()}, &bytes.Buffer{}, &stderr); code == 0 || !strings.Contains(stderr.String(), "in use") {
		t.Errorf("an existing --api-sock path: exit %d, %q", code, stderr.String())
	}
}

func TestProcessBootsAndExitsOnCtrlAltDel(t *testing.T) {
	p := startProcess(t, writeLauncher(t))
	if info := p.ok("GET", "/", ""); info["id"] != "vm-proc" || info["state"] != "Not started" {
		t.Fatalf("GET / = %v", info)
	}
	for _, r := range bootSequence {
		p.ok(r.method, r.path, r.body)
	}
	p.refused("PUT", "/boot-source", `{"kernel_image_path":"/k"}`, "pre-boot only")
	p.ok("PUT", "/actions", `{"action_type":"SendCtrlAltDel"}`)
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit status %d after Ctrl+Alt+Del: %s", code, p.stderr)
	}
	entries, err := ReadJournal(p.journal)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(bootSequence)+3 || entries[len(entries)-2].Status != 400 || entries[len(entries)-1].Path != "/actions" {
		t.Fatalf("journal = %+v", entries)
	}
}

// memSource serves a memory file's bytes to the uffd handler.
type memSource []byte

func (m memSource) Extent(b uint64, _ int) (int, bool) {
	return 1, bytes.Equal(m[b*PageSize:(b+1)*PageSize], zeroPage)
}

func (m memSource) ReadAt(p []byte, off int64) (int, error) { return copy(p, m[off:]), nil }
func (m memSource) Size() int64                             { return int64(len(m)) }

// TestUffdRestore restores a Full snapshot through a real userfaultfd served by the
// uffd package's handler (in this process; the stand-in faults in its own).
func TestUffdRestore(t *testing.T) {
	if err := uffd.Available(); err != nil {
		t.Skipf("userfaultfd unavailable here: %v", err)
	}
	launcher := writeLauncher(t)
	dir := t.TempDir()
	state, mem := snapshotFull(t, dir)
	good := memSource(readFile(t, mem))

	for _, tc := range []struct {
		name string
		src  memSource
		why  string
	}{{"good", good, ""}, {"corrupt", append(memSource(nil), good...), "memory served through uffd differs from the snapshot"}} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.why != "" {
				tc.src[5*PageSize] ^= 0xff
			}
			h, err := uffd.Listen(filepath.Join(t.TempDir(), "uffd.sock"), tc.src, uffd.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h.Stop() })
			p := startProcess(t, launcher)
			body := `{"snapshot_path":"` + state + `","mem_backend":{"backend_type":"Uffd","backend_path":"` + h.Path() + `"},"track_dirty_pages":true}`
			if tc.why != "" {
				p.refused("PUT", "/snapshot/load", body, tc.why)
				if code := p.wait(t); code != 1 {
					t.Fatalf("exit status %d after a failed load", code)
				}
				return
			}
			p.ok("PUT", "/snapshot/load", body)
			if st := h.Stats(); st.Faults+st.ZeroPages == 0 {
				t.Errorf("the handler served no faults: %+v", st)
			}
			if h.PeerPID() != p.cmd.Process.Pid {
				t.Errorf("handler peer pid %d, stand-in pid %d", h.PeerPID(), p.cmd.Process.Pid)
			}
			if got := p.ok("GET", "/", "")["state"]; got != "Paused" {
				t.Fatalf("state after load = %v", got)
			}
			p.ok("PATCH", "/vm", `{"state":"Resumed"}`)
			p.ok("PATCH", "/vm", `{"state":"Paused"}`)
			p.ok("PUT", "/snapshot/create", `{"snapshot_path":"`+dir+`/uffd-state","mem_file_path":"`+dir+`/uffd-diff","snapshot_type":"Diff"}`)
			p.ok("PATCH", "/vm", `{"state":"Resumed"}`)
			p.ok("PUT", "/actions", `{"action_type":"SendCtrlAltDel"}`)
			if code := p.wait(t); code != 0 {
				t.Fatalf("exit status %d: %s", code, p.stderr)
			}
			select {
			case <-h.Done():
			case <-time.After(5 * time.Second):
				t.Error("the handler did not see the stand-in go away")
			}
		})
	}
}

// TestUffdHandlerThatDoesNotServe checks the handshake message (one JSON array of
// regions with the userfaultfd as SCM_RIGHTS) and that a load whose faults nobody
// serves fails after UffdTimeout instead of hanging the stand-in.
func TestUffdHandlerThatDoesNotServe(t *testing.T) {
	if err := uffd.Available(); err != nil {
		t.Skipf("userfaultfd unavailable here: %v", err)
	}
	dir := t.TempDir()
	state, _ := snapshotFull(t, dir)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "uffd.sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type handshake struct {
		regions []map[string]uint64
		fds     []int
		err     error
	}
	got := make(chan handshake, 1)
	go func() {
		var hs handshake
		defer func() { got <- hs }()
		conn, err := ln.AcceptUnix()
		if err != nil {
			hs.err = err
			return
		}
		t.Cleanup(func() { conn.Close() })
		buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4))
		n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			hs.err = err
			return
		}
		if hs.err = json.Unmarshal(buf[:n], &hs.regions); hs.err != nil {
			return
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			hs.err = fmt.Errorf("control messages %v, %v", msgs, err)
			return
		}
		hs.fds, hs.err = unix.ParseUnixRights(&msgs[0])
	}()
	s := startServer(t, t.TempDir())
	s.UffdTimeout = 300 * time.Millisecond
	s.refused("PUT", "/snapshot/load", `{"snapshot_path":"`+state+`","mem_backend":{"backend_type":"Uffd","backend_path":"`+dir+`/uffd.sock"}}`, "did not serve")
	hs := <-got
	if hs.err != nil {
		t.Fatal(hs.err)
	}
	for _, fd := range hs.fds {
		unix.Close(fd)
	}
	if len(hs.fds) != 1 || len(hs.regions) != 1 {
		t.Fatalf("handshake: %d fds, regions %v", len(hs.fds), hs.regions)
	}
	r := hs.regions[0]
	if r["base_host_virt_addr"] == 0 || r["size"] != testMemMiB<<20 || r["offset"] != 0 || r["page_size"] != PageSize || r["page_size_kib"] != PageSize || len(r) != 5 {
		t.Fatalf("handshake region %v", r)
	}
	select {
	case <-s.Exit():
	default:
		t.Fatal("no exit after a failed load")
	}
}
