package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/wrennhq/wrenn/internal/cgroup"
	"github.com/wrennhq/wrenn/internal/vmm"
)

// Confinement is how the agent confines each sandbox's VMM process (README,
// "Security"): a jail with a uid and gid of its own, and a cgroup whose limits
// follow the sandbox's size, so a guest that escapes its VMM holds no privilege and
// one sandbox cannot take its neighbours' CPU, memory or pids.
type Confinement struct {
	// UIDBase jails VMMs: the one of the sandbox on network slot i runs as uid and
	// gid UIDBase+i (slots are unique on a host, also across agents). 0: no jail.
	UIDBase uint32
	// Cgroups holds each sandbox's cgroup, named by its id; nil: no limits.
	Cgroups *cgroup.Manager
	// MemoryOverheadMiB is what a VMM needs besides its guest's RAM; a sandbox's
	// memory limit is its RAM plus this.
	MemoryOverheadMiB int
	// Pids bounds a VMM's tasks (its threads count).
	Pids int64
	// DiskRate bounds each sandbox's disk I/O, enforced by its VMM (zero: none).
	DiskRate vmm.RateLimit
}

// DefaultMemoryOverheadMiB and DefaultVMMPids are Confinement's defaults. QEMU under
// TCG keeps a translation cache and I/O threads besides guest RAM (measured: see
// README, "Security"); KVM needs less, and the limit only has to be above it.
const (
	DefaultMemoryOverheadMiB = 256
	DefaultVMMPids           = 512
)

func (c *Confinement) withDefaults() {
	if c.MemoryOverheadMiB <= 0 {
		c.MemoryOverheadMiB = DefaultMemoryOverheadMiB
	}
	if c.Pids <= 0 {
		c.Pids = DefaultVMMPids
	}
}

// confine puts the sandbox's next VM in its jail and cgroup: it makes (or updates)
// the cgroup and sets cfg.Jail. The undo removes the cgroup; a VM that started is
// released by releaseCgroup after it stops.
func (m *Manager) confine(sb *sandbox, cfg *vmm.Config) (func(), error) {
	c := m.cfg.Confinement
	sb.mu.Lock()
	spec, slot := sb.rec.Spec, sb.slot
	sb.mu.Unlock()
	var g *cgroup.Group
	if c.Cgroups != nil {
		var err error
		g, err = c.Cgroups.Create(sb.id, cgroup.Limits{
			CPUs:        float64(spec.VCPUs),
			MemoryBytes: int64(spec.MemoryMiB+c.MemoryOverheadMiB) << 20,
			Pids:        c.Pids,
		})
		if err != nil {
			return nil, fmt.Errorf("limits: %w", err)
		}
		sb.set(func(sb *sandbox) { sb.cgroup = g })
	}
	cfg.DiskRate = c.DiskRate
	sb.set(func(sb *sandbox) { sb.diskRate = c.DiskRate })
	if c.UIDBase != 0 && slot != nil {
		id := c.UIDBase + uint32(slot.Index)
		cfg.Jail = &vmm.Jail{UID: id, GID: id}
		sb.set(func(sb *sandbox) { sb.jailUID = id })
		if g != nil {
			cfg.Jail.CgroupProcs = g.ProcsFiles()
		}
	}
	return func() { m.logFailure(sb, "remove cgroup", m.releaseCgroup(sb)) }, nil
}

// joinUnjailed moves an unjailed VMM into its cgroup once it runs (a jailed one
// joined before it ran).
func (m *Manager) joinUnjailed(sb *sandbox, cfg vmm.Config, machine vmm.Machine) error {
	sb.mu.Lock()
	g := sb.cgroup
	sb.mu.Unlock()
	if g == nil || cfg.Jail != nil {
		return nil
	}
	return g.Add(machine.PID())
}

// adoptCgroup finds the cgroup of a sandbox whose VM survived an agent restart.
func (m *Manager) adoptCgroup(sb *sandbox) {
	if m.cfg.Confinement.Cgroups == nil {
		return
	}
	g, err := m.cfg.Confinement.Cgroups.Load(sb.id)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			m.log.Warn("adopt cgroup", "sandbox", sb.id, "err", err)
		}
		return
	}
	sb.set(func(sb *sandbox) { sb.cgroup = g })
}

// releaseCgroup removes the sandbox's cgroup; its VM must have stopped.
func (m *Manager) releaseCgroup(sb *sandbox) error {
	var g *cgroup.Group
	sb.set(func(sb *sandbox) { g, sb.cgroup = sb.cgroup, nil })
	if g == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return g.Delete(ctx)
}

// oomReason says, for a VM that exited on its own, whether the kernel killed it for
// going over its memory limit ("" if not, or if nothing says).
func (m *Manager) oomReason(sb *sandbox) string {
	sb.mu.Lock()
	g := sb.cgroup
	sb.mu.Unlock()
	if g == nil {
		return ""
	}
	if n, err := g.OOMKills(); err != nil || n == 0 {
		return ""
	}
	return fmt.Sprintf("out of memory: the sandbox's VM used all of its %d MiB limit (guest RAM plus the VMM's own) and was killed", g.Applied().MemoryBytes>>20)
}
