// Package qemu is the QEMU implementation of the vmm seam: it boots
// `qemu-system-x86_64 -M microvm` (KVM where the host can run a stock guest kernel,
// TCG otherwise), drives it over QMP on a unix socket, and tracks the process by a
// pidfile plus a state file so a restarted agent can adopt running VMs.
package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wrennhq/wrenn/internal/vmm"
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

// Driver starts and adopts QEMU microVMs.
type Driver struct {
	opts Options
	log  *slog.Logger
	// Host probes, replaceable in tests.
	kvmUsable func() bool
	tscKHz    func() int64
}

var _ vmm.Driver = (*Driver)(nil)

// New returns a Driver; nothing is probed until Start.
func New(opts Options) *Driver {
	if opts.Binary == "" {
		opts.Binary = "qemu-system-x86_64"
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
		kvmUsable: kvmUsable,
		tscKHz:    hostTSCKHz,
	}
}

func (d *Driver) Name() string { return "qemu" }

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

// state is what Adopt needs, written to Dir right after spawn.
type state struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
	PID     int    `json:"pid"`
	// ProcStart is field 22 of /proc/<pid>/stat; with PID it names the process
	// uniquely across pid reuse.
	ProcStart uint64    `json:"proc_start"`
	Binary    string    `json:"binary"`
	Argv      []string  `json:"argv"`
	Accel     string    `json:"accel"`
	StartedAt time.Time `json:"started_at"`
}

func writeState(dir string, st state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, stateFileName+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, stateFileName))
}

