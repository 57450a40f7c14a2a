// Package vmm is the seam between the host agent and virtual machine monitors: a Driver
// boots a microVM from a kernel, an initramfs and a root disk (optionally attached to a
// TAP device inside a network namespace) and returns a Machine to pause, resume, stop and
// watch. Optional capabilities are interfaces of their own that a driver's types may
// implement (Snapshotter on a Machine, Restorer on a Driver), found by type assertion.
// A Registry maps driver names ("qemu", "firecracker", or "auto") to constructors.
//
// Implementations live in subpackages (qemu; firecracker on KVM hosts), the process
// plumbing they share in vmproc, the registry of all of them in drivers, and the
// conformance suite every driver passes in vmmtest.
package vmm

import (
	"context"
	"errors"
	"net/netip"
)

// Config describes one VM to start.
type Config struct {
	// ID names the VM in logs; it must be a short [a-z0-9-] name.
	ID string
	// Dir is the VM's private runtime directory (sockets, pidfile, console log, the
	// state needed to adopt it again; for QEMU also the guest RAM file, which may be
	// as large as the VM's memory). It must exist and belong to this VM alone.
	Dir string
	// Kernel is an uncompressed vmlinux (PVH boot) or a bzImage.
	Kernel string
	// Initrd is the initramfs that mounts Disk as the root filesystem.
	Initrd string
	// Disk is the root filesystem image, attached read-write as the first virtio disk.
	Disk      string
	VCPUs     int
	MemoryMiB int
	// KernelArgs are appended to the driver's own command line (console, timers, …).
	KernelArgs []string
	// Net attaches one virtio NIC; nil boots without network.
	Net *NetConfig
	// Jail confines the VMM process (package jail); nil runs it as the agent's user
	// with the host's filesystem in view.
	Jail *Jail
	// DiskRate bounds the guest's I/O on Disk, enforced by the VMM itself (so it
	// holds for buffered writes too, which a cgroup v1 throttle does not see); the
	// zero value is unlimited.
	DiskRate RateLimit
	// Metadata is handed to the guest by VMMs that have a metadata service
	// (Firecracker's MMDS: sandbox and template ids); others ignore it.
	Metadata map[string]string
}

// RateLimit is a token-bucket bound on a device's traffic: bytes and operations per
// second, each 0 for none. The VMM may allow short bursts above it.
type RateLimit struct {
	BytesPerSec int64
	OpsPerSec   int64
}

// Jail is how a VMM process is confined: it runs as UID:GID (never 0) with no
// capabilities and no_new_privs, in a mount namespace whose root holds only the VM's
// own files (kernel, initramfs, disk, memory, console log) and the system's
// read-only /usr, after joining the cgroups whose cgroup.procs files are listed.
// Devices it would need root for (the TAP, the QMP or API socket) are opened by the
// driver and passed as file descriptors.
type Jail struct {
	UID, GID    uint32
	CgroupProcs []string
}

// NetConfig attaches the VM to an existing TAP device.
type NetConfig struct {
	// NetNS is the path of the network namespace that holds TAP (e.g.
	// /var/run/netns/wrenn-ns-1); the VMM process runs inside it. "" = current namespace.
	NetNS string
	// TAP is the device name inside NetNS.
	TAP string
	// MAC of the guest's NIC.
	MAC string
	// GuestIP and Gateway are handed to the guest's initramfs on the kernel command line.
	GuestIP netip.Prefix
	Gateway netip.Addr
	// DNS servers for the guest's resolv.conf; none in tests.
	DNS []netip.Addr
}

// Machine is a running VM.
type Machine interface {
	// PID of the VMM process.
	PID() int
	// Done is closed when the VMM process has exited (crash, kill, shutdown or Stop).
	Done() <-chan struct{}
	// Err says why the VMM exited, after Done is closed.
	Err() error
	// Pause stops the vCPUs and returns once they have stopped; Resume continues
	// them. Pausing a paused VM or resuming a running one succeeds; on a VM whose
	// process has exited both return an error matching ErrNotRunning.
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
	// Stop ends the VM, paused or running: a graceful quit, then a kill if ctx ends
	// first. It waits for the process to be gone and removes the VM's sockets and
	// pidfile (the console log stays). Stopping an exited VM only cleans up.
	Stop(ctx context.Context) error
	// ConsoleLog is the path of the guest's serial console output: Dir/ConsoleLogName.
	ConsoleLog() string
}

// ConsoleLogName is the file in a VM's Dir that every driver writes the guest's serial
// console to; a restore from a snapshot appends to it. It stays after Stop, so the
// host agent reads it by this name when no Machine is at hand (a paused sandbox, or
// one whose VM has not started yet).
const ConsoleLogName = "console.log"

// Driver starts VMs of one VMM kind. Drivers are made by a Registry from their name;
// the agent records that name with every sandbox so that it adopts and restores the
// sandbox with the same kind of driver.
type Driver interface {
	// Name is the registry name: "qemu" or "firecracker".
	Name() string
	// Start boots a VM. On any failure nothing is left running and the error says why
	// (including the tail of the console log when the guest got that far).
	Start(ctx context.Context, cfg Config) (Machine, error)
	// Adopt re-attaches to a VM started by an earlier agent process from its Dir.
	// ErrNotRunning means the VM is gone (its leftovers may be removed).
	Adopt(ctx context.Context, dir string) (Machine, error)
}

// ErrNotRunning is returned by Adopt when the VM in a directory no longer runs.
var ErrNotRunning = errors.New("vm is not running")
