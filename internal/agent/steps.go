package agent

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/wrennhq/wrenn/internal/envd/envdapi"
	"github.com/wrennhq/wrenn/internal/envdclient"
	"github.com/wrennhq/wrenn/internal/netslot"
	"github.com/wrennhq/wrenn/internal/rootfs"
	"github.com/wrennhq/wrenn/internal/vmm"
	"github.com/wrennhq/wrenn/internal/vmm/vmproc"
)

// The steps a sandbox's resources are made in. Each make-step returns the function that
// undoes it; the matching release function is what Destroy and a failed transition
// call. Create, Recover and (later) pause, resume and restore-from-snapshot are
// sequences of these steps.

// rollback undoes completed steps, newest first, when a transition fails.
type rollback []func()

func (r *rollback) add(undo func()) {
	if undo != nil {
		*r = append(*r, undo)
	}
}

func (r rollback) run() {
	for i := len(r) - 1; i >= 0; i-- {
		r[i]()
	}
}

// takeSlot gives the sandbox a network slot from the pool and records it.
func (m *Manager) takeSlot(ctx context.Context, sb *sandbox, internet bool) (func(), error) {
	slot, err := m.cfg.Slots.Get(ctx, internet)
	if err != nil {
		return nil, fmt.Errorf("network slot: %w", err)
	}
	sb.set(func(sb *sandbox) { sb.slot, sb.rec.Slot = slot, slot.Index })
	undo := func() { m.logFailure(sb, "release slot", m.releaseSlot(sb)) }
	if err := sb.persist(); err != nil {
		undo()
		return nil, err
	}
	return undo, nil
}

// adoptSlot takes over the slot a sandbox had before an agent restart.
func (m *Manager) adoptSlot(sb *sandbox, index int) (func(), error) {
	slot, err := m.cfg.Slots.Adopt(index)
	if err != nil {
		return nil, fmt.Errorf("slot %d: %w", index, err)
	}
	sb.set(func(sb *sandbox) { sb.slot = slot })
	return func() { m.logFailure(sb, "release slot", m.releaseSlot(sb)) }, nil
}

// releaseSlot gives the sandbox's slot back (its namespace and firewall go).
func (m *Manager) releaseSlot(sb *sandbox) error {
	var slot *netslot.Slot
	sb.set(func(sb *sandbox) { slot, sb.slot = sb.slot, nil })
	if slot == nil {
		return nil
	}
	if err := m.cfg.Slots.Release(slot); err != nil {
		return fmt.Errorf("release slot %d: %w", slot.Index, err)
	}
	return nil
}

// makeDisk gives the sandbox its copy-on-write root disk.
func (m *Manager) makeDisk(ctx context.Context, sb *sandbox, template string, sizeMiB int) (func(), error) {
	disk, err := m.cfg.Disks.Create(ctx, template, sb.dir, sizeMiB)
	if errors.Is(err, rootfs.ErrTooSmall) {
		return nil, invalid("%v", err)
	}
	if err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	sb.set(func(sb *sandbox) { sb.disk = disk })
	return func() { m.logFailure(sb, "release disk", m.releaseDisk(sb)) }, nil
}

// adoptDisk finds the disk a sandbox had before an agent restart.
func (m *Manager) adoptDisk(sb *sandbox) error {
	disk, err := m.cfg.Disks.Adopt(sb.dir)
	if err != nil {
		return err
	}
	sb.set(func(sb *sandbox) { sb.disk = disk })
	return nil
}

func (m *Manager) releaseDisk(sb *sandbox) error {
	sb.set(func(sb *sandbox) { sb.disk = "" })
	return m.cfg.Disks.Release(sb.dir)
}

// bootSource is what a VM boots from.
type bootSource struct{ kernel, initrd string }

// vmConfig is the VM of the sandbox on its slot and disk, booted (or restored) from boot.
func (m *Manager) vmConfig(sb *sandbox, boot bootSource) vmm.Config {
	sb.mu.Lock()
	spec, slot, disk := sb.rec.Spec, sb.slot, sb.disk
	sb.mu.Unlock()
	return vmm.Config{
		ID: spec.ID, Dir: sb.dir, Kernel: boot.kernel, Initrd: boot.initrd, Disk: disk,
		VCPUs: spec.VCPUs, MemoryMiB: spec.MemoryMiB,
		KernelArgs: append([]string{"wrenn.hostname=" + spec.ID}, m.cfg.KernelArgs...),
		Metadata:   map[string]string{"instanceID": spec.ID, "envID": spec.Template}, // E2B's MMDS names
		Net: &vmm.NetConfig{
			NetNS: slot.NetNSPath(), TAP: netslot.TapName, MAC: netslot.GuestMAC.String(),
			GuestIP: netslot.GuestIP, Gateway: netslot.TapIP.Addr(),
		},
	}
}

