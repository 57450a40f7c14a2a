// Package qemu is the QEMU implementation of the vmm seam: it boots
// `qemu-system-x86_64 -M microvm` (KVM where the host can run a stock guest kernel,
// TCG otherwise), drives it over QMP on a unix socket, and tracks the process by a
// pidfile plus a state file so a restarted agent can adopt running VMs.
//
// # Guest memory, snapshots and restores
//
// Every VM's RAM is a shared mapping of a sparse file in its Dir
// (memory-backend-file,share=on,mem-path=<Dir>/memory, no preallocation). Pages the
// guest never touched stay holes: they are never written anywhere. Because the RAM is
// share=on, QEMU's migration with the x-ignore-shared capability (set on both sides)
// skips it, and a snapshot's device state is a ~30–60 KB file written in a few ms
// through a descriptor handed to QEMU over QMP (getfd + migrate fd:…; QEMU runs under
// -sandbox spawn=deny, so no exec: URI, and 7.2 has no file: URI).
//
// A pause snapshot (the agent's Pause → Snapshot → Stop) fsyncs the memory file —
// writing only the pages dirtied since they were last written back — and hard-links
// it into the snapshot directory: no copy, and the snapshot is durable. Restoring it
// into the same Dir (the sandbox's Resume) finds that <Dir>/memory is the snapshot's
// memory file (same inode) and maps that very file share=on again, so the next pause
// again writes only what the guest dirtied plus the device state, however many
// pause/resume cycles a sandbox goes through. (A share=off restore would map the file
// privately: the guest's writes would go to anonymous memory, which x-ignore-shared
// does not skip, and the next pause would write the whole RAM into the state file.)
// Since the VM and the snapshot then share one file, the snapshot is withdrawn (its
// meta file renamed) as soon as the guest runs again.
//
// Restoring any other snapshot (a template, a clone, a detached snapshot) first
// copies its memory file into the new VM's Dir with rootfs.Clone: a reflink where the
// filesystem shares blocks (XFS, btrfs), else a sparse copy that skips holes and zero
// blocks. Snapshot files outside the VM's own Dir are therefore never written, and no
// clone sees another's writes. A detached snapshot (SnapshotOptions.Detached, for
// templates) copies the memory the same way, so the VM may keep running.
//
// Dirtiness is tracked by the kernel per page cache folio, and QEMU's MADV_HUGEPAGE on
// guest RAM would have the file cached in 2 MiB folios, so that one touched page costs
// 2 MiB at the next pause; seedSmallFolios keeps the folios page-sized (measured: a
// guest printing a counter every second wrote ~40 MiB per pause without it, ~1 MiB
// with it; an idle guest ~150 KB).
//
// The price: a running guest's dirtied RAM is written back to the file by the
// kernel's periodic writeback (like a swap file that is always in sync), bounded by
// what the guest dirties; on tmpfs the file stays in RAM. Stop removes the memory file
// unless a snapshot shares it.
package qemu

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/wrennhq/wrenn/internal/vmm"
	"github.com/wrennhq/wrenn/internal/vmm/vmproc"
	"golang.org/x/sys/unix"
)

// Options configure a Driver. The zero value is usable.
type Options struct {
	// Binary is the QEMU executable, looked up in PATH when it has no slash.
	// Default "qemu-system-x86_64".
	Binary string
	// Accel is "auto" (default: kvm when usable for stock kernels, else tcg),
	// "kvm" or "tcg".
	Accel string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// StartTimeout bounds spawn → QMP ready. Default 10 s.
	StartTimeout time.Duration
}

const defaultBinary = "qemu-system-x86_64"

// Driver starts and adopts QEMU microVMs.
type Driver struct {
	opts Options
	log  *slog.Logger
	// Host probes, replaceable in tests.
	kvmUsable func() bool
	tscKHz    func() int64
	// digests caches kernel and initrd SHA-256s, versions the QEMU binary's
	// version; both by path, size, mtime and inode, so a restore does not rehash a
	// 50 MB kernel or exec QEMU every time.
	digests, versions vmm.FileCache[string]
}

var _ vmm.Driver = (*Driver)(nil)

