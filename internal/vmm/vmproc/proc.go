package vmproc

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// StartTime is field 22 of /proc/<pid>/stat: the process's start time in clock ticks
// since boot. Together with the pid it names a process uniquely, so a recycled pid is
// never mistaken for our VMM. A zombie reads as ErrExited.
func StartTime(pid int) (uint64, error) {
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
		return 0, fmt.Errorf("process %d: %w", pid, ErrExited)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// Exe is the resolved executable of pid, without the " (deleted)" suffix the kernel
// adds when the binary was replaced by a package upgrade.
func Exe(pid int) (string, error) {
	p, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(p, " (deleted)"), nil
}

// Cmdline is the argv of pid.
func Cmdline(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), nil
}

// SameBinary reports whether exe (a process's executable, from Exe) is the binary
// recorded as want: the same path, the same file through symlinks, or — after an
// upgrade replaced the file, when the old inode has no name any more — the same
// base name.
func SameBinary(exe, want string) bool {
	if exe == want {
		return true
	}
	ra, err1 := filepath.EvalSymlinks(exe)
	rb, err2 := filepath.EvalSymlinks(want)
	if err1 == nil && err2 == nil && ra == rb {
		return true
	}
	return filepath.Base(exe) == filepath.Base(want)
}

// HasArgPair reports whether args contains flag immediately followed by value.
func HasArgPair(args []string, flag, value string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag && args[i+1] == value {
			return true
		}
	}
	return false
}
