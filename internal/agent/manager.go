// Package agent is the host agent's core: a manager of the sandboxes on this host. Each
// sandbox has an explicit state machine and a lock; every transition is one function
// that undoes what it did on failure. State is persisted under WRENN_DIR so a restarted
// agent re-adopts its live VMs instead of losing them.
package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/wrennhq/wrenn/internal/envd/envdapi"
	"github.com/wrennhq/wrenn/internal/envdclient"
	"github.com/wrennhq/wrenn/internal/image"
	"github.com/wrennhq/wrenn/internal/netslot"
	"github.com/wrennhq/wrenn/internal/sandboxid"
	"github.com/wrennhq/wrenn/internal/vmm"
)

// Slots hands out network slots; netslot.Pool implements it.
type Slots interface {
	Get(ctx context.Context, allowInternet bool) (*netslot.Slot, error)
	Release(s *netslot.Slot) error
	// Adopt takes over the slot of a sandbox that survived an agent restart.
	Adopt(index int) (*netslot.Slot, error)
	// Owns reports whether a slot index is in this agent's range.
	Owns(index int) bool
}

// Config configures a Manager.
type Config struct {
	Dir    string // WRENN_DIR
	Driver vmm.Driver
	Slots  Slots
	Log    *slog.Logger
	// AllowInternetDefault applies when a create does not say.
	AllowInternetDefault bool
	// BootTimeout bounds VM start to envd /health (default 2 min: TCG is slow).
	BootTimeout time.Duration
	// Limits on a sandbox's size.
	MaxVCPUs     int // default: the host's CPU count
	MaxMemoryMiB int // default: 64 GiB
	MaxDiskMiB   int // default: 1 TiB
	// KernelArgs are appended to every VM's kernel command line (debugging, tests).
	KernelArgs []string
	// Now is the clock (tests).
	Now func() time.Time
}

// Manager owns the sandboxes of this host.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu    sync.RWMutex
	boxes map[string]*sandbox

	stopReaper context.CancelFunc
	reaperDone chan struct{}
}

// sandbox is one sandbox in memory. mu serialises its transitions; rec and the
// runtime handles are only touched with mu held.
type sandbox struct {
	mu      sync.Mutex
	id      string
	dir     string
	rec     record
	slot    *netslot.Slot
	machine vmm.Machine
	envd    *envdclient.Client

	// interactive holds commands started with stdin or a pty, by guest pid (true =
	// pty), so input reaches only commands the agent started and goes the right way.
	interactive sync.Map

	// connsDone is closed when connections proxied to the guest must end (the VM
	// stopped or died).
	connsDone     chan struct{}
	connsDoneOnce sync.Once

	// lastActive is read by the reaper without the lock.
	activeMu   sync.Mutex
	lastActive time.Time
}

// Errors callers map to API codes.
var (
	ErrNotFound      = errors.New("sandbox not found")
	ErrAlreadyExists = errors.New("sandbox already exists")
	ErrInvalid       = errors.New("invalid request")
)

// New creates a manager. Call Recover before serving, then Close on shutdown.
func New(cfg Config) (*Manager, error) {
	if cfg.Dir == "" || cfg.Driver == nil || cfg.Slots == nil {
		return nil, errors.New("agent: Dir, Driver and Slots are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.BootTimeout == 0 {
		cfg.BootTimeout = 2 * time.Minute
	}
	if cfg.MaxVCPUs == 0 {
		cfg.MaxVCPUs = hostCPUs()
	}
	if cfg.MaxMemoryMiB == 0 {
		cfg.MaxMemoryMiB = 64 << 10
	}
	if cfg.MaxDiskMiB == 0 {
		cfg.MaxDiskMiB = 1 << 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "sandboxes"), 0o700); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	m := &Manager{cfg: cfg, log: cfg.Log, boxes: map[string]*sandbox{}}
	return m, nil
}

var sandboxIDPattern = regexp.MustCompile(`^[a-z0-9]{4,40}$`)

