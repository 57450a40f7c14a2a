package firecracker

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/wrennhq/wrenn/internal/jail"
	"github.com/wrennhq/wrenn/internal/memfile"
	"github.com/wrennhq/wrenn/internal/vmm"
	"github.com/wrennhq/wrenn/internal/vmm/vmproc"
	"golang.org/x/sys/unix"
)

// Machine is one Firecracker VM.
type Machine struct {
	id, dir string
	cfg     vmm.Config
	log     *slog.Logger
	api     *client
	proc    *vmproc.Handle
	cmd     *exec.Cmd // nil when adopted
	started time.Time
	// version is the snapshot format version of the binary (what snapshots record
	// and restores compare), release its release.
	version, release string

	done chan struct{}
	err  error

	mu       sync.Mutex
	stopping bool
	// pager is a lazily restored VM's page server (package pagerproc), a process
	// that lives as long as the VM, across agent restarts; nil after a boot.
	pager *vmproc.Handle
	// base is the VM's own hard-linked copy of the memory it last matched (the
	// snapshot it was restored from or last saved into): a diff's parent. "" after a
	// boot, or where linking was impossible (then every snapshot is full). baseFrom
	// is the snapshot directory it was linked from, what a diff records as parent.
	base, baseFrom string
	// shared are the pause snapshots to withdraw when the guest next runs.
	shared []string
	// loaded: a lazily restored VM's snapshot load completed (its page server has
	// a VMM to serve; before that, stopping it need not wait for a hang-up).
	loaded  bool
	digests *vmm.FileCache[string]
}

var (
	_ vmm.Machine     = (*Machine)(nil)
	_ vmm.Snapshotter = (*Machine)(nil)
	_ vmm.Differ      = (*Machine)(nil)
)

// state is what Adopt reads back from the VM's Dir.
type state struct {
	Version int `json:"version"`
	vmproc.Identity
	Config  vmm.Config `json:"config"`
	VMM     string     `json:"vmm_version"`
	Restore bool       `json:"lazily_restored,omitempty"`
	// Pager names the page server of a lazily restored VM.
	Pager *vmproc.Identity `json:"pager,omitempty"`
	// Shared lists pause snapshots to withdraw when the guest next runs.
	Shared []string `json:"shared_snapshots,omitempty"`
}

// spawn starts Firecracker for cfg in its namespaces and waits for its API.
func (d *Driver) spawn(ctx context.Context, cfg vmm.Config, bin string, info binaryInfo, restoring bool) (*Machine, error) {
	if st, err := readState(cfg.Dir); err == nil {
		if h, err := vmproc.Attach(st.Identity); err == nil {
			h.Close()
			return nil, fmt.Errorf("dir %s already has a running vm (pid %d)", cfg.Dir, st.PID)
		}
	}
	removeRuntime(cfg.Dir)
	if err := prepareJail(cfg); err != nil {
		return nil, err
	}
	spec, err := launchSpec(bin, cfg)
	if err != nil {
		removeRuntime(cfg.Dir)
		return nil, err
	}
	console, err := os.OpenFile(filepath.Join(cfg.Dir, vmm.ConsoleLogName), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("console log: %w", err)
	}
	defer console.Close()
	spec.Output = console
	m := &Machine{id: cfg.ID, dir: cfg.Dir, cfg: cfg, log: d.log.With("vm", cfg.ID), done: make(chan struct{}),
		started: time.Now(), version: info.snapshot, release: info.release, digests: &d.digests}
	m.cmd, err = vmproc.Spawn(spec)
	if err != nil {
		removeRuntime(cfg.Dir)
		return nil, err
	}
	exited := make(chan struct{})
	go func() { m.cmd.Wait(); close(exited) }()
	m.api = newClient(filepath.Join(cfg.Dir, apiSockName))
	rctx, cancel := context.WithTimeout(ctx, d.startTimeout)
	defer cancel()
	_, err = m.api.waitReady(rctx, exited)
	if err == nil {
		var id vmproc.Identity
		if id, err = identify(m.cmd.Process.Pid); err == nil {
			if m.proc, err = vmproc.Attach(id); err == nil {
				err = vmproc.WriteState(filepath.Join(cfg.Dir, stateName), state{Version: 1, Identity: id, Config: cfg, VMM: m.version, Restore: restoring})
			}
		}
	}
	if err != nil {
		m.cmd.Process.Kill()
		<-exited
		if m.proc != nil {
			m.proc.Close()
		}
		m.api.close()
		removeRuntime(cfg.Dir)
		return nil, fmt.Errorf("%w%s", err, m.consoleTail())
	}
	go m.watch(exited)
	return m, nil
}

