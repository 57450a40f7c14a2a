// Package jail confines a VMM process before it runs: it joins the sandbox's cgroups,
// gets a private mount namespace whose root is an empty read-only tmpfs holding only
// the files bound into it, drops to an unprivileged uid/gid with no capabilities and
// no_new_privs set, and only then execs the VMM. Firecracker's jailer does the same
// job for Firecracker alone; this one serves every driver.
//
// The confining runs in a helper process, because Go cannot run code between fork
// and exec: the driver starts the running binary again (/proc/self/exe) with argv[0]
// set to HelperName, inside a new mount namespace (vmproc.Spec.NewMountNS), and this
// package's init function turns such a process into the helper before anything else
// of the program runs. Any binary that links this package can therefore serve as its
// own helper — the agent, and every test binary that starts VMs — with nothing extra
// to install. The helper execs the VMM in place, so the VMM keeps the helper's pid.
package jail

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// HelperName is argv[0] of a helper process.
const HelperName = "wrenn-jail"

// rootDir is where a helper mounts its jail's root before pivoting into it. The mount
// lives in the helper's own mount namespace, so every jail uses the same empty
// directory and nothing appears on the host.
const rootDir = "/run/wrenn-jail"

// Spec says what one jailed process gets.
type Spec struct {
	// Argv is the command to exec; Argv[0] is an absolute path inside the jail.
	Argv []string
	// Env is the command's environment; nil passes none.
	Env []string
	// Dir is the working directory inside the jail ("" = /).
	Dir string
	// UID and GID the command runs as; both must be non-zero. Groups are its
	// supplementary groups (e.g. the group that may open /dev/kvm).
	UID, GID uint32
	Groups   []uint32
	// Mounts are bound into the jail's root; nothing else of the host is in it.
	Mounts []Mount
	// SystemDirs binds the host's /usr read-only (nosuid) with its /bin, /sbin and
	// /lib* links or directories, /etc/ld.so.cache and /dev/{null,zero,random,urandom},
	// so that a binary from the distribution (QEMU, with its libraries and firmware)
	// runs. The rest of /etc and /dev, /var, /home, /proc and /sys stay out.
	SystemDirs bool
	// CgroupProcs are cgroup.procs files the helper writes its pid to before it
	// does anything else, so the command is limited from its first instruction.
	CgroupProcs []string
}

// Mount binds a host file, directory or device node into the jail.
type Mount struct {
	// Source is the absolute host path.
	Source string
	// Target is the absolute path inside the jail ("" = the same as Source).
	Target string
	// Writable leaves the bind writable; otherwise it is read-only.
	Writable bool
	// Executable allows running (and mapping executable) files from the bind; it is
	// noexec otherwise. Every bind is nosuid, and only device nodes keep dev.
	Executable bool
}

func (m Mount) target() string {
	if m.Target == "" {
		return m.Source
	}
	return m.Target
}

// Validate checks s before a helper is started, so a bad spec fails in the caller
// with a clear error instead of in a helper whose stderr is a log file.
func (s Spec) Validate() error {
	if len(s.Argv) == 0 || !filepath.IsAbs(s.Argv[0]) {
		return fmt.Errorf("jail: argv[0] must be an absolute path inside the jail, got %q", s.Argv)
	}
	if s.UID == 0 || s.GID == 0 {
		return fmt.Errorf("jail: uid and gid must not be 0 (got %d:%d)", s.UID, s.GID)
	}
	if s.Dir != "" && !filepath.IsAbs(s.Dir) {
		return fmt.Errorf("jail: dir %q is not absolute", s.Dir)
	}
	seen := map[string]bool{}
	for _, m := range s.Mounts {
		t := m.target()
		if !filepath.IsAbs(m.Source) || !filepath.IsAbs(t) || filepath.Clean(t) != t || t == "/" {
			return fmt.Errorf("jail: mount %q on %q: want absolute, clean paths and a target other than /", m.Source, t)
		}
		if seen[t] {
			return fmt.Errorf("jail: two mounts on %s", t)
		}
		seen[t] = true
		if _, err := os.Stat(m.Source); err != nil {
			return fmt.Errorf("jail: mount source: %w", err)
		}
	}
	for _, p := range s.CgroupProcs {
		if !filepath.IsAbs(p) || filepath.Base(p) != "cgroup.procs" {
			return fmt.Errorf("jail: %q is not a cgroup.procs file", p)
		}
	}
	return nil
}

// HelperArgv is the argv that runs s through a helper: argv[0] HelperName, executed
// from /proc/self/exe (see the package doc) in a new mount namespace.
func HelperArgv(s Spec) ([]string, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("jail: encode spec: %w", err)
	}
	return []string{HelperName, string(b)}, nil
}

// HelperPath is the executable that serves as the helper: this very program.
const HelperPath = "/proc/self/exe"

// DeviceGroups returns the groups whose members may open each device (its group
// when the group, not others, has read and write access), for Spec.Groups.
func DeviceGroups(devices ...string) ([]uint32, error) {
	var groups []uint32
	for _, d := range devices {
		fi, err := os.Stat(d)
		if err != nil {
			return nil, fmt.Errorf("jail: device %s: %w", d, err)
		}
		mode := fi.Mode().Perm()
		if mode&0o006 == 0o006 {
			continue
		}
		if mode&0o060 != 0o060 {
			return nil, fmt.Errorf("jail: device %s (mode %v) is open to its owner only", d, mode)
		}
		gid := statGID(fi)
		if gid != 0 && !slices.Contains(groups, gid) {
			groups = append(groups, gid)
		}
	}
	return groups, nil
}

// errHelper marks a failure inside the helper; it goes to the helper's stderr,
// which is the VMM's log file.
var errHelper = errors.New(HelperName)

func helperError(step string, err error) error {
	return fmt.Errorf("%w: %s: %v", errHelper, step, err)
}

// isHelper reports whether args are a helper's.
func isHelper(args []string) bool {
	return len(args) == 2 && args[0] == HelperName && strings.HasPrefix(args[1], "{")
}