// validate checks a create request before anything is made.
func (m *Manager) validate(spec *Spec) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if spec.ID != "" && !sandboxIDPattern.MatchString(spec.ID) {
		return bad("sandbox id %q must be 4–40 characters of [a-z0-9]", spec.ID)
	}
	if spec.Template == "" {
		spec.Template = "base"
	}
	if err := image.ValidateName(spec.Template); err != nil {
		return bad("template: %v", err)
	}
	if spec.VCPUs == 0 {
		spec.VCPUs = 1
	}
	if spec.VCPUs < 1 || spec.VCPUs > m.cfg.MaxVCPUs {
		return bad("vcpus %d out of range 1..%d", spec.VCPUs, m.cfg.MaxVCPUs)
	}
	if spec.MemoryMiB == 0 {
		spec.MemoryMiB = 512
	}
	if spec.MemoryMiB < 128 || spec.MemoryMiB > m.cfg.MaxMemoryMiB {
		return bad("memory %d MiB out of range 128..%d", spec.MemoryMiB, m.cfg.MaxMemoryMiB)
	}
	if spec.DiskMiB < 0 || spec.DiskMiB > m.cfg.MaxDiskMiB {
		return bad("disk %d MiB out of range 0..%d", spec.DiskMiB, m.cfg.MaxDiskMiB)
	}
	if spec.TimeoutSec < 0 || spec.TimeoutSec > 7*24*3600 {
		return bad("timeout %d s out of range 0..%d", spec.TimeoutSec, 7*24*3600)
	}
	for k, v := range spec.EnvVars {
		if !envNamePattern.MatchString(k) {
			return bad("environment variable name %q", k)
		}
		if containsNUL(v) {
			return bad("environment variable %s contains a NUL byte", k)
		}
	}
	return nil
}

var envNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func containsNUL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return true
		}
	}
	return false
}

// Info is a sandbox as callers see it.
type Info struct {
	Spec       Spec
	State      State
	HostIP     netip.Addr
	CreatedAt  time.Time
	LastActive time.Time
	Error      string
}

// Timings splits a create into its steps.
type Timings struct {
	Slot, Disk, VMStart, Boot, Init, Total time.Duration
}

// Create boots a sandbox and returns once envd is initialised with the sandbox's token
// and identity. On failure nothing of it remains.
func (m *Manager) Create(ctx context.Context, spec Spec) (_ *Info, token string, _ Timings, err error) {
	var tm Timings
	if err := m.validate(&spec); err != nil {
		return nil, "", tm, err
	}
	tmpl, err := image.Load(m.cfg.Dir, spec.Template)
	if err != nil {
		return nil, "", tm, fmt.Errorf("%w: template %q: %v", ErrInvalid, spec.Template, err)
	}
	if spec.ID == "" {
		if spec.ID, err = sandboxid.New(); err != nil {
			return nil, "", tm, err
		}
	}
	sb := &sandbox{id: spec.ID, dir: filepath.Join(m.cfg.Dir, "sandboxes", spec.ID), connsDone: make(chan struct{})}
	now := m.cfg.Now()
	sb.rec = record{Spec: spec, State: Starting, Kernel: tmpl.Kernel, Initrd: tmpl.Initrd, CreatedAt: now, LastActive: now}
	sb.lastActive = now
	sb.mu.Lock()
	defer sb.mu.Unlock()

	m.mu.Lock()
	if _, dup := m.boxes[spec.ID]; dup {
		m.mu.Unlock()
		return nil, "", tm, fmt.Errorf("%w: %s", ErrAlreadyExists, spec.ID)
	}
	m.boxes[spec.ID] = sb
	m.mu.Unlock()

	var undo []func()
	defer func() {
		if err == nil {
			return
		}
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		m.mu.Lock()
		delete(m.boxes, spec.ID)
		m.mu.Unlock()
	}()
	if err := os.Mkdir(sb.dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, "", tm, fmt.Errorf("%w: %s (its directory exists)", ErrAlreadyExists, spec.ID)
		}
		return nil, "", tm, fmt.Errorf("create %s: %w", spec.ID, err)
	}
	undo = append(undo, func() { _ = os.RemoveAll(sb.dir) })
	// The record exists before any resource: a crash from here on leaves a "starting"
	// sandbox that Recover knows to clean.
	if err := writeRecord(sb.dir, &sb.rec); err != nil {
		return nil, "", tm, err
	}

	start := time.Now()
	slot, err := m.cfg.Slots.Get(ctx, spec.AllowInternet)
	if err != nil {
		return nil, "", tm, fmt.Errorf("create %s: network slot: %w", spec.ID, err)
	}
	sb.slot = slot
	undo = append(undo, func() {
		if err := m.cfg.Slots.Release(slot); err != nil {
			m.log.Warn("release slot after failed create", "sandbox", spec.ID, "err", err)
		}
	})
	tm.Slot = time.Since(start)
	sb.rec.Slot = slot.Index
	if err := writeRecord(sb.dir, &sb.rec); err != nil {
		return nil, "", tm, err
	}

	t := time.Now()
	disk := filepath.Join(sb.dir, "rootfs.ext4")
	if err := cloneDisk(ctx, tmpl.RootFS, disk, spec.DiskMiB); err != nil {
		return nil, "", tm, fmt.Errorf("create %s: %w", spec.ID, err)
	}
	tm.Disk = time.Since(t)

	t = time.Now()
	machine, err := m.cfg.Driver.Start(ctx, vmm.Config{
		ID: spec.ID, Dir: sb.dir, Kernel: tmpl.Kernel, Initrd: tmpl.Initrd, Disk: disk,
		VCPUs: spec.VCPUs, MemoryMiB: spec.MemoryMiB,
		KernelArgs: append([]string{"wrenn.hostname=" + spec.ID}, m.cfg.KernelArgs...),
		Net: &vmm.NetConfig{
			NetNS: slot.NetNSPath(), TAP: netslot.TapName, MAC: netslot.GuestMAC.String(),
			GuestIP: netslot.GuestIP, Gateway: netslot.TapIP.Addr(),
		},
	})
	if err != nil {
		return nil, "", tm, fmt.Errorf("create %s: %w", spec.ID, err)
	}
	sb.machine = machine
	undo = append(undo, func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := machine.Stop(stopCtx); err != nil {
			m.log.Warn("stop vm after failed create", "sandbox", spec.ID, "err", err)
		}
	})
	tm.VMStart = time.Since(t)

	t = time.Now()
	sb.envd = envdclient.New("http://"+netip.AddrPortFrom(slot.HostIP, envdapi.Port).String(), "", envdHTTPClient())
	if err := waitBoot(ctx, m.cfg.BootTimeout, sb); err != nil {
		return nil, "", tm, err
	}
	tm.Boot = time.Since(t)

	t = time.Now()
	if token, err = randomHex(24); err != nil {
		return nil, "", tm, err
	}
	if err := initEnvd(ctx, sb, token, spec, tmpl.Name); err != nil {
		return nil, "", tm, err
	}
	tm.Init = time.Since(t)

	sb.rec.Token = token
	// Idleness counts from when the sandbox is usable, not from when its create began.
	sb.touch(m.cfg.Now())
	sb.rec.LastActive = sb.active()
	if err := sb.moveTo(Running); err != nil {
		return nil, "", tm, err
	}
	tm.Total = time.Since(start)
	go m.watch(sb, machine)
	m.log.Info("sandbox created", "sandbox", spec.ID, "template", spec.Template, "slot", slot.Index, "total", tm.Total)
	return sb.info(), token, tm, nil
}