// New returns a Driver; nothing is probed until Start.
func New(opts Options) *Driver {
	if opts.Binary == "" {
		opts.Binary = defaultBinary
	}
	if opts.Accel == "" {
		opts.Accel = "auto"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 10 * time.Second
	}
	return &Driver{
		opts:      opts,
		log:       opts.Logger.With("vmm", "qemu"),
		kvmUsable: vmproc.KVMUsable,
		tscKHz:    hostTSCKHz,
	}
}

// Name is the driver's registry name, recorded with every VM it starts.
const Name = "qemu"

// Open is the registry's constructor (a vmm.Constructor): a Driver from the options
// common to all drivers. An unknown accelerator is refused here rather than at the
// first Start.
func Open(o vmm.Options) (vmm.Driver, error) {
	switch o.Accel {
	case "", "auto", "kvm", "tcg":
	default:
		return nil, fmt.Errorf("unknown accel %q: want auto, kvm or tcg", o.Accel)
	}
	return New(Options{Binary: o.Binary, Accel: o.Accel, Logger: o.Logger, StartTimeout: o.StartTimeout}), nil
}

// Usable says whether QEMU can run VMs here with o (for the registry's auto
// selection): the binary must be found, and KVM usable when o asks for kvm.
func Usable(o vmm.Options) error {
	bin := o.Binary
	if bin == "" {
		bin = defaultBinary
	}
	if _, err := exec.LookPath(bin); err != nil {
		return fmt.Errorf("qemu binary: %w", err)
	}
	if o.Accel == "kvm" && !vmproc.KVMUsable() {
		return errors.New("accel kvm asked for, but this host has no hardware KVM (kvm_intel or kvm_amd)")
	}
	return nil
}

// Name is "qemu".
func (d *Driver) Name() string { return Name }

// Accel resolves Options.Accel on this host: "kvm" or "tcg".
func (d *Driver) Accel() (string, error) {
	switch d.opts.Accel {
	case "kvm", "tcg":
		return d.opts.Accel, nil
	case "auto":
		if d.kvmUsable() {
			return "kvm", nil
		}
		return "tcg", nil
	}
	return "", fmt.Errorf("unknown accel %q: want auto, kvm or tcg", d.opts.Accel)
}

// state is what Adopt needs, written to Dir right after spawn. The embedded
// Identity (pid, proc_start, binary, argv) names the QEMU process across pid reuse.
type state struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
	vmproc.Identity
	Accel     string    `json:"accel"`
	StartedAt time.Time `json:"started_at"`
	// Boot is what snapshots of the VM record. nil in states written before the
	// driver kept guest RAM in a file: such VMs cannot be snapshotted.
	Boot *bootInfo `json:"boot,omitempty"`
	// Shared lists pause snapshots whose memory file is this VM's (hard links):
	// they are withdrawn when the guest runs again.
	Shared []string `json:"shared_snapshots,omitempty"`
}

func writeState(dir string, st state) error {
	return vmproc.WriteState(filepath.Join(dir, stateFileName), st)
}

func readState(dir string) (state, error) {
	var st state
	if err := vmproc.ReadState(filepath.Join(dir, stateFileName), &st); err != nil {
		return st, err
	}
	if st.Version != 1 || st.PID <= 0 || len(st.Argv) == 0 {
		return st, fmt.Errorf("%s: unsupported or incomplete state", stateFileName)
	}
	return st, nil
}

// Start boots a VM. On any failure the QEMU process is killed and reaped, its
// runtime files are removed, and the error carries QEMU's stderr and the tail of the
// guest console.
func (d *Driver) Start(ctx context.Context, cfg vmm.Config) (vmm.Machine, error) {
	m, err := d.start(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("start qemu %s: %w", cfg.ID, err)
	}
	return m, nil
}

// launch is a validated VM ready to spawn.
type launch struct {
	s     spec
	bin   string // absolute
	accel string
	argv  []string
	boot  bootInfo
}