func readState(dir string) (state, error) {
	var st state
	b, err := os.ReadFile(filepath.Join(dir, stateFileName))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("parse %s: %w", stateFileName, err)
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

func (d *Driver) start(ctx context.Context, cfg vmm.Config) (*Machine, error) {
	s, err := validate(cfg)
	if err != nil {
		return nil, err
	}
	bin, err := exec.LookPath(d.opts.Binary)
	if err != nil {
		return nil, fmt.Errorf("qemu binary: %w", err)
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return nil, err
	}
	accel, err := d.Accel()
	if err != nil {
		return nil, err
	}
	argv, err := buildArgv(bin, accel == "kvm", d.tscKHz(), s)
	if err != nil {
		return nil, err
	}
	if st, err := readState(s.dir); err == nil {
		if h, err := openPID(st.PID, st.ProcStart); err == nil {
			h.close()
			return nil, fmt.Errorf("dir %s already has a running vm (pid %d)", s.dir, st.PID)
		}
	} else {
		d.reapHalfMade(s.dir) // never orphan a QEMU whose pidfile we are about to delete
	}
	removeRuntimeFiles(d.log, s.dir)
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	stderrPath := filepath.Join(s.dir, stderrName)
	out, err := os.OpenFile(stderrPath, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	defer out.Close() // QEMU holds its own copy

	log := d.log.With("vm", cfg.ID)
	log.Debug("spawn qemu", "argv", argv)
	spawned := time.Now()
	cmd, err := spawn(argv, s.dir, s.netns, out)
	if err != nil {
		return nil, fmt.Errorf("spawn %s: %w", bin, err)
	}
	pid := cmd.Process.Pid
	// Read the start time before the wait goroutine can reap the child; a child
	// that already exited (bad arguments) reads as an error, handled below.
	procStart, startErr := procStartTime(pid)
	m := newMachine(cfg.ID, s.dir, pid, procStart, d.log, cmd.Process.Kill)
	m.timings.Spawned = spawned
	go func() {
		cmd.Wait() // the exit status is in ProcessState
		m.exited(cmd.ProcessState)
	}()

	// From here on every failure must kill and reap QEMU.
	fail := func(err error) (*Machine, error) {
		m.mu.Lock()
		m.stopping = true // the exit is ours; keep the reason in err below
		m.mu.Unlock()
		if !m.exitedAlready() {
			if kerr := cmd.Process.Kill(); kerr != nil && !errors.Is(kerr, os.ErrProcessDone) {
				log.Error("kill qemu after failed start", "err", kerr)
			}
		}
		select {
		case <-m.done:
		case <-time.After(killGrace):
			log.Error("qemu still alive after SIGKILL", "pid", pid)
		}
		removeRuntimeFiles(d.log, s.dir)
		if st := strings.TrimSpace(readTail(stderrPath, 4096)); st != "" {
			err = fmt.Errorf("%w\nqemu stderr: %s", err, st)
		}
		if con := readTail(s.consolePath(), 2048); con != "" {
			err = fmt.Errorf("%w\nconsole tail:\n%s", err, con)
		}
		return nil, err
	}

	if startErr != nil {
		// Usually a child that exited at once and is a zombie until reaped.
		select {
		case <-m.done:
			return fail(fmt.Errorf("qemu exited at once: %s", exitReason(cmd)))
		case <-time.After(killGrace):
			return fail(fmt.Errorf("read qemu start time: %w", startErr))
		}
	}
	if err := writeState(s.dir, state{
		Version: 1, ID: cfg.ID, PID: pid, ProcStart: procStart, Binary: bin,
		Argv: argv, Accel: accel, StartedAt: spawned.UTC(),
	}); err != nil {
		return fail(fmt.Errorf("write state: %w", err))
	}
	st, err := d.waitReady(ctx, m, cmd)
	if err != nil {
		return fail(err)
	}
	if st.Status != "running" {
		return fail(fmt.Errorf("qemu status %q, want running", st.Status))
	}
	m.timings.Running = time.Since(spawned)
	log.Info("qemu started", "pid", pid, "accel", accel,
		"qmp_ready", m.timings.QMPReady, "running", m.timings.Running)
	return m, nil
}

func exitReason(cmd *exec.Cmd) string {
	if cmd.ProcessState != nil {
		return cmd.ProcessState.String()
	}
	return "process gone"
}

// waitReady polls for the QMP socket until QEMU greets and negotiates capabilities,
// then asks for the run state on the same connection. It fails at once if QEMU exits.
func (d *Driver) waitReady(ctx context.Context, m *Machine, cmd *exec.Cmd) (qmpStatus, error) {
	rctx, cancel := context.WithTimeout(ctx, d.opts.StartTimeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		select {
		case <-m.done:
			return qmpStatus{}, fmt.Errorf("qemu exited during start: %s", exitReason(cmd))
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
		dctx, dcancel := context.WithTimeout(rctx, 2*time.Second)
		q, err := dialQMP(dctx, m.qmp.path)
		if err != nil {
			dcancel()
			lastErr = err
			continue
		}
		m.timings.QMPReady = time.Since(m.timings.Spawned)
		var st qmpStatus
		err = q.Execute(dctx, "query-status", nil, &st)
		q.Close()
		dcancel()
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
	h, err := openPID(st.PID, st.ProcStart)
	if err != nil {
		return nil, fmt.Errorf("%w: pid %d: %v", vmm.ErrNotRunning, st.PID, err)
	}
	if exe, err := procExe(st.PID); err != nil || !sameBinary(exe, st.Binary) {
		h.close()
		return nil, fmt.Errorf("%w: pid %d is %q, not %s", vmm.ErrNotRunning, st.PID, exe, st.Binary)
	}
	if args, err := procCmdline(st.PID); err != nil || !slices.Equal(args, st.Argv) {
		h.close()
		return nil, fmt.Errorf("%w: pid %d runs another command line", vmm.ErrNotRunning, st.PID)
	}
	m := newMachine(st.ID, dir, st.PID, st.ProcStart, d.log, h.kill)
	m.timings.Spawned = st.StartedAt
	qctx, cancel := context.WithTimeout(ctx, d.opts.StartTimeout)
	defer cancel()
	qs, err := m.qmp.status(qctx)
	if err != nil {
		if !h.alive() {
			h.close()
			return nil, fmt.Errorf("%w: exited while adopting", vmm.ErrNotRunning)
		}
		h.close()
		return nil, fmt.Errorf("qmp of live pid %d: %w", st.PID, err)
	}
	go func() {
		h.wait()
		h.close()
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
	start, err := procStartTime(pid)
	if err != nil {
		removeRuntimeFiles(d.log, dir)
		return
	}
	args, err := procCmdline(pid)
	if err != nil || !hasArgPair(args, "-pidfile", pidPath) || !strings.HasPrefix(filepath.Base(args[0]), "qemu-system-") {
		return // not ours: leave it alone
	}
	h, err := openPID(pid, start)
	if err != nil {
		return
	}
	defer h.close()
	d.log.Warn("killing half-started qemu", "dir", dir, "pid", pid)
	if err := h.kill(); err != nil {
		d.log.Error("kill half-started qemu", "pid", pid, "err", err)
		return
	}
	waited := make(chan struct{})
	go func() { h.wait(); close(waited) }()
	select {
	case <-waited:
		removeRuntimeFiles(d.log, dir)
	case <-time.After(killGrace):
		d.log.Error("half-started qemu still alive after SIGKILL", "pid", pid)
	}
}

func hasArgPair(args []string, flag, value string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag && args[i+1] == value {
			return true
		}
	}
	return false
}