// initEnvd sends /init, retrying a few times: the first request can race envd's
// listener being fully ready behind the DNAT.
func initEnvd(ctx context.Context, sb *sandbox, token string, spec Spec, template string) error {
	seed := make([]byte, 32)
	if _, err := rand.Read(seed); err != nil {
		return err
	}
	env := spec.EnvVars
	if env == nil {
		env = map[string]string{}
	}
	var err error
	for attempt := range 4 {
		now := time.Now()
		err = sb.envd.Init(ctx, envdapi.InitRequest{
			EnvVars: env, AccessToken: &token, DefaultUser: "user", DefaultWorkdir: "/home/user",
			Timestamp: &now, SandboxID: spec.ID, TemplateID: template, Hostname: spec.ID, RandomSeed: seed,
		})
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("init %s: %w", spec.ID, ctx.Err())
		case <-time.After(time.Duration(50*(attempt+1)) * time.Millisecond):
		}
	}
	return fmt.Errorf("init %s: %w", spec.ID, err)
}

// waitBoot waits for envd's /health while watching the VM: one that dies while
// booting fails at once, with its console's tail.
func waitBoot(ctx context.Context, timeout time.Duration, sb *sandbox) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	healthy := make(chan error, 1)
	go func() { healthy <- sb.envd.WaitHealthy(ctx) }()
	select {
	case err := <-healthy:
		if err != nil {
			return fmt.Errorf("boot %s: %w\nconsole:\n%s", sb.id, err, vmm.ConsoleTail(sb.machine.ConsoleLog(), 30))
		}
		return nil
	case <-sb.machine.Done():
		cancel()
		<-healthy
		return fmt.Errorf("boot %s: vm exited: %v\nconsole:\n%s", sb.id, sb.machine.Err(), vmm.ConsoleTail(sb.machine.ConsoleLog(), 30))
	}
}

func envdHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second}}
}

// watch notices a VM that exits without being asked to (crash, OOM kill, kill -9): the
// sandbox moves to the error state with the reason, so callers get a clear answer
// instead of timeouts; Destroy then frees what is left.
func (m *Manager) watch(sb *sandbox, machine vmm.Machine) {
	<-machine.Done()
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.machine != machine || sb.rec.State == Stopping || sb.rec.State == Stopped {
		return // stopped on purpose, or replaced
	}
	sb.endConns()
	reason := fmt.Sprintf("vm exited unexpectedly: %v", machine.Err())
	sb.rec.Error = reason
	if err := sb.moveTo(Error); err != nil {
		m.log.Warn("record vm exit", "sandbox", sb.id, "err", err)
	}
	m.log.Error("sandbox vm died", "sandbox", sb.id, "reason", reason)
}