// prepare validates cfg, resolves the binary and accelerator, builds the argv (for a
// restore when incoming), hashes the boot files and clears the Dir of a previous
// VM's runtime files (refusing a Dir whose VM runs).
func (d *Driver) prepare(cfg vmm.Config, incoming bool) (launch, error) {
	var l launch
	var err error
	if l.s, err = validate(cfg); err != nil {
		return l, err
	}
	l.s.incoming = incoming
	if l.bin, err = exec.LookPath(d.opts.Binary); err != nil {
		return l, fmt.Errorf("qemu binary: %w", err)
	}
	if l.bin, err = filepath.Abs(l.bin); err != nil {
		return l, err
	}
	if l.accel, err = d.Accel(); err != nil {
		return l, err
	}
	tsc := d.tscKHz()
	if l.argv, err = buildArgv(l.bin, l.accel == "kvm", tsc, l.s); err != nil {
		return l, err
	}
	if l.boot, err = d.bootInfo(l.s, l.argv, tsc); err != nil {
		return l, err
	}
	if st, err := readState(l.s.dir); err == nil {
		if h, err := vmproc.Open(st.PID, st.ProcStart); err == nil {
			h.Close()
			return l, fmt.Errorf("dir %s already has a running vm (pid %d)", l.s.dir, st.PID)
		}
	} else {
		d.reapHalfMade(l.s.dir) // never orphan a QEMU whose pidfile we are about to delete
	}
	removeRuntimeFiles(d.log, l.s.dir)
	return l, nil
}

func (d *Driver) start(ctx context.Context, cfg vmm.Config) (*Machine, error) {
	l, err := d.prepare(cfg, false)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := createMemoryFile(l.s.memoryPath(), int64(cfg.MemoryMiB)<<20); err != nil {
		return nil, fmt.Errorf("guest memory file: %w", err)
	}
	if err := reserveMemory(l.s.memoryPath()); err != nil {
		os.Remove(l.s.memoryPath())
		return nil, err
	}
	seedSmallFolios(d.log, l.s.memoryPath())
	m, p, err := d.spawn(ctx, l, nil)
	if err == nil && p.status != "running" {
		err = p.abort(fmt.Errorf("qemu status %q, want running", p.status))
	}
	if err != nil {
		os.Remove(l.s.memoryPath()) // fresh and of no use to anyone
		return nil, err
	}
	m.timings.Running = time.Since(m.timings.Spawned)
	m.log.Info("qemu started", "accel", l.accel,
		"qmp_ready", m.timings.QMPReady, "running", m.timings.Running)
	return m, nil
}

// reserveMemory allocates disk blocks for every page of a guest RAM file that has
// none, without writing them (fallocate: unwritten extents, which read as zeros and
// which sparse copies still skip). A guest touching a page of a shared file mapping
// makes the kernel allocate its block then, and on a full filesystem that fails as a
// SIGBUS that kills QEMU: reserved up front, a full disk instead fails a start,
// restore or snapshot with ENOSPC, and running guests never notice it. On tmpfs the
// reservation would be RAM, taken at once: there it is skipped. (Blocks a reflink
// copy shares with a snapshot are allocated already; writing them still needs new
// ones — on XFS a clone's RAM is not fully protected.)
func reserveMemory(path string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fmt.Errorf("reserve guest memory: %w", err)
	}
	if st.Type == unix.TMPFS_MAGIC {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("reserve guest memory: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("reserve guest memory: %w", err)
	}
	err = unix.Fallocate(int(f.Fd()), 0, 0, fi.Size())
	switch {
	case err == nil, errors.Is(err, unix.EOPNOTSUPP):
		return nil
	case errors.Is(err, unix.ENOSPC):
		return fmt.Errorf("reserve %d MiB on disk for the guest's memory in %s: %w", fi.Size()>>20, filepath.Dir(path), err)
	}
	return fmt.Errorf("reserve guest memory: %w", err)
}

// createMemoryFile makes a fresh guest RAM file: a hole of the VM's memory size,
// readable by root only (it holds everything the guest has in memory). A file left
// at path by an earlier VM is unlinked first, never truncated: a pause snapshot may
// share its inode.
func createMemoryFile(path string, size int64) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// spawned is a QEMU that answered QMP; abort kills it (for a caller whose later
// steps fail) and returns the error with QEMU's stderr and the console's tail.
type spawned struct {
	status string
	abort  func(error) error
}