// startVM boots the sandbox's VM on its slot and disk.
func (m *Manager) startVM(ctx context.Context, sb *sandbox, boot bootSource) (func(), error) {
	return m.runVM(sb, boot, func(cfg vmm.Config) (vmm.Machine, error) { return m.cfg.Driver.Start(ctx, cfg) })
}

// runVM starts the sandbox's VM with start, confined (confine.go): on failure its
// cgroup is gone again; the undo stops the VM, which removes the cgroup too.
func (m *Manager) runVM(sb *sandbox, boot bootSource, start func(vmm.Config) (vmm.Machine, error)) (func(), error) {
	cfg := m.vmConfig(sb, boot)
	unconfine, err := m.confine(sb, &cfg)
	if err != nil {
		return nil, err
	}
	machine, err := start(cfg)
	if err != nil {
		unconfine()
		return nil, err
	}
	m.attachVM(sb, machine)
	stop := func() { m.logFailure(sb, "stop vm", m.stopVM(context.Background(), sb)) }
	if err := m.joinUnjailed(sb, cfg, machine); err != nil {
		stop()
		return nil, fmt.Errorf("limits: %w", err)
	}
	return stop, nil
}

// adoptVM re-attaches to the VM a sandbox had before an agent restart.
func (m *Manager) adoptVM(ctx context.Context, sb *sandbox) (func(), error) {
	machine, err := m.cfg.Driver.Adopt(ctx, sb.dir)
	if err != nil {
		return nil, err
	}
	m.adoptCgroup(sb)
	m.attachVM(sb, machine)
	return func() { m.logFailure(sb, "stop vm", m.stopVM(context.Background(), sb)) }, nil
}

func (m *Manager) attachVM(sb *sandbox, machine vmm.Machine) {
	sb.set(func(sb *sandbox) { sb.machine, sb.rec.VMM = machine, m.cfg.Driver.Name() })
}

// stopVM ends the sandbox's VM (a graceful quit, then a kill after 10 s).
func (m *Manager) stopVM(ctx context.Context, sb *sandbox) error {
	var machine vmm.Machine
	var envd *envdclient.Client
	sb.set(func(sb *sandbox) { machine, envd = sb.machine, sb.envd })
	if machine == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if envd != nil {
		defer envd.CloseIdleConnections()
	}
	if err := machine.Stop(ctx); err != nil {
		return fmt.Errorf("stop vm: %w", err)
	}
	return m.releaseCgroup(sb)
}