// prepareJail gives a jailed Firecracker what it must write or open as its own uid:
// the VM's Dir (it creates its API socket there, and snapshot files), the disk, and
// the slot's TAP, which it opens by name (Firecracker takes no descriptor for it).
// A jailed Firecracker needs /dev/kvm through its group (the jail adds it) and, to
// be restored, /dev/userfaultfd opened for its uid (see README).
func prepareJail(cfg vmm.Config) error {
	if cfg.Jail == nil {
		return nil
	}
	for _, p := range []string{cfg.Dir, cfg.Disk} {
		if err := own(cfg, p); err != nil {
			return err
		}
	}
	if cfg.Net == nil {
		return nil
	}
	tap, err := vmproc.OpenTAP(cfg.Net.NetNS, cfg.Net.TAP)
	if err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	defer tap.Close()
	if err := unix.IoctlSetInt(int(tap.Fd()), unix.TUNSETOWNER, int(cfg.Jail.UID)); err != nil {
		return fmt.Errorf("jail: give tap %s to uid %d: %w", cfg.Net.TAP, cfg.Jail.UID, err)
	}
	if err := unix.IoctlSetInt(int(tap.Fd()), unix.TUNSETGROUP, int(cfg.Jail.GID)); err != nil {
		return fmt.Errorf("jail: give tap %s to gid %d: %w", cfg.Net.TAP, cfg.Jail.GID, err)
	}
	return nil
}

// own gives path to the jail's uid and gid; without a jail it does nothing.
func own(cfg vmm.Config, path string) error {
	if cfg.Jail == nil {
		return nil
	}
	if err := os.Chown(path, int(cfg.Jail.UID), int(cfg.Jail.GID)); err != nil {
		return fmt.Errorf("jail: give %s to uid %d: %w", filepath.Base(path), cfg.Jail.UID, err)
	}
	return nil
}

// identify names the process that runs now at pid: after exec, whatever launcher or
// jail helper started it.
func identify(pid int) (vmproc.Identity, error) {
	start, err := vmproc.StartTime(pid)
	if err != nil {
		return vmproc.Identity{}, err
	}
	exe, err := vmproc.Exe(pid)
	if err != nil {
		return vmproc.Identity{}, err
	}
	argv, err := vmproc.Cmdline(pid)
	if err != nil {
		return vmproc.Identity{}, err
	}
	return vmproc.Identity{PID: pid, ProcStart: start, Binary: exe, Argv: argv}, nil
}

// launchSpec is the process to spawn. Unjailed, Firecracker runs in the VM's Dir
// where the stable names are symlinks to the VM's files; jailed, package jail builds
// a root holding the Dir at /vm and binds the files onto those names.
func launchSpec(bin string, cfg vmm.Config) (vmproc.Spec, error) {
	args := []string{"--api-sock", apiSockName, "--id", cfg.ID, "--level", "Warning"}
	files := map[string]string{kernelName: cfg.Kernel, diskName: cfg.Disk}
	if cfg.Initrd != "" {
		files[initrdName] = cfg.Initrd
	}
	spec := vmproc.Spec{Dir: cfg.Dir, NewMountNS: true}
	if cfg.Net != nil {
		spec.NetNS = cfg.Net.NetNS
	}
	if cfg.Jail == nil {
		for name, target := range files {
			if err := os.Symlink(target, filepath.Join(cfg.Dir, name)); err != nil {
				return spec, fmt.Errorf("link %s: %w", name, err)
			}
		}
		spec.Argv = append([]string{bin}, args...)
		return spec, nil
	}
	js := jail.Spec{
		Argv: append([]string{"/firecracker"}, args...), Dir: jailDir,
		UID: cfg.Jail.UID, GID: cfg.Jail.GID, CgroupProcs: cfg.Jail.CgroupProcs,
		Mounts: []jail.Mount{
			{Source: bin, Target: "/firecracker", Executable: true},
			{Source: cfg.Dir, Target: jailDir, Writable: true},
			{Source: "/dev/kvm", Writable: true},
			{Source: "/dev/net/tun", Writable: true},
		},
	}
	if _, err := os.Stat("/dev/userfaultfd"); err == nil {
		js.Mounts = append(js.Mounts, jail.Mount{Source: "/dev/userfaultfd", Writable: true})
	}
	for name, source := range files {
		// A bind needs a file to mount on, inside the Dir.
		if err := os.WriteFile(filepath.Join(cfg.Dir, name), nil, 0o600); err != nil {
			return spec, fmt.Errorf("mount point %s: %w", name, err)
		}
		js.Mounts = append(js.Mounts, jail.Mount{Source: source, Target: filepath.Join(jailDir, name), Writable: name == diskName})
	}
	groups, err := jail.DeviceGroups("/dev/kvm")
	if err != nil {
		return spec, err
	}
	js.Groups = groups
	argv, err := jail.HelperArgv(js)
	if err != nil {
		return spec, err
	}
	spec.Argv, spec.Path = argv, jail.HelperPath
	return spec, nil
}