// spawn runs QEMU for l, records its state (with shared, the pause snapshots that
// share its memory file) and waits until QMP answers. On failure QEMU is killed
// and reaped and its runtime files are removed; the memory file is the caller's.
func (d *Driver) spawn(ctx context.Context, l launch, shared []string) (*Machine, spawned, error) {
	s, argv := l.s, l.argv
	stderrPath := filepath.Join(s.dir, stderrName)
	out, err := os.OpenFile(stderrPath, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, spawned{}, err
	}
	defer out.Close() // QEMU holds its own copy

	d.log.Debug("spawn qemu", "vm", s.cfg.ID, "argv", argv, "jailed", s.jail != nil)
	started := time.Now()
	fds, err := openInherited(s)
	if err != nil {
		return nil, spawned{}, err
	}
	ps := vmproc.Spec{Argv: argv, Dir: s.dir, NetNS: s.netns, Output: out, ExtraFiles: fds.files}
	if s.jail != nil {
		ps.NewMountNS = true
		ps.Path, ps.Argv, err = jailed(s, l.bin, l.accel, argv)
	}
	var cmd *exec.Cmd
	if err == nil {
		cmd, err = vmproc.Spawn(ps)
	}
	// Close the QMP listener at once: while only QEMU holds it, a QEMU that dies
	// resets a pending connection instead of leaving it to time out.
	fds.Close()
	if err != nil {
		removeRuntimeFiles(d.log, s.dir)
		return nil, spawned{}, err
	}
	pid := cmd.Process.Pid
	// Read the start time before the wait goroutine can reap the child; a child
	// that already exited (bad arguments) reads as an error, handled below.
	procStart, startErr := vmproc.StartTime(pid)
	m := newMachine(s.cfg.ID, s.dir, pid, procStart, d.log, cmd.Process.Kill)
	m.timings.Spawned = started
	go func() {
		cmd.Wait() // the exit status is in ProcessState
		m.exited(cmd.ProcessState)
	}()

	// From here on every failure must kill and reap QEMU.
	p := spawned{abort: func(err error) error { return d.abort(m, cmd, s, err) }}
	fail := func(err error) (*Machine, spawned, error) { return nil, p, p.abort(err) }

	if startErr != nil {
		// Usually a child that exited at once and is a zombie until reaped.
		select {
		case <-m.done:
			return fail(fmt.Errorf("qemu exited at once: %s", vmproc.ExitReason(cmd)))
		case <-time.After(killGrace):
			return fail(fmt.Errorf("read qemu start time: %w", startErr))
		}
	}
	boot := l.boot
	st := state{
		Version: 1, ID: s.cfg.ID, Accel: l.accel, StartedAt: started.UTC(),
		Identity: vmproc.Identity{PID: pid, ProcStart: procStart, Binary: l.bin, Argv: argv},
		Boot:     &boot, Shared: shared,
	}
	m.setState(st)
	if err := writeState(s.dir, st); err != nil {
		return fail(fmt.Errorf("write state: %w", err))
	}
	qs, err := d.waitReady(ctx, m, cmd)
	if err != nil {
		return fail(err)
	}
	p.status = qs.Status
	return m, p, nil
}

// abort kills and reaps the QEMU of a failed start, removes its runtime files and
// returns err with QEMU's stderr and the guest console's tail appended.
func (d *Driver) abort(m *Machine, cmd *exec.Cmd, s spec, err error) error {
	m.mu.Lock()
	m.stopping = true // the exit is ours; keep the reason in err below
	m.mu.Unlock()
	if !m.exitedAlready() {
		if kerr := cmd.Process.Kill(); kerr != nil && !errors.Is(kerr, os.ErrProcessDone) {
			m.log.Error("kill qemu after failed start", "err", kerr)
		}
	}
	select {
	case <-m.done:
	case <-time.After(killGrace):
		m.log.Error("qemu still alive after SIGKILL")
	}
	removeRuntimeFiles(d.log, s.dir)
	if st := vmproc.ReadTail(filepath.Join(s.dir, stderrName), 4096); st != "" {
		err = fmt.Errorf("%w\nqemu stderr: %s", err, st)
	}
	if con := vmproc.ReadTail(s.consolePath(), 2048); con != "" {
		err = fmt.Errorf("%w\nconsole tail:\n%s", err, con)
	}
	return err
}

