package envd_test

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	fspb "github.com/wrennhq/wrenn/gen/envd/filesystem"
	pb "github.com/wrennhq/wrenn/gen/envd/process"
	"github.com/wrennhq/wrenn/internal/envd/envdtest"
)

// openFDs counts envd's open file descriptors.
func openFDs(t *testing.T, e *envdtest.Envd) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/" + itoa(e.PID) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

func itoa(n int) string { return strconv.Itoa(n) }

// A busy envd — commands that succeed, fail and get killed, PTYs, watchers, uploads and
// bad requests — returns to the descriptors it started with.
func TestNoDescriptorLeaks(t *testing.T) {
	e := userEnvd(t)
	c := e.Process(envdtest.JSON)
	fs := e.Filesystem(envdtest.Proto)
	settle := func() int {
		e.HTTP.CloseIdleConnections()
		var n int
		for range 50 { // the server closes its side of idle connections asynchronously
			time.Sleep(20 * time.Millisecond)
			if n = openFDs(t, e); n == openFDs(t, e) {
				break
			}
		}
		return n
	}
	before := settle()

	for range 5 {
		mustExit(t, run(t, c, bash("echo hi; echo err >&2")), 0)
		run(t, c, &pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "/nonexistent"}})
		run(t, c, &pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "true", Cwd: ptr("/nope")}})
		pid, stream, cancel := startBackground(t, c, &pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "/bin/bash", Args: []string{"-i"}}, Pty: &pb.PTY{Size: &pb.PTY_Size{Cols: 80, Rows: 24}}})
		if _, err := c.SendSignal(context.Background(), connect.NewRequest(&pb.SendSignalRequest{Process: &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: pid}}, Signal: pb.Signal_SIGNAL_SIGKILL})); err != nil {
			t.Fatal(err)
		}
		collectFrom(t, stream, false)
		cancel()
		stream.Close()

		ctx, stop := context.WithTimeout(context.Background(), 300*time.Millisecond)
		w, err := fs.WatchDir(ctx, connect.NewRequest(&fspb.WatchDirRequest{Path: "/home/user", Recursive: true}))
		if err != nil {
			t.Fatal(err)
		}
		for w.Receive() {
		}
		w.Close()
		stop()
		cw, err := fs.CreateWatcher(context.Background(), connect.NewRequest(&fspb.CreateWatcherRequest{Path: "/tmp"}))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fs.RemoveWatcher(context.Background(), connect.NewRequest(&fspb.RemoveWatcherRequest{WatcherId: cw.Msg.GetWatcherId()})); err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPost, e.URL+"/files?path=leak.txt", strings.NewReader("data"))
		req.Header.Set("Content-Type", "application/octet-stream")
		if resp, err := e.HTTP.Do(req); err == nil {
			envdtest.ReadAll(t, resp)
		}
		envdtest.ReadAll(t, get(t, e, "/files?path=leak.txt"))
		envdtest.ReadAll(t, get(t, e, "/files?path=missing.txt"))
	}
	if after := settle(); after > before {
		entries, _ := os.ReadDir("/proc/" + itoa(e.PID) + "/fd")
		var links []string
		for _, en := range entries {
			l, _ := os.Readlink("/proc/" + itoa(e.PID) + "/fd/" + en.Name())
			links = append(links, l)
		}
		t.Fatalf("envd holds %d descriptors after the workload, %d before: %v", after, before, links)
	}
}
