package pagerproc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"time"

	"github.com/wrennhq/wrenn/internal/vmm/vmproc"
)

// Process is a running page server.
type Process struct {
	Cmd     *exec.Cmd
	Control string // the control socket's path
	// Identity names the process across agent restarts (vmproc.Attach).
	Identity vmproc.Identity
}

// Start binds the uffd socket at sock (the path the VMM is given) and the control
// socket at control, and starts a page server for spec on them in its own process
// group, its output appended to logFile. The VMM may connect as soon as Start
// returns: the socket is listening, and the server accepts once it runs.
func Start(spec Spec, sock, control, logFile, dir string) (*Process, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	started := false
	defer func() {
		for _, f := range files {
			f.Close()
		}
		if !started {
			os.Remove(sock)
			os.Remove(control)
		}
	}()
	for _, path := range []string{sock, control} {
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			return nil, fmt.Errorf("page server: listen: %w", err)
		}
		ln.SetUnlinkOnClose(false) // the server's copy keeps serving on the path
		f, err := ln.File()
		ln.Close()
		if err != nil {
			return nil, fmt.Errorf("page server: %w", err)
		}
		files = append(files, f)
	}
	out, err := os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("page server log: %w", err)
	}
	defer out.Close()
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start page server: %w", err)
	}
	argv := []string{HelperName, string(b)}
	cmd, err := vmproc.Spawn(vmproc.Spec{Path: "/proc/self/exe", Argv: argv, Dir: dir, Output: out, ExtraFiles: files})
	if err != nil {
		return nil, fmt.Errorf("start page server: %w", err)
	}
	// Named from what was started, not read back from /proc: right after the
	// fork, /proc may still show the parent's command line.
	start, err := vmproc.StartTime(cmd.Process.Pid)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("start page server: %w", err)
	}
	started = true
	return &Process{Cmd: cmd, Control: control, Identity: vmproc.Identity{PID: cmd.Process.Pid, ProcStart: start, Binary: self, Argv: argv}}, nil
}

// Status asks the server how it is doing.
func Status(ctx context.Context, control string) (Report, error) {
	var st Report
	err := ask(ctx, control, "status", &st)
	return st, err
}

// Touched asks for the memory-file offsets the guest touched (the next prefetch list).
func Touched(ctx context.Context, control string) ([]int64, error) {
	var offs []int64
	err := ask(ctx, control, "touched", &offs)
	return offs, err
}

// WaitReady waits until the server has the VMM's handshake, or ctx ends.
func WaitReady(ctx context.Context, control string) error {
	for {
		st, err := Status(ctx, control)
		if err == nil && st.Ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(fmt.Errorf("page server not ready: %w", ctx.Err()), err)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func ask(ctx context.Context, control, req string, v any) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", control)
	if err != nil {
		return fmt.Errorf("page server: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(10 * time.Second))
	}
	if _, err := c.Write([]byte(req + "\n")); err != nil {
		return fmt.Errorf("page server: %w", err)
	}
	if err := json.NewDecoder(c).Decode(v); err != nil {
		return fmt.Errorf("page server %s: %w", req, err)
	}
	return nil
}
