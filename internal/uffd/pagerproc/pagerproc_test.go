package pagerproc

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/memfile"
	"github.com/wrennhq/wrenn/internal/uffd"
	"github.com/wrennhq/wrenn/internal/uffd/uffdtest"
)

func TestMain(m *testing.M) {
	uffdtest.Main()
	os.Exit(m.Run())
}

func memory(t *testing.T, pages int) (string, []byte) {
	mem := make([]byte, pages*memfile.BlockSize)
	for p := 0; p < pages; p += 3 {
		copy(mem[p*memfile.BlockSize:], strings.Repeat("page", p%97+1))
	}
	dir := t.TempDir()
	if _, err := memfile.Write(dir, bytes.NewReader(mem), int64(len(mem)), memfile.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return dir, mem
}

// TestServesFromItsOwnProcess: the page server runs as a process of its own, serves
// a child VMM's faults, answers status and touched on its control socket, and exits
// when the VMM goes away.
func TestServesFromItsOwnProcess(t *testing.T) {
	if err := uffd.Available(); err != nil {
		t.Skipf("userfaultfd unavailable: %v", err)
	}
	memDir, mem := memory(t, 1024)
	run := t.TempDir()
	sock, ctl := filepath.Join(run, "uffd.sock"), filepath.Join(run, "uffd.ctl")
	p, err := Start(Spec{MemDir: memDir}, sock, ctl, filepath.Join(run, "uffd.log"), run)
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- p.Cmd.Wait() }()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c, err := uffdtest.Start(ctx, uffdtest.Spec{Socket: sock, Size: len(mem), Threads: 4})
	if err != nil {
		t.Fatal(err)
	}
	if err := WaitReady(ctx, ctl); err != nil {
		t.Fatal(err)
	}
	res, err := c.Wait()
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range res.Pages {
		if h != uffdtest.PageHash(mem[i*memfile.BlockSize:(i+1)*memfile.BlockSize]) {
			t.Fatalf("page %d differs", i)
		}
	}
	select {
	case err := <-exited:
		if err != nil {
			log, _ := os.ReadFile(filepath.Join(run, "uffd.log"))
			t.Fatalf("page server: %v: %s", err, log)
		}
	case <-ctx.Done():
		t.Fatal("page server still running after its vmm exited")
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("uffd socket left behind: %v", err)
	}
}

func netDial(path string) (*net.UnixConn, error) {
	return net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
}

func TestControlAnswersWhileServing(t *testing.T) {
	if err := uffd.Available(); err != nil {
		t.Skipf("userfaultfd unavailable: %v", err)
	}
	memDir, mem := memory(t, 256)
	run := t.TempDir()
	sock, ctl := filepath.Join(run, "uffd.sock"), filepath.Join(run, "uffd.ctl")
	p, err := Start(Spec{MemDir: memDir}, sock, ctl, filepath.Join(run, "uffd.log"), run)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Cmd.Process.Kill()
	m, err := uffd.NewRegisteredMemory(len(mem)) // the "VMM" here is this test: it never faults
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	conn, err := netDial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := uffd.SendHandshake(conn, m.Regions(), m.FD); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := WaitReady(ctx, ctl); err != nil {
		t.Fatal(err)
	}
	st, err := Status(ctx, ctl)
	if err != nil || !st.Ready || st.PeerPID != os.Getpid() {
		t.Fatalf("status %+v, %v", st, err)
	}
	if offs, err := Touched(ctx, ctl); err != nil || len(offs) != 0 {
		t.Fatalf("touched %v, %v", offs, err)
	}
	// The "VMM" goes away: the server ends by itself.
	conn.Close()
	m.Close()
	if err := p.Cmd.Wait(); err != nil {
		t.Fatalf("page server after its vmm left: %v", err)
	}
}

func TestRefusesAFileThatIsNoCgroup(t *testing.T) {
	memDir, _ := memory(t, 16)
	run := t.TempDir()
	p, err := Start(Spec{MemDir: memDir, CgroupProcs: []string{filepath.Join(run, "tasks")}},
		filepath.Join(run, "uffd.sock"), filepath.Join(run, "uffd.ctl"), filepath.Join(run, "uffd.log"), run)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Cmd.Wait(); err == nil {
		t.Fatal("a page server joined a file that is no cgroup.procs")
	}
	log, _ := os.ReadFile(filepath.Join(run, "uffd.log"))
	if !strings.Contains(string(log), "not a cgroup.procs file") {
		t.Fatalf("log: %s", log)
	}
}
