// Package agent is the host agent's core: a manager of the sandboxes on this host. Each
// sandbox has an explicit state machine (internal/lifecycle) and a transition lock;
// every transition is a sequence of steps (steps.go) that each return their undo, so a
// failure leaves nothing half-made. State is persisted under WRENN_DIR so a restarted
// agent re-adopts its live VMs instead of losing them. The manager works through three
// seams: Slots (network), Disks (root disks) and a vmm.Driver.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wrennhq/wrenn/internal/agent/sampling"
	"github.com/wrennhq/wrenn/internal/lifecycle"
	"github.com/wrennhq/wrenn/internal/netslot"
	"github.com/wrennhq/wrenn/internal/seal"
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

// Disks makes and frees sandboxes' root disks; rootfs.CloneDisks implements it.
type Disks interface {
	// Create makes the root disk of the sandbox whose directory is dir from a template
	// disk, grown to sizeMiB (0 = the template's size), and returns the path the VMM
	// attaches. On failure nothing of it remains.
	Create(ctx context.Context, template, dir string, sizeMiB int) (string, error)
	// Adopt returns the disk of a sandbox made by an earlier agent process.
	Adopt(dir string) (string, error)
	// Release frees the disk of the sandbox in dir; one already gone is not an error.
	Release(dir string) error
	// Flatten writes a standalone copy of the disk of the sandbox in dir to the file
	// dst (which must not exist), durably, for a snapshot that Create later clones.
	// The VM must not be writing the disk meanwhile.
	Flatten(ctx context.Context, dir, dst string) error
}

// Config configures a Manager.
type Config struct {
	Dir    string // WRENN_DIR
	Driver vmm.Driver
	Slots  Slots
	Disks  Disks
	// RecordKey (RecordKeySize bytes) seals the secrets in sandbox records: the envd
	// token and the env vars. Records only open with the key they were written with, so
	// an agent must get the same key every time (LoadOrCreateRecordKey).
	RecordKey []byte
	Log       *slog.Logger
	// AllowInternetDefault applies when a create does not say.
	AllowInternetDefault bool
	// BootTimeout bounds VM start to envd /health (default 2 min: TCG is slow).
	BootTimeout time.Duration
	// Limits on a sandbox's size.
	Limits Limits
	// KernelArgs are appended to every VM's kernel command line (debugging, tests).
	KernelArgs []string
	// Now is the clock (tests).
	Now func() time.Time
	// WarmStart restores creates from a warm snapshot of their template (warm.go),
	// built in the background after the first cold boot of each shape.
	WarmStart bool
	// Ops learns how long each create, pause and resume took (metrics); nil: none.
	Ops OpObserver
	// Confinement jails each VMM and limits it through a cgroup (confine.go); the
	// zero value confines nothing.
	Confinement Confinement
	// FaultPoint, for fault-injection tests only, stops the first operation that
	// reaches it (one of FaultPoints) until the agent is killed.
	FaultPoint string
	// Sampling tunes the metrics sampler (metrics.go); zero values take its defaults
	// (every 500 ms, the fine tier's step). Its clock and log default to Now and Log.
	Sampling sampling.Config
}

// OpObserver learns of every create, pause and resume once it ends, failed or not
// (promx.Agent turns them into Prometheus histograms). Only operations that began
// their transition count: a request refused up front (unknown sandbox, wrong state,
// bad spec) is not one. It is called on the operation's goroutine, so it must be cheap
// and safe for concurrent use.
type OpObserver interface {
	ObserveOp(op string, took time.Duration, err error)
}

// Operations an OpObserver learns of.
const (
	OpCreate = "create"
	OpPause  = "pause"
	OpResume = "resume"
)

// observeOp reports an operation that began at start and ended with err.
func (m *Manager) observeOp(op string, start time.Time, err error) {
	if m.cfg.Ops != nil {
		m.cfg.Ops.ObserveOp(op, time.Since(start), err)
	}
}