// connectEnvd points the sandbox's envd client at its slot and waits for /health while
// watching the VM: one that dies while booting fails at once, with its console's tail.
func (m *Manager) connectEnvd(ctx context.Context, sb *sandbox, timeout time.Duration) error {
	sb.mu.Lock()
	slot, machine, token := sb.slot, sb.machine, sb.rec.Token
	sb.mu.Unlock()
	client := envdclient.New("http://"+netip.AddrPortFrom(slot.HostIP, envdapi.Port).String(), token, envdHTTPClient())
	var old *envdclient.Client
	sb.set(func(sb *sandbox) { old, sb.envd = sb.envd, client })
	if old != nil {
		old.CloseIdleConnections()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	healthy := make(chan error, 1)
	go func() { healthy <- client.WaitHealthy(ctx) }()
	select {
	case err := <-healthy:
		if err != nil {
			return fmt.Errorf("boot: %w\nconsole:\n%s", err, vmproc.ConsoleTail(machine.ConsoleLog(), 30))
		}
		return nil
	case <-machine.Done():
		cancel()
		<-healthy
		return fmt.Errorf("boot: vm exited: %v\nconsole:\n%s", machine.Err(), vmproc.ConsoleTail(machine.ConsoleLog(), 30))
	}
}

// initGuest sends /init with the sandbox's identity, token and the current time,
// retrying a few times: the first request can race envd's listener being fully ready
// behind the DNAT. A VM that exits meanwhile ends it at once.
func (m *Manager) initGuest(ctx context.Context, sb *sandbox, token, template string) error {
	seed := make([]byte, 32)
	if _, err := rand.Read(seed); err != nil {
		return err
	}
	sb.mu.Lock()
	spec, client, machine := sb.rec.Spec, sb.envd, sb.machine
	sb.mu.Unlock()
	ctx, cancel := whileRunning(ctx, machine)
	defer cancel()
	env := spec.EnvVars
	if env == nil {
		env = map[string]string{}
	}
	var err error
	for attempt := range 4 {
		now := time.Now()
		err = client.Init(ctx, envdapi.InitRequest{
			EnvVars: env, AccessToken: &token, DefaultUser: "user", DefaultWorkdir: "/home/user",
			Timestamp: &now, SandboxID: spec.ID, TemplateID: template, Hostname: spec.ID, RandomSeed: seed,
		})
		if err == nil {
			sb.set(func(sb *sandbox) { sb.rec.Token = token })
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("init: %w", context.Cause(ctx))
		case <-time.After(time.Duration(50*(attempt+1)) * time.Millisecond):
		}
	}
	return fmt.Errorf("init: %w", err)
}

// exited reports whether machine has exited already.
func exited(machine vmm.Machine) bool {
	select {
	case <-machine.Done():
		return true
	default:
		return false
	}
}

// whileRunning is ctx, also ended when machine exits: a call to its guest then fails
// at once instead of waiting out its deadline on a connection nobody answers.
func whileRunning(ctx context.Context, machine vmm.Machine) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	if machine == nil {
		return ctx, func() { cancel(nil) }
	}
	go func() {
		select {
		case <-machine.Done():
			cancel(fmt.Errorf("vm exited: %v", machine.Err()))
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(nil) }
}

// removeDir removes what is left of the sandbox's directory (record, logs, sockets).
func (m *Manager) removeDir(sb *sandbox) error {
	if err := os.RemoveAll(sb.dir); err != nil {
		return fmt.Errorf("remove %s: %w", sb.dir, err)
	}
	return nil
}

// teardown releases everything of a sandbox; it keeps going past failures so as much
// as possible is freed, and reports them all.
func (m *Manager) teardown(ctx context.Context, sb *sandbox) error {
	sb.endConns()
	vmErr := m.stopVM(ctx, sb)
	m.faultPoint("destroy/vm", sb)
	slotErr := m.releaseSlot(sb)
	m.faultPoint("destroy/slot", sb)
	diskErr := m.releaseDisk(sb)
	m.faultPoint("destroy/disk", sb)
	return errors.Join(vmErr, slotErr, diskErr, m.removeDir(sb))
}

func (m *Manager) logFailure(sb *sandbox, what string, err error) {
	if err != nil {
		m.log.Warn(what+" after a failed transition", "sandbox", sb.id, "err", err)
	}
}

// envdHTTPClient is the transport to one VM's envd: each VM has its own, whose
// kept-alive connections stopVM closes (a shared one would keep them for its idle
// timeout after the VM is gone — two goroutines and a socket each, holding the
// sandbox's network namespace — and could hand one to the next VM on the same slot,
// which has the same address). Each call's own bound
// (envdclient's unary, idle and stream-idle limits) is per request; the transport
// bounds what no request can:
//   - dialing: 10 s. The guest is on a local tap device, so a connect answers in
//     microseconds or is refused; a SYN a hung guest drops would otherwise wait out
//     the kernel's retries (over two minutes).
//   - a peer gone silent at the TCP level (a crashed guest kernel): keepalive probes
//     after 30 s of quiet, every 30 s, 9 unanswered end the connection, about 5 min,
//     longer than a snapshot of a running sandbox stops its vCPUs, so live streams
//     survive that pause.
//   - response headers: at most 64 KiB, from a guest not trusted to be polite.
//
// No ResponseHeaderTimeout: it would apply to streams too, whose calls bound the
// wait for their first event themselves; no TLS (plain HTTP on a host-only link).
// Idle keep-alive connections close after 90 s (envd keeps them 640 s): the agent
// closes first, so it never sends into a connection envd is closing.
func envdHTTPClient() *http.Client {
	dialer := &net.Dialer{
		Timeout:         10 * time.Second,
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 30 * time.Second, Count: 9},
	}
	return &http.Client{Transport: &http.Transport{
		DialContext:            dialer.DialContext,
		DisableCompression:     true,
		MaxIdleConnsPerHost:    16,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}}
}
