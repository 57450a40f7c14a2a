package qemu

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// spawn starts argv directly (no shell) in its own process group, inside the network
// namespace at netnsPath when it is set. stdout and stderr go to out, a file in the
// VM's Dir rather than a pipe, so QEMU never blocks or dies on a closed pipe after the
// agent that started it has gone.
//
// Why a thread and setns: Linux namespaces belong to threads, and Go's fork/exec
// (clone with CLONE_VFORK) runs on the calling OS thread, so a child inherits that
// thread's network namespace. We lock a goroutine to its thread, setns the thread
// into the target namespace, start QEMU from it, and setns back. Only when the way
// back succeeded is the thread unlocked; otherwise the goroutine returns still
// locked and the runtime retires the thread, so no other goroutine ever runs in a
// foreign namespace. (Setting back matters even though the thread could just die:
// if the goroutine happened to run on the main thread, Go parks that thread instead
// of ending it, and it would pin the sandbox's namespace for the agent's lifetime.)
// No `ip netns exec`, no shell. The QMP socket keeps working across namespaces
// because pathname unix sockets live in the filesystem, not in the network namespace.
//
// Pdeathsig is deliberately not set: VMs must survive an agent restart (Adopt).
func spawn(argv []string, dir, netnsPath string, out *os.File) (*exec.Cmd, error) {
	cmd := &exec.Cmd{
		Path:   argv[0],
		Args:   argv,
		Dir:    dir,
		Env:    []string{}, // QEMU needs no environment; pass none of the agent's
		Stdout: out,
		Stderr: out,
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid: true, // signals to the agent's group (Ctrl-C) do not reach VMs
		},
	}
	if netnsPath == "" {
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		return cmd, nil
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open own netns: %w", err)
			return
		}
		defer unix.Close(home)
		fd, err := unix.Open(netnsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open netns %s: %w", netnsPath, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			// The thread may be half-switched: let it die locked.
			errc <- fmt.Errorf("setns %s: %w", netnsPath, err)
			return
		}
		startErr := cmd.Start()
		if err := unix.Setns(home, unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		} // else: return locked, the runtime retires the thread
		errc <- startErr
	}()
	if err := <-errc; err != nil {
		return nil, err
	}
	return cmd, nil
}

// procStartTime is field 22 of /proc/<pid>/stat: the process's start time in clock
// ticks since boot. Together with the pid it names a process uniquely, so a recycled
// pid is never mistaken for our QEMU.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// comm (field 2) is in parentheses and may contain spaces and ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field 22 is f[19].
	if len(f) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	if f[0] == "Z" || f[0] == "X" {
		return 0, fmt.Errorf("process %d: %w", pid, errZombie)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

var errZombie = errors.New("process has exited")

// procExe is the resolved executable of pid, without the " (deleted)" suffix the
// kernel adds when the binary was replaced by a package upgrade.
func procExe(pid int) (string, error) {
	p, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(p, " (deleted)"), nil
}

func procCmdline(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), nil
}

// sameBinary reports whether two paths name the same executable file.
func sameBinary(a, b string) bool {
	if a == b {
		return true
	}
	ra, err1 := filepath.EvalSymlinks(a)
	rb, err2 := filepath.EvalSymlinks(b)
	if err1 == nil && err2 == nil && ra == rb {
		return true
	}
	// After an upgrade the old inode is gone; the base name is the best we have.
	return filepath.Base(a) == filepath.Base(b) && strings.HasPrefix(filepath.Base(a), "qemu-system-")
}

// pidHandle watches and signals a process that is not our child (an adopted VM).
// It uses a pidfd when the kernel has one (exact, no pid-reuse race), registered with
// Go's netpoller so that waiting costs no thread; else it polls the pid and rechecks
// its start time.
type pidHandle struct {
	pid   int
	start uint64
	pidfd *os.File // nil when pidfd_open is unavailable
}

// openPID returns a handle on pid only if it is still the process that started at
// start (ticks since boot).
func openPID(pid int, start uint64) (*pidHandle, error) {
	h := &pidHandle{pid: pid, start: start}
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err == nil {
		h.pidfd = os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(pid))
	} else if errors.Is(err, unix.ESRCH) {
		return nil, errZombie
	}
	// Check identity after opening the pidfd: if the start time still matches now,
	// the pidfd refers to our process and stays valid even if the pid is reused.
	got, err := procStartTime(pid)
	if err != nil || got != start {
		h.close()
		if err == nil {
			err = fmt.Errorf("pid %d was reused (start time %d, want %d)", pid, got, start)
		}
		return nil, err
	}
	return h, nil
}

func (h *pidHandle) close() {
	if h.pidfd != nil {
		h.pidfd.Close()
	}
}

// alive reports whether the process still runs (zombies count as gone).
func (h *pidHandle) alive() bool {
	got, err := procStartTime(h.pid)
	return err == nil && got == h.start
}

func (h *pidHandle) kill() error {
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
	if !h.alive() {
		return nil
	}
	err := unix.Kill(h.pid, unix.SIGKILL)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}

// wait blocks until the process has exited. A pidfd becomes readable when its
// process exits.
func (h *pidHandle) wait() {
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
	for h.alive() {
		time.Sleep(200 * time.Millisecond)
	}
}

// readTail returns at most max bytes from the end of a file, starting at a line
// boundary when it can, for error messages. Missing files read as "".
func readTail(path string, max int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := fi.Size() - max
	if off < 0 {
		off = 0
	}
	b, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return ""
	}
	if off > 0 {
		if i := bytes.IndexByte(b, '\n'); i >= 0 && i < len(b)-1 {
			b = b[i+1:]
		}
	}
	return strings.TrimSpace(strings.ToValidUTF8(string(b), "?"))
}
