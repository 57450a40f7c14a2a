// Package firecracker is the Firecracker implementation of the vmm seam, for hosts
// with a KVM that runs stock guest kernels. It spawns `firecracker --api-sock` per VM
// in a private mount namespace inside the sandbox's network namespace (through
// package jail when the VM is jailed), configures it over the HTTP API — machine,
// boot source with initramfs, root drive, the slot's TAP with the fixed MAC, entropy,
// MMDS v2 with the sandbox's metadata — and starts it. Pause and resume are PATCH /vm;
// snapshots are PUT /snapshot/create, Full or Diff (dirty-page tracking is on from
// boot and every load), converted into Wrenn's memfile generations; a restore loads
// the vm state with the Uffd memory backend, served lazily by package uffd.
//
// Paths are stable inside the VMM's view: Firecracker runs in the VM's Dir (bound at
// /vm when jailed) and is given relative names — vmlinux, initrd, rootfs, api.sock,
// uffd.sock — that the driver links (or, jailed, binds) to the VM's own files, so a
// snapshot's recorded drive path resolves to the new VM's disk wherever it restores.
//
// This machine's CI cannot run Firecracker (no binary, nested PVM KVM): every request
// sequence is checked there against the published API by a spec-checking stand-in
// (fcstandin), and scripts/kvm-host-check.sh runs the real-Firecracker tests on a KVM
// host.
package firecracker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/wrennhq/wrenn/internal/vmm"
	"github.com/wrennhq/wrenn/internal/vmm/vmproc"
)

// Name is the driver's registry name, recorded with every sandbox it runs.
const Name = "firecracker"

const defaultBinary = "firecracker"

// Names inside the VMM's working directory (see the package doc).
const (
	kernelName   = "vmlinux"
	initrdName   = "initrd"
	diskName     = "rootfs"
	apiSockName  = "api.sock"
	uffdSockName = "uffd.sock"
	pagerCtlName = "uffd.ctl"
	pagerLogName = "uffd.log"
	vmstateName  = "vmstate"
	stateName    = "firecracker.json"
	jailDir      = "/vm"
	ifaceID      = "eth0"
	rootDriveID  = "rootfs"
	scratchName  = "snapshot.tmp"
	baseName     = "memfile.base"
)

// Driver starts, restores and adopts Firecracker microVMs.
type Driver struct {
	bin          string
	log          *slog.Logger
	startTimeout time.Duration
	// probes caches what each binary says of its versions; digests, boot files'
	// SHA-256 (a snapshot records them, a restore compares them).
	probes  vmm.FileCache[binaryInfo]
	digests vmm.FileCache[string]
}

var (
	_ vmm.Driver   = (*Driver)(nil)
	_ vmm.Restorer = (*Driver)(nil)
)

// Open is the registry's constructor. Firecracker has one accelerator, KVM.
func Open(o vmm.Options) (vmm.Driver, error) {
	switch o.Accel {
	case "", "auto", "kvm":
	default:
		return nil, fmt.Errorf("firecracker runs on kvm only, not accel %q", o.Accel)
	}
	d := &Driver{bin: o.Binary, log: o.Logger, startTimeout: o.StartTimeout}
	if d.bin == "" {
		d.bin = defaultBinary
	}
	if d.log == nil {
		d.log = slog.Default()
	}
	d.log = d.log.With("vmm", Name)
	if d.startTimeout <= 0 {
		d.startTimeout = 10 * time.Second
	}
	return d, nil
}

// Usable says whether Firecracker can run here: its binary found and a KVM that runs
// stock kernels (not nested PVM).
func Usable(o vmm.Options) error {
	bin := o.Binary
	if bin == "" {
		bin = defaultBinary
	}
	if _, err := exec.LookPath(bin); err != nil {
		return fmt.Errorf("firecracker binary: %w", err)
	}
	if !vmproc.KVMUsable() {
		return errors.New("no usable KVM (needs /dev/kvm with kvm_intel or kvm_amd)")
	}
	return nil
}

// Name is "firecracker".
func (d *Driver) Name() string { return Name }

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// validate checks cfg before anything is spawned.
func validate(cfg vmm.Config) error {
	if !idPattern.MatchString(cfg.ID) {
		return fmt.Errorf("invalid vm id %q: want [a-z0-9-], at most 63 chars", cfg.ID)
	}
	if cfg.VCPUs < 1 || cfg.VCPUs > 32 {
		return fmt.Errorf("vcpus %d out of range 1..32", cfg.VCPUs)
	}
	if cfg.MemoryMiB < 32 || cfg.MemoryMiB > 1<<20 {
		return fmt.Errorf("memory %d MiB out of range 32..1048576", cfg.MemoryMiB)
	}
	if fi, err := os.Stat(cfg.Dir); err != nil || !fi.IsDir() || !filepath.IsAbs(cfg.Dir) {
		return fmt.Errorf("dir %q must be an existing absolute directory", cfg.Dir)
	}
	for what, p := range map[string]string{"kernel": cfg.Kernel, "disk": cfg.Disk, "initrd": cfg.Initrd} {
		if p == "" && what == "initrd" {
			continue
		}
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() || !filepath.IsAbs(p) {
			return fmt.Errorf("%s %q must be an existing absolute path to a file", what, p)
		}
	}
	if r := cfg.DiskRate; r.BytesPerSec < 0 || r.OpsPerSec < 0 {
		return fmt.Errorf("disk rate: %d bytes/s and %d ops/s must not be negative", r.BytesPerSec, r.OpsPerSec)
	}
	for _, a := range cfg.KernelArgs {
		if a == "" || strings.ContainsAny(a, " \t\n\x00") {
			return fmt.Errorf("kernel argument %q is empty or holds whitespace", a)
		}
	}
	if cfg.Net != nil && (cfg.Net.TAP == "" || cfg.Net.MAC == "") {
		return errors.New("network: a TAP name and a MAC are required")
	}
	return nil
}

