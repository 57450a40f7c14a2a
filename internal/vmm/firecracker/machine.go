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
	"github.com/wrennhq/wrenn/internal/uffd"
	"github.com/wrennhq/wrenn/internal/vmm"
	"github.com/wrennhq/wrenn/internal/vmm/vmproc"
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
	version string

	done chan struct{}
	err  error

	mu       sync.Mutex
	stopping bool
	// A lazily restored VM's memory server and the snapshot memory behind it; both
	// live as long as the VM.
	pager  *uffd.Handler
	memory *memfile.Reader
	// parent is the snapshot the VM was restored from (a diff's base), "" after a
	// boot.
	parent string
}

var (
	_ vmm.Machine     = (*Machine)(nil)
	_ vmm.Snapshotter = (*Machine)(nil)
)

// state is what Adopt reads back from the VM's Dir.
type state struct {
	Version int `json:"version"`
	vmproc.Identity
	Config  vmm.Config `json:"config"`
	VMM     string     `json:"vmm_version"`
	Restore bool       `json:"lazily_restored,omitempty"`
	Parent  string     `json:"parent,omitempty"`
}

// spawn starts Firecracker for cfg in its namespaces and waits for its API.
func (d *Driver) spawn(ctx context.Context, cfg vmm.Config, restoring bool) (*Machine, error) {
	bin, err := exec.LookPath(d.bin)
	if err != nil {
		return nil, fmt.Errorf("firecracker binary: %w", err)
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return nil, err
	}
	if st, err := readState(cfg.Dir); err == nil {
		if h, err := vmproc.Attach(st.Identity); err == nil {
			h.Close()
			return nil, fmt.Errorf("dir %s already has a running vm (pid %d)", cfg.Dir, st.PID)
		}
	}
	removeRuntime(cfg.Dir)
	spec, err := launchSpec(bin, cfg)
	if err != nil {
		return nil, err
	}
	console, err := os.OpenFile(filepath.Join(cfg.Dir, vmm.ConsoleLogName), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("console log: %w", err)
	}
	defer console.Close()
	spec.Output = console
	m := &Machine{id: cfg.ID, dir: cfg.Dir, cfg: cfg, log: d.log.With("vm", cfg.ID), done: make(chan struct{}), started: time.Now()}
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
	info, err := m.api.waitReady(rctx, exited)
	if err == nil {
		m.version = info.VMMVersion
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
		removeRuntime(cfg.Dir)
		return nil, fmt.Errorf("%w%s", err, m.consoleTail())
	}
	go m.watch(exited)
	return m, nil
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
	for _, name := range []string{apiSockName, uffdSockName, kernelName, initrdName, diskName, vmstateName, stateName} {
		os.Remove(filepath.Join(dir, name))
	}
	os.RemoveAll(filepath.Join(dir, scratchName))
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
	m.mu.Lock()
	stopping := m.stopping
	m.mu.Unlock()
	if !stopping {
		status := "exited"
		if m.cmd != nil && m.cmd.ProcessState != nil {
			status = m.cmd.ProcessState.String()
		}
		m.err = fmt.Errorf("firecracker vm %s (pid %d) %s%s", m.id, m.PID(), status, m.consoleTail())
		m.log.Warn("firecracker exited", "err", m.err)
	}
	m.releasePager()
	m.api.close()
	close(m.done)
}

func (m *Machine) releasePager() {
	m.mu.Lock()
	pager, memory := m.pager, m.memory
	m.pager, m.memory = nil, nil
	m.mu.Unlock()
	if pager != nil {
		pager.Stop()
	}
	if memory != nil {
		memory.Close()
	}
}

// PID of the Firecracker process.
func (m *Machine) PID() int { return m.proc.PID() }

// Done is closed when Firecracker has exited.
func (m *Machine) Done() <-chan struct{} { return m.done }

// Err says why it exited (nil after Stop).
func (m *Machine) Err() error { return m.err }

// ConsoleLog is the guest's serial output (Firecracker's stdout).
func (m *Machine) ConsoleLog() string { return filepath.Join(m.dir, vmm.ConsoleLogName) }

func (m *Machine) consoleTail() string {
	b, err := os.ReadFile(m.ConsoleLog())
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return "\nconsole tail:\n" + strings.Join(lines[max(0, len(lines)-20):], "\n")
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
func (m *Machine) Resume(ctx context.Context) error { return m.setState(ctx, "Resumed") }

// Stop kills Firecracker and waits for it: it keeps nothing that a kill loses (the
// guest's disk writes are in the host's page cache already), and a paused guest
// could not answer a graceful shutdown anyway. Runtime files are removed.
func (m *Machine) Stop(ctx context.Context) error {
	m.mu.Lock()
	m.stopping = true
	m.mu.Unlock()
	m.kill()
	select {
	case <-m.done:
	case <-ctx.Done():
		return fmt.Errorf("stop vm %s: %w", m.id, ctx.Err())
	}
	removeRuntime(m.dir)
	return nil
}

func (m *Machine) kill() {
	m.mu.Lock()
	m.stopping = true
	m.mu.Unlock()
	if m.proc != nil {
		m.proc.Kill()
	} else if m.cmd != nil {
		m.cmd.Process.Kill()
	}
	if m.cmd != nil || m.proc != nil {
		<-m.done
	}
}

// Adopt re-attaches to a VM an earlier agent started. A VM restored lazily cannot be
// adopted: the handler serving its memory died with that agent, and pages it never
// faulted in would hang its vCPUs, so it is killed and reported gone.
func (d *Driver) Adopt(ctx context.Context, dir string) (vmm.Machine, error) {
	st, err := readState(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("adopt %s: %w", dir, vmm.ErrNotRunning)
		}
		return nil, fmt.Errorf("adopt %s: %w", dir, err)
	}
	h, err := vmproc.Attach(st.Identity)
	if err != nil {
		removeRuntime(dir)
		return nil, fmt.Errorf("adopt %s: %w (%v)", dir, vmm.ErrNotRunning, err)
	}
	if st.Restore {
		h.Kill()
		h.Wait()
		h.Close()
		removeRuntime(dir)
		return nil, fmt.Errorf("adopt %s: %w: its memory was served by the previous agent's uffd handler", dir, vmm.ErrNotRunning)
	}
	m := &Machine{id: st.Config.ID, dir: dir, cfg: st.Config, log: d.log.With("vm", st.Config.ID), proc: h,
		api: newClient(filepath.Join(dir, apiSockName)), done: make(chan struct{}), started: time.Now(), version: st.VMM, parent: st.Parent}
	go m.watch(nil)
	return m, nil
}
