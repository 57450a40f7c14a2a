package vmproc

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Handle watches and signals a process that need not be our child (an adopted VM).
// It uses a pidfd when the kernel has one (exact, no pid-reuse race), registered with
// Go's netpoller so that waiting costs no thread; else it polls the pid and rechecks
// its start time.
type Handle struct {
	pid   int
	start uint64
	pidfd *os.File // nil when pidfd_open is unavailable
}

// Open returns a handle on pid only if it is still the process that started at start
// (ticks since boot, from StartTime). A process that is gone reads as ErrExited.
func Open(pid int, start uint64) (*Handle, error) {
	h := &Handle{pid: pid, start: start}
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err == nil {
		h.pidfd = os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(pid))
	} else if errors.Is(err, unix.ESRCH) {
		return nil, fmt.Errorf("open pid %d: %w", pid, ErrExited)
	}
	// Check identity after opening the pidfd: if the start time still matches now,
	// the pidfd refers to our process and stays valid even if the pid is reused.
	got, err := StartTime(pid)
	if err != nil || got != start {
		h.Close()
		if err == nil {
			err = fmt.Errorf("pid %d was reused (start time %d, want %d)", pid, got, start)
		}
		return nil, err
	}
	return h, nil
}

// PID of the process.
func (h *Handle) PID() int { return h.pid }

// Close releases the pidfd; the process is not affected.
func (h *Handle) Close() {
	if h.pidfd != nil {
		h.pidfd.Close()
	}
}

// Alive reports whether the process still runs (zombies count as gone).
func (h *Handle) Alive() bool {
	got, err := StartTime(h.pid)
	return err == nil && got == h.start
}

// Kill sends SIGKILL. A process that is already gone is not an error.
func (h *Handle) Kill() error {
	if h.pidfd != nil {
		rc, err := h.pidfd.SyscallConn()
		if err == nil {
			var serr error
			err = rc.Control(func(fd uintptr) {
				serr = unix.PidfdSendSignal(int(fd), unix.SIGKILL, nil, 0)
			})
			if err == nil {
				if errors.Is(serr, unix.ESRCH) {
					return nil
				}
				return serr
			}
		}
	}
	if !h.Alive() {
		return nil
	}
	err := unix.Kill(h.pid, unix.SIGKILL)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}

// Wait blocks until the process has exited. A pidfd becomes readable when its process
// exits.
func (h *Handle) Wait() {
	if h.pidfd != nil {
		if rc, err := h.pidfd.SyscallConn(); err == nil {
			err = rc.Read(func(fd uintptr) bool {
				n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
				return err == nil && n > 0
			})
			if err == nil {
				return
			}
		}
	}
	for h.Alive() {
		time.Sleep(200 * time.Millisecond)
	}
}

// WaitTimeout waits at most d for the process to exit and reports whether it did.
func (h *Handle) WaitTimeout(d time.Duration) bool {
	done := make(chan struct{})
	go func() { h.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// Identity names one VMM process across pid reuse and agent restarts. Drivers embed
// it in their state file (the JSON field names are part of that file's format).
type Identity struct {
	PID int `json:"pid"`
	// ProcStart is StartTime(PID) read right after spawn.
	ProcStart uint64 `json:"proc_start"`
	// Binary is the absolute path that was executed.
	Binary string   `json:"binary"`
	Argv   []string `json:"argv"`
}

// ErrNotSame means the process named by an Identity is gone or is another process
// now (pid reused, other executable, other command line).
var ErrNotSame = errors.New("not the recorded process")

// Attach returns a handle on the process id names only if it is still that process:
// same pid and start time, same executable, same argv. Otherwise the error wraps
// ErrNotSame and says what differed.
func Attach(id Identity) (*Handle, error) {
	h, err := Open(id.PID, id.ProcStart)
	if err != nil {
		return nil, fmt.Errorf("%w: pid %d: %v", ErrNotSame, id.PID, err)
	}
	if exe, err := Exe(id.PID); err != nil || !SameBinary(exe, id.Binary) {
		h.Close()
		return nil, fmt.Errorf("%w: pid %d is %q, not %s", ErrNotSame, id.PID, exe, id.Binary)
	}
	if args, err := Cmdline(id.PID); err != nil || !slices.Equal(args, id.Argv) {
		h.Close()
		return nil, fmt.Errorf("%w: pid %d runs another command line", ErrNotSame, id.PID)
	}
	return h, nil
}
