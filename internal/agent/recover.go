package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/wrennhq/wrenn/internal/envd/envdapi"
	"github.com/wrennhq/wrenn/internal/envdclient"
	"github.com/wrennhq/wrenn/internal/vmm"
)

// RecoverReport says what Recover found.
type RecoverReport struct {
	Adopted []string // live sandboxes taken over
	Cleaned []string // half-made or dead sandboxes removed
	Skipped []string // sandboxes of slots outside this agent's range, untouched
}

// Recover rebuilds the sandbox table from WRENN_DIR after a (re)start: running
// sandboxes whose VM is alive are adopted with their slot and disk; sandboxes caught
// half-way through a create or destroy, and ones whose VM died while no agent was
// watching, are cleaned. Call it before serving.
func (m *Manager) Recover(ctx context.Context) (*RecoverReport, error) {
	root := filepath.Join(m.cfg.Dir, "sandboxes")
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("recover: %w", err)
	}
	rep := &RecoverReport{}
	for _, e := range entries {
		if !e.IsDir() || !sandboxIDPattern.MatchString(e.Name()) {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if rec, err := readRecord(dir); err == nil && rec.Slot > 0 && !m.cfg.Slots.Owns(rec.Slot) {
			// Not this agent's to judge: another agent's sandbox, or a changed
			// --first-slot/--last-slot. Leave it exactly as it is.
			m.log.Warn("sandbox outside this agent's slot range: left alone", "sandbox", e.Name(), "slot", rec.Slot)
			rep.Skipped = append(rep.Skipped, e.Name())
			continue
		}
		sb, reason := m.adopt(ctx, e.Name(), dir)
		if sb != nil {
			m.mu.Lock()
			m.boxes[sb.id] = sb
			m.mu.Unlock()
			rep.Adopted = append(rep.Adopted, sb.id)
			continue
		}
		m.log.Warn("cleaning sandbox left behind", "sandbox", e.Name(), "reason", reason)
		m.cleanLeftover(ctx, e.Name(), dir)
		rep.Cleaned = append(rep.Cleaned, e.Name())
	}
	return rep, nil
}

// adopt takes over one sandbox directory, or says why it cannot.
func (m *Manager) adopt(ctx context.Context, id, dir string) (*sandbox, string) {
	rec, err := readRecord(dir)
	if err != nil {
		return nil, "no readable record: " + err.Error()
	}
	if rec.State != Running {
		return nil, "caught while " + string(rec.State)
	}
	machine, err := m.cfg.Driver.Adopt(ctx, dir)
	if err != nil {
		return nil, "vm not running: " + err.Error()
	}
	sb := &sandbox{id: id, dir: dir, rec: *rec, machine: machine, lastActive: rec.LastActive, connsDone: make(chan struct{})}
	slot, err := m.cfg.Slots.Adopt(rec.Slot)
	if err != nil {
		m.stopAdopted(machine, id)
		return nil, fmt.Sprintf("slot %d: %v", rec.Slot, err)
	}
	sb.slot = slot
	sb.envd = envdclient.New("http://"+netip.AddrPortFrom(slot.HostIP, envdapi.Port).String(), rec.Token, envdHTTPClient())
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := sb.envd.WaitHealthy(hctx); err != nil {
		m.stopAdopted(machine, id)
		_ = m.cfg.Slots.Release(slot)
		return nil, "envd does not answer: " + err.Error()
	}
	// The idle clock restarts: time the agent was away is not the user's idleness.
	sb.lastActive = m.cfg.Now()
	go m.watch(sb, machine)
	return sb, ""
}

func (m *Manager) stopAdopted(machine vmm.Machine, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := machine.Stop(ctx); err != nil {
		m.log.Warn("stop vm of a sandbox being cleaned", "sandbox", id, "err", err)
	}
}

// cleanLeftover removes whatever a half-made sandbox had: its VM (if one runs), its
// slot (if the record got that far) and its directory.
func (m *Manager) cleanLeftover(ctx context.Context, id, dir string) {
	if machine, err := m.cfg.Driver.Adopt(ctx, dir); err == nil {
		m.stopAdopted(machine, id)
	} else if !errors.Is(err, vmm.ErrNotRunning) {
		m.log.Warn("look for a vm of a half-made sandbox", "sandbox", id, "err", err)
	}
	if rec, err := readRecord(dir); err == nil && rec.Slot > 0 {
		if slot, err := m.cfg.Slots.Adopt(rec.Slot); err == nil {
			_ = m.cfg.Slots.Release(slot)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		m.log.Warn("remove half-made sandbox", "sandbox", id, "err", err)
	}
}

// InUse reports whether a slot index belongs to a sandbox of this manager (for the
// slot pool's reclaiming of leftovers).
func (m *Manager) InUse(index int) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, sb := range m.boxes {
		if sb.slot != nil && sb.slot.Index == index {
			return true
		}
	}
	return false
}