// removeRuntime removes the files a VM's process used in dir (never the console log
// or the disk it points at).
func removeRuntime(dir string) {
	for _, name := range []string{apiSockName, uffdSockName, pagerCtlName, pagerLogName, kernelName, initrdName, diskName, vmstateName, stateName} {
		os.Remove(filepath.Join(dir, name))
	}
	for _, name := range []string{scratchName, baseName, baseName + ".new"} {
		os.RemoveAll(filepath.Join(dir, name))
	}
}

func readState(dir string) (state, error) {
	var st state
	err := vmproc.ReadState(filepath.Join(dir, stateName), &st)
	if err == nil && (st.Version != 1 || st.PID <= 0) {
		err = errors.New("unsupported or incomplete firecracker state")
	}
	return st, err
}

// watch waits for the process to end and records why.
func (m *Machine) watch(exited <-chan struct{}) {
	if exited != nil {
		<-exited
	} else {
		m.proc.Wait()
	}
	m.proc.Close()
	m.mu.Lock()
	stopping := m.stopping
	m.mu.Unlock()
	if !stopping {
		status := "exited"
		if m.cmd != nil && m.cmd.ProcessState != nil {
			status = m.cmd.ProcessState.String()
		}
		// A page server that failed killed its VMM, and said why in its log.
		m.err = fmt.Errorf("firecracker vm %s (pid %d) %s%s%s", m.id, m.PID(), status, m.consoleTail(), m.pagerTail())
		m.log.Warn("firecracker exited", "err", m.err)
	}
	m.stopPager()
	m.api.close()
	m.setBase("", "") // removed with the runtime files: valid only while the VM runs
	close(m.done)
}

// stopPager ends the page server once its VMM is gone (it would end by itself on the
// hang-up; this makes sure, within a bound).
func (m *Machine) stopPager() {
	m.mu.Lock()
	pager, loaded := m.pager, m.loaded
	m.pager = nil
	m.mu.Unlock()
	if pager == nil {
		return
	}
	if !loaded || !pager.WaitTimeout(2*time.Second) {
		pager.Kill()
		pager.WaitTimeout(5 * time.Second)
	}
	pager.Close()
}

// pagerTail is the end of the page server's log, for error messages ("" if empty).
func (m *Machine) pagerTail() string {
	if tail := vmproc.ReadTail(filepath.Join(m.dir, pagerLogName), 2<<10); tail != "" {
		return "\npage server log tail:\n" + tail
	}
	return ""
}

// DiffBase is the VM's copy of the memory it last matched, for a diff's Parent.
func (m *Machine) DiffBase() string {
	base, _ := m.diffBase()
	return base
}

func (m *Machine) diffBase() (base, from string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.base, m.baseFrom
}

// setBase records the VM's base ("" = none).
func (m *Machine) setBase(base, from string) {
	m.mu.Lock()
	m.base, m.baseFrom = base, from
	m.mu.Unlock()
}

// linkBase makes dir/memfile.base a hard-linked copy of the memory files in from
// (header and generations: no data is copied), replacing the previous one. Owning
// the links keeps the base valid whatever happens to from (the agent removes a spent
// pause snapshot once the sandbox resumed).
func linkBase(from, dir string) (string, error) {
	names, err := memfile.Files(from)
	if err != nil {
		return "", err
	}
	tmp, final := filepath.Join(dir, baseName+".new"), filepath.Join(dir, baseName)
	os.RemoveAll(tmp)
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return "", err
	}
	for _, n := range names {
		if err := os.Link(filepath.Join(from, n), filepath.Join(tmp, n)); err != nil {
			os.RemoveAll(tmp)
			return "", fmt.Errorf("link %s into the vm's memory base: %w", n, err)
		}
	}
	if err := os.RemoveAll(final); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", err
	}
	return final, nil
}

// PID of the Firecracker process.
func (m *Machine) PID() int { return m.proc.PID() }

// Done is closed when Firecracker has exited.
func (m *Machine) Done() <-chan struct{} { return m.done }

// Err says why it exited (nil after Stop).
func (m *Machine) Err() error { return m.err }