// waitReady connects to the QMP socket until QEMU greets and negotiates capabilities,
// then asks for the run state on the same connection. The socket is bound before QEMU
// starts, so a connection waits in its backlog until QEMU serves it — or is reset
// when QEMU exits, and then this fails at once.
func (d *Driver) waitReady(ctx context.Context, m *Machine, cmd *exec.Cmd) (qmpStatus, error) {
	rctx, cancel := context.WithTimeout(ctx, d.opts.StartTimeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		select {
		case <-m.done:
			return qmpStatus{}, fmt.Errorf("qemu exited during start: %s", vmproc.ExitReason(cmd))
		case <-rctx.Done():
			if ctx.Err() != nil {
				return qmpStatus{}, ctx.Err()
			}
			return qmpStatus{}, fmt.Errorf("qmp not ready after %s: %v", d.opts.StartTimeout, lastErr)
		case <-tick.C:
		}
		if _, err := os.Stat(m.qmp.path); err != nil {
			lastErr = err
			continue
		}
		q, err := dialQMP(rctx, m.qmp.path)
		if err != nil {
			lastErr = err
			continue
		}
		m.timings.QMPReady = time.Since(m.timings.Spawned)
		var st qmpStatus
		err = q.Execute(rctx, "query-status", nil, &st)
		q.Close()
		return st, err
	}
}

// Adopt re-attaches to a VM whose Dir was written by Start (in this or an earlier
// process). The process must be alive and be the same QEMU: same pid and start time
// as recorded, a qemu executable, the recorded argv. Anything else is
// vmm.ErrNotRunning; a QEMU from a start that crashed before writing its state is
// killed first, so "not running" is true when we say it.
func (d *Driver) Adopt(ctx context.Context, dir string) (vmm.Machine, error) {
	m, err := d.adopt(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("adopt qemu %s: %w", dir, err)
	}
	return m, nil
}

func (d *Driver) adopt(ctx context.Context, dir string) (*Machine, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	st, err := readState(dir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			d.log.Warn("unreadable qemu state", "dir", dir, "err", err)
		}
		d.reapHalfMade(dir)
		return nil, fmt.Errorf("%w: %v", vmm.ErrNotRunning, err)
	}
	h, err := vmproc.Attach(st.Identity)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", vmm.ErrNotRunning, err)
	}
	m := newMachine(st.ID, dir, st.PID, st.ProcStart, d.log, h.Kill)
	m.timings.Spawned = st.StartedAt
	m.setState(st)
	qctx, cancel := context.WithTimeout(ctx, d.opts.StartTimeout)
	defer cancel()
	qs, err := m.qmp.status(qctx)
	if err != nil {
		if !h.Alive() {
			h.Close()
			return nil, fmt.Errorf("%w: exited while adopting", vmm.ErrNotRunning)
		}
		h.Close()
		return nil, fmt.Errorf("qmp of live pid %d: %w", st.PID, err)
	}
	go func() {
		h.Wait()
		h.Close()
		m.exited(nil)
	}()
	d.log.Info("adopted qemu", "vm", st.ID, "pid", st.PID, "status", qs.Status)
	return m, nil
}

// reapHalfMade kills a QEMU left by a Start that died between spawning it and
// writing the state file: only the pidfile (written by QEMU itself) names it, and it
// is ours only if its argv carries this Dir's pidfile path.
func (d *Driver) reapHalfMade(dir string) {
	pidPath := filepath.Join(dir, pidFileName)
	b, err := os.ReadFile(pidPath)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return
	}
	start, err := vmproc.StartTime(pid)
	if err != nil {
		removeRuntimeFiles(d.log, dir)
		return
	}
	args, err := vmproc.Cmdline(pid)
	if err != nil || !vmproc.HasArgPair(args, "-pidfile", pidPath) || !strings.HasPrefix(filepath.Base(args[0]), "qemu-system-") {
		return // not ours: leave it alone
	}
	h, err := vmproc.Open(pid, start)
	if err != nil {
		return
	}
	defer h.Close()
	d.log.Warn("killing half-started qemu", "dir", dir, "pid", pid)
	if err := h.Kill(); err != nil {
		d.log.Error("kill half-started qemu", "pid", pid, "err", err)
		return
	}
	if h.WaitTimeout(killGrace) {
		removeRuntimeFiles(d.log, dir)
	} else {
		d.log.Error("half-started qemu still alive after SIGKILL", "pid", pid)
	}
}
