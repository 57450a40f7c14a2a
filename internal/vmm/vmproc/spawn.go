// Package vmproc is the host-process plumbing every VMM driver needs: spawn a VMM
// process (inside a network namespace when asked), name it across pid reuse and agent
// restarts (pid + start time, executable, argv), watch and kill it through a pidfd,
// keep the small state file an agent needs to adopt it again, and read the tails of
// its logs for error messages. It knows nothing about any particular VMM.
package vmproc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// Spec describes one VMM process to start.
type Spec struct {
	// Argv is the full command line; Argv[0] must be an absolute path (no PATH
	// lookup, no shell) unless Path is set.
	Argv []string
	// Path, when set, is the absolute path executed with Argv; Argv[0] is then only
	// the process's name (a jail helper is /proc/self/exe named jail.HelperName).
	Path string
	// NewMountNS starts the process in a mount namespace of its own (a jail helper
	// builds its root there).
	NewMountNS bool
	// Dir is the working directory, normally the VM's runtime directory.
	Dir string
	// NetNS is the path of a network namespace to start the process in
	// (e.g. /var/run/netns/wrenn-ns-1); "" = the caller's namespace.
	NetNS string
	// Output receives the process's stdout and stderr. A file, not a pipe: the VMM
	// must never block or die on a closed pipe after the agent that started it exits.
	Output *os.File
	// ExtraFiles are passed as fds 3, 4, … (e.g. a pre-bound API socket).
	ExtraFiles []*os.File
	// Env is the process environment; nil passes none of the agent's.
	Env []string
}

// Spawn starts s.Argv directly in its own process group, inside s.NetNS when set.
//
// Why a thread and setns: Linux namespaces belong to threads, and Go's fork/exec
// (clone with CLONE_VFORK) runs on the calling OS thread, so a child inherits that
// thread's network namespace. We lock a goroutine to its thread, setns the thread
// into the target namespace, start the process from it, and setns back. Only when the
// way back succeeded is the thread unlocked; otherwise the goroutine returns still
// locked and the runtime retires the thread, so no other goroutine ever runs in a
// foreign namespace. (Setting back matters even though the thread could just die: if
// the goroutine happened to run on the main thread, Go parks that thread instead of
// ending it, and it would pin the sandbox's namespace for the agent's lifetime.) No
// `ip netns exec`, no shell. Unix sockets with a pathname keep working across
// namespaces because they live in the filesystem, not in the network namespace.
//
// Pdeathsig is deliberately not set: VMs must survive an agent restart (adoption).
func Spawn(s Spec) (*exec.Cmd, error) {
	path := s.Path
	if len(s.Argv) > 0 && path == "" {
		path = s.Argv[0]
	}
	if len(s.Argv) == 0 || path == "" || path[0] != '/' {
		return nil, fmt.Errorf("spawn %q: the executable must be an absolute path", s.Argv)
	}
	env := s.Env
	if env == nil {
		env = []string{}
	}
	cmd := &exec.Cmd{
		Path:       path,
		Args:       s.Argv,
		Dir:        s.Dir,
		Env:        env,
		Stdout:     s.Output,
		Stderr:     s.Output,
		ExtraFiles: s.ExtraFiles,
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid: true, // signals to the agent's group (Ctrl-C) do not reach VMs
		},
	}
	if s.NewMountNS {
		// Go also makes every mount in the new namespace private, so nothing the
		// process mounts propagates back.
		cmd.SysProcAttr.Unshareflags = syscall.CLONE_NEWNS
	}
	if s.NetNS == "" {
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("spawn %s: %w", s.Argv[0], err)
		}
		return cmd, nil
	}
	if err := InNetNS(s.NetNS, cmd.Start); err != nil {
		return nil, fmt.Errorf("spawn %s in netns %s: %w", s.Argv[0], s.NetNS, err)
	}
	return cmd, nil
}

// InNetNS runs fn on an OS thread moved into the network namespace at path (see
// Spawn for why a thread), and moves the thread back.
func InNetNS(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() { errc <- runInNetNS(path, fn) }()
	return <-errc
}

// runInNetNS runs fn on this goroutine's thread moved into the namespace at path. It
// must run on a goroutine of its own: on some failures it returns with the thread
// still locked so that the runtime retires it.
func runInNetNS(path string, fn func() error) error {
	runtime.LockOSThread()
	home, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open own netns: %w", err)
	}
	defer unix.Close(home)
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open netns: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		// The thread may be half-switched: let it die locked.
		return fmt.Errorf("setns: %w", err)
	}
	fnErr := fn()
	if err := unix.Setns(home, unix.CLONE_NEWNET); err == nil {
		runtime.UnlockOSThread()
	} // else: return locked, the runtime retires the thread
	return fnErr
}

// ExitReason describes how a spawned process ended, for error messages.
func ExitReason(cmd *exec.Cmd) string {
	if cmd.ProcessState != nil {
		return cmd.ProcessState.String()
	}
	return "process gone"
}

// ErrExited means a process has exited (or is a zombie waiting to be reaped).
var ErrExited = errors.New("process has exited")
