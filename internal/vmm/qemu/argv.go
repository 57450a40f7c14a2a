package qemu

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/wrennhq/wrenn/internal/vmm"
)

// Files the driver keeps in a VM's Dir. The console log and QEMU's stderr stay after
// Stop (they explain what happened); the others are removed.
const (
	qmpSocketName = "qmp.sock"
	pidFileName   = "qemu.pid"
	stateFileName = "qemu-state.json"
	consoleName   = vmm.ConsoleLogName
	stderrName    = "qemu.stderr"
	// memoryName is the guest RAM file (see the package doc). It outlives Stop when
	// a pause snapshot shares it.
	memoryName = "memory"
)

// Limits. maxSunPath is sizeof(sockaddr_un.sun_path) minus the NUL; maxCmdline is
// x86's COMMAND_LINE_SIZE minus the NUL.
const (
	maxSunPath = 107
	maxCmdline = 2047
	maxVCPUs   = 64
	minMemMiB  = 32
	maxMemMiB  = 1 << 20
	// tcgCacheMiB bounds TCG's translation cache.
	tcgCacheMiB = 128
)

var (
	idPattern  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	tapPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`) // IFNAMSIZ-1
)

// spec is a validated Config with absolute paths, ready to turn into an argv.
type spec struct {
	cfg      vmm.Config
	dir      string
	kernel   string
	initrd   string // "" = none
	disk     string // "" = none
	netns    string // "" = current namespace
	tap, mac string
	// incoming makes QEMU wait for a snapshot's device state (restore) instead of
	// booting.
	incoming bool
	jail     *vmm.Jail // nil = not jailed
}

// Descriptors QEMU inherits (vmproc.Spec.ExtraFiles start at 3): the QMP socket,
// bound and listening, and the TAP's queue. The driver opens both, so QEMU needs no
// right to create files in the VM's Dir nor to open /dev/net/tun.
const (
	qmpFD = 3
	tapFD = 4
)

func (s spec) qmpPath() string     { return filepath.Join(s.dir, qmpSocketName) }
func (s spec) pidPath() string     { return filepath.Join(s.dir, pidFileName) }
func (s spec) consolePath() string { return filepath.Join(s.dir, consoleName) }
func (s spec) memoryPath() string  { return filepath.Join(s.dir, memoryName) }

// validate checks everything in cfg that ends up in QEMU's argv, so that no string a
// user could influence reaches QEMU unchecked: IDs and device names by allow-list,
// paths made absolute and required to exist, kernel arguments without whitespace,
// quotes or control characters (they are joined with single spaces).
func validate(cfg vmm.Config) (spec, error) {
	s := spec{cfg: cfg}
	if !idPattern.MatchString(cfg.ID) {
		return s, fmt.Errorf("invalid vm id %q: want [a-z0-9-], at most 63 chars", cfg.ID)
	}
	if cfg.VCPUs < 1 || cfg.VCPUs > maxVCPUs {
		return s, fmt.Errorf("vcpus %d out of range 1..%d", cfg.VCPUs, maxVCPUs)
	}
	if cfg.MemoryMiB < minMemMiB || cfg.MemoryMiB > maxMemMiB {
		return s, fmt.Errorf("memory %d MiB out of range %d..%d", cfg.MemoryMiB, minMemMiB, maxMemMiB)
	}
	var err error
	if s.dir, err = checkPath("dir", cfg.Dir, true); err != nil {
		return s, err
	}
	if len(s.qmpPath()) > maxSunPath {
		return s, fmt.Errorf("dir %q too long for a unix socket path (max %d bytes with %q)", s.dir, maxSunPath, qmpSocketName)
	}
	if s.kernel, err = checkPath("kernel", cfg.Kernel, false); err != nil {
		return s, err
	}
	if cfg.Initrd != "" {
		if s.initrd, err = checkPath("initrd", cfg.Initrd, false); err != nil {
			return s, err
		}
	}
	if cfg.Disk != "" {
		if s.disk, err = checkPath("disk", cfg.Disk, false); err != nil {
			return s, err
		}
	}
	if r := cfg.DiskRate; r.BytesPerSec < 0 || r.OpsPerSec < 0 {
		return s, fmt.Errorf("disk rate: %d bytes/s and %d ops/s must not be negative", r.BytesPerSec, r.OpsPerSec)
	}
	for _, a := range cfg.KernelArgs {
		if err := checkKernelArg(a); err != nil {
			return s, err
		}
	}
	if n := cfg.Net; n != nil {
		if n.NetNS != "" {
			if s.netns, err = checkPath("netns", n.NetNS, false); err != nil {
				return s, err
			}
		}
		if !tapPattern.MatchString(n.TAP) {
			return s, fmt.Errorf("invalid tap name %q", n.TAP)
		}
		s.tap = n.TAP
		hw, err := net.ParseMAC(n.MAC)
		if err != nil || len(hw) != 6 {
			return s, fmt.Errorf("invalid mac %q: want 6 bytes like 02:fc:00:00:00:05", n.MAC)
		}
		if hw[0]&1 == 1 {
			return s, fmt.Errorf("invalid mac %q: multicast bit set", n.MAC)
		}
		s.mac = hw.String()
		if n.GuestIP.IsValid() != n.Gateway.IsValid() {
			return s, errors.New("net: guest ip and gateway must be set together")
		}
		for _, d := range n.DNS {
			if !d.IsValid() {
				return s, errors.New("net: invalid dns address")
			}
		}
	}
	if j := cfg.Jail; j != nil {
		if j.UID == 0 || j.GID == 0 {
			return s, fmt.Errorf("jail: uid and gid must not be 0 (got %d:%d)", j.UID, j.GID)
		}
		s.jail = j
	}
	return s, nil
}

// checkPath makes p absolute and requires it to exist as a directory (dir) or as a
// non-directory (a file, a block device or a namespace file).
func checkPath(what, p string, dir bool) (string, error) {
	if p == "" {
		return "", fmt.Errorf("%s path is empty", what)
	}
	if strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", fmt.Errorf("%s path %q has control characters", what, p)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("%s path %q: %w", what, p, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if fi.IsDir() != dir {
		if dir {
			return "", fmt.Errorf("%s %q is not a directory", what, abs)
		}
		return "", fmt.Errorf("%s %q is a directory", what, abs)
	}
	return abs, nil
}

func checkKernelArg(a string) error {
	if a == "" {
		return errors.New("empty kernel argument")
	}
	for _, r := range a {
		if r <= ' ' || r == 0x7f || r == '"' || r == '\'' || r == '\\' || r > 0x7e {
			return fmt.Errorf("kernel argument %q: whitespace, quotes, backslashes and non-ASCII are not allowed", a)
		}
	}
	if a == "--" {
		return errors.New(`kernel argument "--" would hand the rest to init`)
	}
	return nil
}

// kernelCmdline is the guest kernel's command line: the driver's fixed part, the
// network parameters read by Wrenn's initramfs, then cfg.KernelArgs.
//
// console=ttyS0 is the serial log; panic=-1 reboots at once on a panic and, with
// QEMU's -no-reboot, turns a guest panic into a QEMU exit instead of a boot loop;
// reboot=t makes a guest reboot use the triple-fault path microvm handles;
// tsc_early_khz avoids the random early-calibration hangs under TCG (see hostTSCKHz).
func kernelCmdline(s spec, tscKHz int64) (string, error) {
	args := []string{"console=ttyS0", "reboot=t", "panic=-1", "quiet"}
	if tscKHz > 0 {
		args = append(args, "tsc_early_khz="+strconv.FormatInt(tscKHz, 10))
	}
	if n := s.cfg.Net; n != nil {
		if n.GuestIP.IsValid() {
			args = append(args, "wrenn.ip="+n.GuestIP.String(), "wrenn.gw="+n.Gateway.String())
		}
		if len(n.DNS) > 0 {
			dns := make([]string, len(n.DNS))
			for i, d := range n.DNS {
				dns[i] = d.String()
			}
			args = append(args, "wrenn.dns="+strings.Join(dns, ","))
		}
	}
	args = append(args, s.cfg.KernelArgs...)
	line := strings.Join(args, " ")
	if len(line) > maxCmdline {
		return "", fmt.Errorf("kernel command line is %d bytes, max %d", len(line), maxCmdline)
	}
	return line, nil
}

// optValue escapes a value for QEMU's "key=value,key=value" option syntax, where a
// literal comma is written as two.
func optValue(v string) string { return strings.ReplaceAll(v, ",", ",,") }

// buildArgv returns QEMU's full argv (argv[0] = binary) for a validated spec. It is a
// pure function so tests can check every flag. The argv is exec'd directly, never
// through a shell.
func buildArgv(binary string, kvm bool, tscKHz int64, s spec) ([]string, error) {
	cmdline, err := kernelCmdline(s, tscKHz)
	if err != nil {
		return nil, err
	}
	// TCG's translation cache would grow to min(1 GiB, host RAM/8) with the code a
	// guest runs; bounded, the VMM's memory stays under its cgroup's overhead
	// allowance (agent.DefaultMemoryOverheadMiB) and a full cache is flushed instead.
	accel, cpu := "tcg,tb-size="+strconv.Itoa(tcgCacheMiB), "max"
	if kvm {
		accel, cpu = "kvm", "host"
	}
	mem := strconv.Itoa(s.cfg.MemoryMiB)
	console := "file,id=console,path=" + optValue(s.consolePath())
	if s.incoming {
		// A restored VM continues the console log of the VM it was paused from.
		console += ",append=on"
	}
	argv := []string{binary,
		"-name", s.cfg.ID,
		// pit/pic/rtc: without a reference timer the guest's TSC calibration hangs
		// under TCG (qemu-tcg-notes.md §1).
		"-M", "microvm,pit=on,pic=on,rtc=on,memory-backend=mem",
		"-accel", accel,
		"-cpu", cpu,
		"-smp", strconv.Itoa(s.cfg.VCPUs),
		"-m", mem,
		// Guest RAM is a shared mapping of a sparse file in Dir (package doc): a
		// snapshot links or copies it instead of streaming it, and migration skips
		// it (x-ignore-shared skips only share=on RAM).
		"-object", "memory-backend-file,id=mem,size=" + mem + "M,mem-path=" + optValue(s.memoryPath()) + ",share=on,prealloc=off",
		"-nodefaults", "-no-user-config", "-nographic",
		"-no-reboot",
		// The guest is untrusted; if it escapes into QEMU, seccomp keeps QEMU from
		// spawning, changing privileges or using obsolete syscalls.
		"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
		"-chardev", console,
		"-serial", "chardev:console",
		"-kernel", s.kernel,
	}
	if s.initrd != "" {
		argv = append(argv, "-initrd", s.initrd)
	}
	argv = append(argv, "-append", cmdline)
	if s.disk != "" {
		// Raw is stated explicitly so QEMU never probes the format from guest-written
		// bytes. writeback+threads works on every filesystem (O_DIRECT does not on
		// tmpfs); guest flushes are still honoured. discard keeps CoW files sparse.
		// QEMU's block throttling bounds what the guest reads and writes, buffered
		// or not (bursts: QEMU's default of a tenth of a second's worth).
		drive := "id=root,if=none,file=" + optValue(s.disk) + ",format=raw,cache=writeback,aio=threads,discard=unmap"
		r := s.cfg.DiskRate
		if r.BytesPerSec > 0 {
			drive += ",throttling.bps-total=" + strconv.FormatInt(r.BytesPerSec, 10)
		}
		if r.OpsPerSec > 0 {
			drive += ",throttling.iops-total=" + strconv.FormatInt(r.OpsPerSec, 10)
		}
		argv = append(argv, "-drive", drive, "-device", "virtio-blk-device,drive=root")
	}
	if s.tap != "" {
		argv = append(argv,
			"-netdev", "tap,id=net0,fd="+strconv.Itoa(tapFD),
			"-device", "virtio-net-device,netdev=net0,mac="+s.mac)
	}
	argv = append(argv,
		"-chardev", "socket,id=qmp,fd="+strconv.Itoa(qmpFD)+",server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
		"-pidfile", s.pidPath(),
	)
	if s.incoming {
		// -S as well: the VM must stay paused after loading whatever run state the
		// snapshot recorded; Machine.Resume runs it.
		argv = append(argv, "-incoming", "defer", "-S")
	}
	return argv, nil
}

// noValueFlags are the QEMU flags buildArgv uses that take no value.
var noValueFlags = map[string]bool{
	"-nodefaults": true, "-no-user-config": true, "-nographic": true, "-no-reboot": true, "-S": true,
}

// hardwareFlags are the flags whose values shape what the guest sees (machine,
// accelerator, CPU, RAM, devices): a snapshot's device state loads only into the
// same shape.
var hardwareFlags = map[string]bool{
	"-M": true, "-accel": true, "-cpu": true, "-smp": true, "-m": true, "-object": true, "-device": true,
}

// machineArgs extracts the hardware-shaping arguments of an argv for SnapshotMeta,
// without per-VM paths (the memory file's mem-path), so a snapshot of one VM
// compares equal to the argv of another VM with the same shape in another Dir. The
// NIC's MAC stays: the guest keeps the snapshot's MAC whatever the command line says,
// so a different one would be a lie.
func machineArgs(argv []string) []string {
	var out []string
	for i := 1; i < len(argv); i++ {
		f := argv[i]
		if noValueFlags[f] {
			continue
		}
		if i+1 >= len(argv) {
			break
		}
		v := argv[i+1]
		i++
		if hardwareFlags[f] {
			// Neither the memory file's path nor TCG's cache size is seen by the guest.
			out = append(out, f, dropOption(dropOption(v, "mem-path"), "tb-size"))
		}
	}
	return out
}

// dropOption removes key=… from a QEMU option string (where ",," is a literal
// comma inside a value).
func dropOption(opts, key string) string {
	var parts []string
	start := 0
	for i := 0; i < len(opts); i++ {
		if opts[i] != ',' {
			continue
		}
		if i+1 < len(opts) && opts[i+1] == ',' {
			i++
			continue
		}
		parts = append(parts, opts[start:i])
		start = i + 1
	}
	parts = append(parts, opts[start:])
	kept := parts[:0]
	for _, p := range parts {
		if !strings.HasPrefix(p, key+"=") {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, ",")
}