// bootArgs is the guest's command line. Custom boot_args replace Firecracker's
// default, so it carries what a Firecracker guest needs: the serial console,
// reboot=k (a guest reboot makes Firecracker exit), panic=1, and the network
// parameters Wrenn's initramfs reads (no `ip=`: Debian's kernel lacks autoconfig).
// Firecracker itself appends pci=off and the virtio-mmio devices.
func bootArgs(cfg vmm.Config) string {
	args := []string{"console=ttyS0", "reboot=k", "panic=1", "quiet", "random.trust_cpu=on"}
	if n := cfg.Net; n != nil && n.GuestIP.IsValid() {
		args = append(args, "wrenn.ip="+n.GuestIP.String(), "wrenn.gw="+n.Gateway.String())
		if len(n.DNS) > 0 {
			dns := make([]string, len(n.DNS))
			for i, a := range n.DNS {
				dns[i] = a.String()
			}
			args = append(args, "wrenn.dns="+strings.Join(dns, ","))
		}
	}
	return strings.Join(append(args, cfg.KernelArgs...), " ")
}

// machineArgs is the hardware shape a snapshot records and a restore must match.
func machineArgs(cfg vmm.Config) []string {
	args := []string{"smt=off", "track_dirty_pages=on", "drive=" + rootDriveID, "entropy=on", "mmds=V2"}
	if cfg.Net != nil {
		args = append(args, "net="+ifaceID)
	}
	return args
}

// Start boots a VM: spawn, configure, InstanceStart. On failure the process is
// killed and its runtime files removed.
func (d *Driver) Start(ctx context.Context, cfg vmm.Config) (vmm.Machine, error) {
	if err := validate(cfg); err != nil {
		return nil, fmt.Errorf("start firecracker %s: %w", cfg.ID, err)
	}
	bin, info, err := d.binary(ctx)
	if err != nil {
		return nil, fmt.Errorf("start firecracker %s: %w", cfg.ID, err)
	}
	m, err := d.spawn(ctx, cfg, bin, info, false)
	if err != nil {
		return nil, fmt.Errorf("start firecracker %s: %w", cfg.ID, err)
	}
	if err := m.boot(ctx, cfg); err != nil {
		m.killWait()
		removeRuntime(cfg.Dir)
		return nil, fmt.Errorf("start firecracker %s: %w%s", cfg.ID, err, m.consoleTail())
	}
	m.log.Info("firecracker started", "took", time.Since(m.started))
	return m, nil
}

type call struct {
	method, path string
	body         any
}

// binary resolves the Firecracker executable and what it says about itself.
func (d *Driver) binary(ctx context.Context) (string, binaryInfo, error) {
	bin, err := exec.LookPath(d.bin)
	if err == nil {
		bin, err = filepath.Abs(bin)
	}
	if err != nil {
		return "", binaryInfo{}, fmt.Errorf("firecracker binary: %w", err)
	}
	info, err := probe(ctx, &d.probes, bin)
	return bin, info, err
}

// boot is the pre-boot configuration and InstanceStart, in the order Firecracker's
// documentation gives.
func (m *Machine) boot(ctx context.Context, cfg vmm.Config) error {
	c := m.api
	steps := []call{
		{"PUT", "/machine-config", machineConfig{VCPUCount: cfg.VCPUs, MemSizeMiB: cfg.MemoryMiB, TrackDirtyPages: true}},
		{"PUT", "/boot-source", bootSource{KernelImagePath: kernelName, InitrdPath: initrdPathFor(cfg), BootArgs: bootArgs(cfg)}},
		{"PUT", "/drives/" + rootDriveID, rootDrive(cfg)},
	}
	if cfg.Net != nil {
		steps = append(steps,
			call{"PUT", "/network-interfaces/" + ifaceID, networkInterface{IfaceID: ifaceID, HostDevName: cfg.Net.TAP, GuestMAC: cfg.Net.MAC}},
			call{"PUT", "/mmds/config", mmdsConfig{Version: "V2", NetworkInterfaces: []string{ifaceID}}})
	}
	steps = append(steps, call{"PUT", "/entropy", entropyDevice{}})
	for _, s := range steps {
		if err := c.do(ctx, s.method, s.path, s.body, nil); err != nil {
			return err
		}
	}
	if err := m.putMetadata(ctx, cfg); err != nil {
		return err
	}
	return c.do(ctx, "PUT", "/actions", action{ActionType: "InstanceStart"}, nil)
}

func initrdPathFor(cfg vmm.Config) string {
	if cfg.Initrd == "" {
		return ""
	}
	return initrdName
}

// rootDrive is the sandbox's disk. Wrenn's initramfs mounts the root itself, so the
// drive is not Firecracker's root device (which would add root= to the command line).
func rootDrive(cfg vmm.Config) drive {
	d := drive{DriveID: rootDriveID, PathOnHost: diskName}
	if r := cfg.DiskRate; r.BytesPerSec > 0 || r.OpsPerSec > 0 {
		d.RateLimiter = &rateLimiter{Bandwidth: bucket(r.BytesPerSec), Ops: bucket(r.OpsPerSec)}
	}
	return d
}

// putMetadata stores the VM's metadata in MMDS. The store is empty after a snapshot
// load, so it is put again after every load.
func (m *Machine) putMetadata(ctx context.Context, cfg vmm.Config) error {
	if cfg.Net == nil {
		return nil
	}
	data := map[string]string{"instanceID": cfg.ID}
	for k, v := range cfg.Metadata {
		data[k] = v
	}
	return m.api.do(ctx, "PUT", "/mmds", data, nil)
}
