package jail

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// init turns a helper process into the jail before the rest of the program starts
// (see the package doc). In every other process it does nothing.
func init() {
	if !isHelper(os.Args) {
		return
	}
	// Package init runs on the main thread, locked; keep it so, because
	// no_new_privs is a per-thread attribute and exec must come from the thread
	// that set it.
	runtime.LockOSThread()
	err := runHelper(os.Args[1])
	fmt.Fprintln(os.Stderr, err)
	os.Exit(126)
}

// runHelper confines this process as the spec says and execs its command; it returns
// only on failure.
func runHelper(encoded string) error {
	var s Spec
	if err := json.Unmarshal([]byte(encoded), &s); err != nil {
		return helperError("decode spec", err)
	}
	if err := s.Validate(); err != nil {
		return helperError("spec", err)
	}
	pid := strconv.Itoa(os.Getpid())
	for _, p := range s.CgroupProcs {
		if err := os.WriteFile(p, []byte(pid), 0); err != nil {
			return helperError("join cgroup", err)
		}
	}
	if err := buildRoot(s); err != nil {
		return err
	}
	if err := pivot(); err != nil {
		return err
	}
	if s.Dir != "" {
		if err := unix.Chdir(s.Dir); err != nil {
			return helperError("chdir "+s.Dir, err)
		}
	}
	// The syscall package's set*id calls apply to every thread of the process.
	groups := make([]int, len(s.Groups))
	for i, g := range s.Groups {
		groups[i] = int(g)
	}
	if err := syscall.Setgroups(groups); err != nil {
		return helperError("setgroups", err)
	}
	if err := syscall.Setresgid(int(s.GID), int(s.GID), int(s.GID)); err != nil {
		return helperError("setresgid", err)
	}
	// From uid 0 to another: the kernel clears the permitted, effective and ambient
	// capabilities.
	if err := syscall.Setresuid(int(s.UID), int(s.UID), int(s.UID)); err != nil {
		return helperError("setresuid", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return helperError("no_new_privs", err)
	}
	env := s.Env
	if env == nil {
		env = []string{}
	}
	return helperError("exec "+s.Argv[0], syscall.Exec(s.Argv[0], s.Argv, env))
}

// buildRoot mounts an empty tmpfs at rootDir and binds every mount of s into it. The
// process is already in a mount namespace of its own whose mounts do not propagate
// back to the host.
func buildRoot(s Spec) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return helperError("make mounts private", err)
	}
	if err := os.MkdirAll(rootDir, 0o700); err != nil {
		return helperError("root dir", err)
	}
	if err := unix.Mount("tmpfs", rootDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755,size=256k"); err != nil {
		return helperError("mount root tmpfs", err)
	}
	mounts := s.Mounts
	if s.SystemDirs {
		sys, err := systemMounts()
		if err != nil {
			return err
		}
		mounts = append(sys, mounts...)
	}
	for _, m := range mounts {
		if err := bind(m); err != nil {
			return helperError("bind "+m.Source, err)
		}
	}
	return os.Mkdir(filepath.Join(rootDir, ".old"), 0o700)
}

// systemMounts are the host directories a distribution binary needs (Spec.SystemDirs).
// On a merged-/usr system /bin, /lib… are symlinks into /usr: they are recreated as
// the same symlinks; where they are directories they are bound read-only.
func systemMounts() ([]Mount, error) {
	mounts := []Mount{{Source: "/usr", Executable: true}}
	for _, d := range []string{"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"} {
		fi, err := os.Lstat(d)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return nil, helperError("system dir", err)
		case fi.Mode()&fs.ModeSymlink != 0:
			dest, err := os.Readlink(d)
			if err != nil {
				return nil, helperError("system link", err)
			}
			if err := os.Symlink(dest, filepath.Join(rootDir, d)); err != nil {
				return nil, helperError("system link", err)
			}
		default:
			mounts = append(mounts, Mount{Source: d, Executable: true})
		}
	}
	if _, err := os.Stat("/etc/ld.so.cache"); err == nil {
		mounts = append(mounts, Mount{Source: "/etc/ld.so.cache"})
	}
	for _, d := range standardDevices {
		mounts = append(mounts, Mount{Source: d, Writable: true})
	}
	return mounts, nil
}

// standardDevices are the device nodes every program may expect; none of them gives
// access to anything.
var standardDevices = []string{"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"}

// bind creates m's mount point in the jail's root (a file or a directory, as the
// source is) and binds the source on it, read-only unless m.Writable.
func bind(m Mount) error {
	fi, err := os.Stat(m.Source)
	if err != nil {
		return err
	}
	target := filepath.Join(rootDir, m.target())
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	if fi.IsDir() {
		err = os.Mkdir(target, 0o755)
	} else {
		var f *os.File
		if f, err = os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err == nil {
			err = f.Close()
		}
	}
	if err != nil {
		return err
	}
	if err := unix.Mount(m.Source, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_NOSUID)
	device := fi.Mode()&(fs.ModeDevice|fs.ModeCharDevice) != 0
	if !device {
		flags |= unix.MS_NODEV
	}
	if !m.Writable {
		flags |= unix.MS_RDONLY
	}
	if !m.Executable {
		flags |= unix.MS_NOEXEC
	}
	return unix.Mount("", target, "", flags, "")
}

// pivot makes the jail's root the process's root, detaches the host's tree and
// makes the root itself read-only, so the command can create nothing outside its
// writable binds.
func pivot() error {
	if err := unix.Chdir(rootDir); err != nil {
		return helperError("chdir root", err)
	}
	if err := unix.PivotRoot(".", ".old"); err != nil {
		return helperError("pivot_root", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return helperError("chdir /", err)
	}
	if err := unix.Unmount("/.old", unix.MNT_DETACH); err != nil {
		return helperError("detach host tree", err)
	}
	if err := os.Remove("/.old"); err != nil {
		return helperError("remove old root", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return helperError("make root read-only", err)
	}
	return nil
}

func statGID(fi fs.FileInfo) uint32 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Gid
	}
	return 0
}
