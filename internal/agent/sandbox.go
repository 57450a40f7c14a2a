package agent

import (
	"github.com/wrennhq/wrenn/internal/cgroup"
	"net/netip"
	"sync"
	"time"

	"github.com/wrennhq/wrenn/internal/agent/sampling"
	"github.com/wrennhq/wrenn/internal/envdclient"
	"github.com/wrennhq/wrenn/internal/lifecycle"
	"github.com/wrennhq/wrenn/internal/netslot"
	"github.com/wrennhq/wrenn/internal/seal"
	"github.com/wrennhq/wrenn/internal/vmm"
)

// sandbox is one sandbox in memory. It has two locks:
//
//   - op serialises transitions (create, destroy; pause and resume later). A transition
//     holds it for its whole length, across slow driver and guest calls.
//   - mu guards the fields below it and is held only to read or assign them, never
//     across I/O or a driver call. So the sandbox's published view — Get, List, the
//     heartbeat, the idle reaper, the proxy — never waits behind a transition.
//
// Only a holder of op changes rec or the runtime handles; lock order is op, then mu.
type sandbox struct {
	id     string
	dir    string
	sealer *seal.Box // seals the record's secrets on every write

	op sync.Mutex

	mu         sync.Mutex
	rec        record
	slot       *netslot.Slot
	disk       string
	machine    vmm.Machine
	cgroup     *cgroup.Group // the VM's limits (confine.go); nil without
	jailUID    uint32        // the VM's jail's uid; 0 = not jailed
	diskRate   vmm.RateLimit // the VM's disk rate limit (zero: none)
	envd       *envdclient.Client
	lastActive time.Time

	// interactive holds commands started with stdin or a pty, by guest pid (true =
	// pty), so input reaches only commands the agent started and goes the right way.
	interactive sync.Map

	// conns ends the connections proxied to the guest when the VM stops, dies or
	// pauses; a resumed VM gets a new one.
	conns *connGate

	// series is the sandbox's sampled metrics (metrics.go), made at its first sample
	// and kept across pauses; nil until then.
	series *sampling.Series
}

// connGate is a channel closed once, when connections proxied to a guest must end.
type connGate struct {
	done chan struct{}
	once sync.Once
}

func newConnGate() *connGate { return &connGate{done: make(chan struct{})} }

func (g *connGate) end() { g.once.Do(func() { close(g.done) }) }

func newSandbox(id, dir string, rec record, sealer *seal.Box) *sandbox {
	return &sandbox{id: id, dir: dir, sealer: sealer, rec: rec, lastActive: rec.LastActive, conns: newConnGate()}
}

// Info is a sandbox as callers see it.
type Info struct {
	Spec       Spec
	State      lifecycle.State
	HostIP     netip.Addr
	CreatedAt  time.Time
	LastActive time.Time
	Error      string
	// VMM is how its VMM is confined while one runs (confine.go); nil without.
	VMM *VMMLimits
}

// VMMLimits are what the kernel enforces on a sandbox's VMM: its cgroup's limits
// (0 = none) and the jail's uid (0 = not jailed); and its disk rate, which the VMM
// enforces on its guest.
type VMMLimits struct {
	CPUs        float64
	MemoryBytes int64
	Pids        int64
	JailUID     uint32
	DiskRate    vmm.RateLimit
}

// info returns the sandbox's published view without waiting for a transition.
func (sb *sandbox) info() *Info {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	i := &Info{Spec: sb.rec.Spec, State: sb.rec.State, CreatedAt: sb.rec.CreatedAt, LastActive: sb.lastActive, Error: sb.rec.Error}
	if sb.slot != nil {
		i.HostIP = sb.slot.HostIP
	}
	if sb.machine != nil && (sb.cgroup != nil || sb.jailUID != 0 || sb.diskRate != vmm.RateLimit{}) {
		i.VMM = &VMMLimits{JailUID: sb.jailUID, DiskRate: sb.diskRate}
		if sb.cgroup != nil {
			l := sb.cgroup.Applied()
			i.VMM.CPUs, i.VMM.MemoryBytes, i.VMM.Pids = l.CPUs, l.MemoryBytes, l.Pids
		}
	}
	return i
}

// state is the sandbox's current state.
func (sb *sandbox) state() lifecycle.State {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.rec.State
}

// set changes the in-memory sandbox under mu. Callers hold op.
func (sb *sandbox) set(f func(sb *sandbox)) {
	sb.mu.Lock()
	f(sb)
	sb.mu.Unlock()
}

// persist writes the current record. Callers hold op, so nothing changes it meanwhile.
func (sb *sandbox) persist() error {
	sb.mu.Lock()
	rec := sb.rec
	rec.LastActive = sb.lastActive
	sb.mu.Unlock()
	return writeRecord(sb.sealer, sb.id, sb.dir, &rec)
}

// moveTo changes the sandbox's state (the transition must be one the state machine
// allows) and persists it; the new state is published only once it is on disk.
// Callers hold op.
func (sb *sandbox) moveTo(to lifecycle.State) error {
	sb.mu.Lock()
	rec := sb.rec
	rec.LastActive = sb.lastActive
	sb.mu.Unlock()
	if !lifecycle.CanMove(rec.State, to) {
		return &ErrState{ID: sb.id, State: rec.State, Op: "become " + string(to)}
	}
	rec.State = to
	if err := writeRecord(sb.sealer, sb.id, sb.dir, &rec); err != nil {
		return err
	}
	sb.set(func(sb *sandbox) { sb.rec.State = to })
	return nil
}

func (sb *sandbox) touch(t time.Time) {
	sb.mu.Lock()
	if t.After(sb.lastActive) {
		sb.lastActive = t
	}
	sb.mu.Unlock()
}

// endConns ends the connections proxied to the sandbox's guest.
func (sb *sandbox) endConns() {
	sb.mu.Lock()
	g := sb.conns
	sb.mu.Unlock()
	g.end()
}

// client is the sandbox's envd client (replaced when its VM is, e.g. on resume).
func (sb *sandbox) client() *envdclient.Client {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.envd
}