// VMPID returns the process id of a sandbox's VMM (diagnostics and tests).
func (m *Manager) VMPID(id string) (int, error) {
	sb, err := m.lookup(id)
	if err != nil {
		return 0, err
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.machine == nil {
		return 0, &ErrState{ID: id, State: sb.rec.State, Op: "report its vm"}
	}
	return sb.machine.PID(), nil
}

// moveTo changes the sandbox's state (the transition must be one the state machine
// allows) and persists it. Callers hold sb.mu.
func (sb *sandbox) moveTo(to State) error {
	if !canMove(sb.rec.State, to) {
		return &ErrState{ID: sb.id, State: sb.rec.State, Op: "become " + string(to)}
	}
	prev := sb.rec.State
	sb.rec.State = to
	if err := writeRecord(sb.dir, &sb.rec); err != nil {
		sb.rec.State = prev
		return err
	}
	return nil
}

// lookup returns a sandbox by id.
func (m *Manager) lookup(id string) (*sandbox, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	sb, ok := m.boxes[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return sb, nil
}

// Get returns a sandbox's current info.
func (m *Manager) Get(id string) (*Info, error) {
	sb, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.info(), nil
}

// List returns every sandbox, oldest first.
func (m *Manager) List() []*Info {
	m.mu.RLock()
	boxes := make([]*sandbox, 0, len(m.boxes))
	for _, sb := range m.boxes {
		boxes = append(boxes, sb)
	}
	m.mu.RUnlock()
	out := make([]*Info, 0, len(boxes))
	for _, sb := range boxes {
		sb.mu.Lock()
		out = append(out, sb.info())
		sb.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out
}

func (sb *sandbox) info() *Info {
	i := &Info{Spec: sb.rec.Spec, State: sb.rec.State, CreatedAt: sb.rec.CreatedAt, LastActive: sb.active(), Error: sb.rec.Error}
	if sb.slot != nil {
		i.HostIP = sb.slot.HostIP
	}
	return i
}

func (sb *sandbox) touch(t time.Time) {
	sb.activeMu.Lock()
	if t.After(sb.lastActive) {
		sb.lastActive = t
	}
	sb.activeMu.Unlock()
}

func (sb *sandbox) active() time.Time {
	sb.activeMu.Lock()
	defer sb.activeMu.Unlock()
	return sb.lastActive
}

// Destroy stops a sandbox's VM and removes its slot and files.
func (m *Manager) Destroy(ctx context.Context, id string) error {
	sb, err := m.lookup(id)
	if err != nil {
		return err
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.rec.State == Stopped {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err := sb.moveTo(Stopping); err != nil {
		// Only a failed record write gets here; tear down anyway — a crash now still
		// leads to cleanup, as the directory goes too.
		m.log.Warn("record stopping state", "sandbox", id, "err", err)
	}
	err = m.teardown(ctx, sb)
	sb.rec.State = Stopped // the record went with the directory
	m.mu.Lock()
	delete(m.boxes, id)
	m.mu.Unlock()
	if err != nil {
		return fmt.Errorf("destroy %s: %w", id, err)
	}
	m.log.Info("sandbox destroyed", "sandbox", id)
	return nil
}

// teardown releases everything of a sandbox; it keeps going past failures so as much as
// possible is freed, and reports them all.
func (m *Manager) teardown(ctx context.Context, sb *sandbox) error {
	sb.endConns()
	var errs []error
	if sb.machine != nil {
		stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := sb.machine.Stop(stopCtx); err != nil {
			errs = append(errs, fmt.Errorf("stop vm: %w", err))
		}
		cancel()
	}
	if sb.slot != nil {
		if err := m.cfg.Slots.Release(sb.slot); err != nil {
			errs = append(errs, fmt.Errorf("release slot %d: %w", sb.slot.Index, err))
		}
	}
	if err := os.RemoveAll(sb.dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", sb.dir, err))
	}
	return errors.Join(errs...)
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// endConns ends the connections proxied to the sandbox's guest.
func (sb *sandbox) endConns() {
	sb.connsDoneOnce.Do(func() { close(sb.connsDone) })
}

// ProxyTarget returns the address a running sandbox's guest ports are reached at from
// this host, and a channel closed when connections proxied there must end. Proxied
// traffic counts as activity.
func (m *Manager) ProxyTarget(id string) (netip.Addr, <-chan struct{}, error) {
	sb, err := m.running(id, "proxy to")
	if err != nil {
		return netip.Addr{}, nil, err
	}
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.slot.HostIP, sb.connsDone, nil
}

// AllowInternetDefault is the egress setting of sandboxes whose create does not say.
func (m *Manager) AllowInternetDefault() bool { return m.cfg.AllowInternetDefault }