// ConsoleLog is the guest's serial output (Firecracker's stdout).
func (m *Machine) ConsoleLog() string { return filepath.Join(m.dir, vmm.ConsoleLogName) }

// consoleTail is the end of the guest's console (read with a bound: a guest can
// write gigabytes to it), for error messages ("" if empty).
func (m *Machine) consoleTail() string {
	if tail := vmproc.ReadTail(m.ConsoleLog(), 4<<10); tail != "" {
		return "\nconsole tail:\n" + tail
	}
	return ""
}

func (m *Machine) exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

func (m *Machine) setState(ctx context.Context, s string) error {
	if m.exited() {
		return fmt.Errorf("%s vm %s: %w", strings.ToLower(s), m.id, vmm.ErrNotRunning)
	}
	if err := m.api.do(ctx, "PATCH", "/vm", vmState{State: s}, nil); err != nil {
		if m.exited() {
			return fmt.Errorf("%s vm %s: %w", strings.ToLower(s), m.id, vmm.ErrNotRunning)
		}
		return fmt.Errorf("%s vm %s: %w", strings.ToLower(s), m.id, err)
	}
	return nil
}

// Pause stops the vCPUs (PATCH /vm Paused; repeating it is a no-op).
func (m *Machine) Pause(ctx context.Context) error { return m.setState(ctx, "Paused") }

// Resume runs them again.
// (withdrawing the VM's pause snapshots first: see withdraw.go).
func (m *Machine) Resume(ctx context.Context) error { return m.resume(ctx) }

// Stop kills Firecracker and waits, within ctx, for it to be gone; runtime files are
// then removed. There is no graceful step (the seam allows a kill): Firecracker keeps
// nothing a kill loses — the guest's disk writes are in the host's page cache
// already — and a paused guest could not answer a shutdown request anyway.
func (m *Machine) Stop(ctx context.Context) error {
	m.kill()
	select {
	case <-m.done:
	case <-ctx.Done():
		return fmt.Errorf("stop vm %s: %w", m.id, ctx.Err())
	}
	removeRuntime(m.dir)
	return nil
}

// kill sends SIGKILL, marking the exit as asked for.
func (m *Machine) kill() {
	m.mu.Lock()
	m.stopping = true
	m.mu.Unlock()
	m.proc.Kill()
}

// killWait kills and waits for the watcher to have seen the exit.
func (m *Machine) killWait() {
	m.kill()
	<-m.done
}

// Adopt re-attaches to a VM an earlier agent started, and to its page server when it
// was restored lazily. A lazily restored VM whose page server is gone is killed and
// reported gone: pages it has not faulted in yet would hang its vCPUs.
func (d *Driver) Adopt(ctx context.Context, dir string) (vmm.Machine, error) {
	st, err := readState(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("adopt %s: %w", dir, vmm.ErrNotRunning)
		}
		return nil, fmt.Errorf("adopt %s: %w", dir, err)
	}
	var pager *vmproc.Handle
	if st.Pager != nil {
		pager, _ = vmproc.Attach(*st.Pager)
	}
	gone := func(why string, cause error) (vmm.Machine, error) {
		if pager != nil { // a page server outlives no VMM
			pager.Kill()
			pager.Close()
		}
		removeRuntime(dir)
		return nil, fmt.Errorf("adopt %s: %w: %s (%v)", dir, vmm.ErrNotRunning, why, cause)
	}
	h, err := vmproc.Attach(st.Identity)
	if err != nil {
		return gone("firecracker is gone", err)
	}
	kill := func(why string, cause error) (vmm.Machine, error) {
		h.Kill()
		h.Wait()
		h.Close()
		return gone(why, cause)
	}
	api := newClient(filepath.Join(dir, apiSockName))
	if st.Restore {
		if pager == nil {
			return kill("its page server is gone", nil)
		}
		// A restore cut short before its snapshot loaded has no guest to adopt.
		var info instanceInfo
		ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := api.do(ictx, "GET", "/", nil, &info)
		cancel()
		if err != nil || info.State == "Not started" {
			api.close()
			return kill("its snapshot never finished loading", err)
		}
	}
	m := &Machine{id: st.Config.ID, dir: dir, cfg: st.Config, log: d.log.With("vm", st.Config.ID), proc: h, pager: pager, shared: st.Shared,
		api: api, done: make(chan struct{}), started: time.Now(), version: st.VMM, loaded: st.Restore, digests: &d.digests}
	// The base is not trusted across an agent restart (a snapshot may have been
	// cut short after Firecracker reset its dirty bitmap): the next snapshot is full.
	os.RemoveAll(filepath.Join(dir, baseName))
	go m.watch(nil)
	return m, nil
}