// Manager owns the sandboxes of this host.
type Manager struct {
	cfg    Config
	log    *slog.Logger
	sealer *seal.Box

	mu    sync.RWMutex
	boxes map[string]*sandbox

	// snapMu: restores read named snapshots' files under RLock; publishing and
	// deleting snapshots take Lock (snapshots.go).
	snapMu sync.RWMutex

	stopReaper context.CancelFunc
	reaperDone chan struct{}

	// Background work (warm snapshot builds): its context ends at Close, which waits
	// for it. warming and closed are guarded by mu.
	bgCtx    context.Context
	bgCancel context.CancelFunc
	bg       sync.WaitGroup
	warming  map[string]bool
	closed   bool

	// faultArmed: Config.FaultPoint has not been reached yet (faults.go).
	faultArmed atomic.Bool

	// sampler measures the running sandboxes into their metrics, as background work.
	sampler *sampling.Sampler
}

// New creates a manager and starts its metrics sampler. Call Recover before serving,
// then Close on shutdown.
func New(cfg Config) (*Manager, error) {
	if cfg.Dir == "" || cfg.Driver == nil || cfg.Slots == nil || cfg.Disks == nil {
		return nil, errors.New("agent: Dir, Driver, Slots and Disks are required")
	}
	if cfg.FaultPoint != "" && !slices.Contains(FaultPoints, cfg.FaultPoint) {
		return nil, fmt.Errorf("agent: unknown fault point %q: want one of %v", cfg.FaultPoint, FaultPoints)
	}
	sealer, err := seal.New(cfg.RecordKey)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.BootTimeout == 0 {
		cfg.BootTimeout = 2 * time.Minute
	}
	cfg.Limits = cfg.Limits.withDefaults()
	cfg.Confinement.withDefaults()
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "sandboxes"), 0o700); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	bgCtx, bgCancel := context.WithCancel(context.Background())
	m := &Manager{cfg: cfg, log: cfg.Log, sealer: sealer, boxes: map[string]*sandbox{},
		bgCtx: bgCtx, bgCancel: bgCancel, warming: map[string]bool{}}
	m.faultArmed.Store(cfg.FaultPoint != "")
	m.startSampler()
	return m, nil
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

// forget removes a sandbox from the table.
func (m *Manager) forget(sb *sandbox) {
	m.mu.Lock()
	if m.boxes[sb.id] == sb {
		delete(m.boxes, sb.id)
	}
	m.mu.Unlock()
}

// current reports whether sb is still the sandbox the table holds under its id.
func (m *Manager) current(sb *sandbox) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.boxes[sb.id] == sb
}

// Get returns a sandbox's current info; it never waits for a transition.
func (m *Manager) Get(id string) (*Info, error) {
	sb, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	return sb.info(), nil
}

// List returns every sandbox, oldest first; it never waits for a transition.
func (m *Manager) List() []*Info {
	m.mu.RLock()
	boxes := make([]*sandbox, 0, len(m.boxes))
	for _, sb := range m.boxes {
		boxes = append(boxes, sb)
	}
	m.mu.RUnlock()
	out := make([]*Info, 0, len(boxes))
	for _, sb := range boxes {
		out = append(out, sb.info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out
}

// CountByState is how many sandboxes are in each state (metrics); like List, it
// never waits for a transition.
func (m *Manager) CountByState() map[lifecycle.State]int {
	m.mu.RLock()
	boxes := make([]*sandbox, 0, len(m.boxes))
	for _, sb := range m.boxes {
		boxes = append(boxes, sb)
	}
	m.mu.RUnlock()
	n := map[lifecycle.State]int{}
	for _, sb := range boxes {
		n[sb.state()]++
	}
	return n
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
	return sb.slot.HostIP, sb.conns.done, nil
}

// AllowInternetDefault is the egress setting of sandboxes whose create does not say.
func (m *Manager) AllowInternetDefault() bool { return m.cfg.AllowInternetDefault }

// InUse reports whether a slot index belongs to a sandbox of this manager (for the
// slot pool's reclaiming of leftovers).
func (m *Manager) InUse(index int) bool {
	m.mu.RLock()
	boxes := make([]*sandbox, 0, len(m.boxes))
	for _, sb := range m.boxes {
		boxes = append(boxes, sb)
	}
	m.mu.RUnlock()
	for _, sb := range boxes {
		sb.mu.Lock()
		held := sb.rec.Slot == index || sb.slot != nil && sb.slot.Index == index
		sb.mu.Unlock()
		if held {
			return true
		}
	}
	return false
}
