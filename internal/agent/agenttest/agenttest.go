// Package agenttest runs the real host agent — its manager and RPC server — without
// VMs, network namespaces or root disks, for tests of the agent itself and of the
// control plane above it. What stands in for each seam:
//
//   - Driver (a vmm.Driver named "fake"): a sandbox's "VM" is a real envd process
//     (envdtest) listening on the sandbox's host address, so create, exec, files and
//     the proxy work end to end through the real agent code. Hooks let a test hold a
//     start or a stop inside the driver.
//   - Slots: loopback addresses (127.77.B.i) instead of namespaces; every address of
//     127.0.0.0/8 is local on Linux, so nothing is configured. Each harness claims its
//     own block B (see claimBlock), so agents in one test binary, or in test binaries
//     running side by side, never hand out the same address.
//   - Disks: an empty file per sandbox.
//
// Only the VMM and the network are fake; the manager, its state machine, records,
// locking and the RPC server are the production code.
package agenttest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"github.com/wrennhq/wrenn/internal/netslot"
	"github.com/wrennhq/wrenn/internal/rootfs"
)

// Slots hands out loopback addresses 127.77.Block.i as network slots i; it implements
// agent.Slots.
type Slots struct {
	First, Last int  // the slot indexes it owns (1..254: i is the address's last byte)
	Block       byte // the third byte of its addresses

	mu    sync.Mutex
	inUse map[int]bool
	byNS  map[string]netip.Addr // slot namespace path → host address
}

// NewSlots returns a pool of slots first..last (within 1..254) on addresses
// 127.77.block.first..last.
func NewSlots(block byte, first, last int) *Slots {
	return &Slots{First: first, Last: last, Block: block, inUse: map[int]bool{}, byNS: map[string]netip.Addr{}}
}

func (s *Slots) slot(i int) *netslot.Slot {
	host := netip.AddrFrom4([4]byte{127, 77, s.Block, byte(i)})
	return &netslot.Slot{Addrs: netslot.Addrs{Index: i, NetNS: fmt.Sprintf("agenttest-%d", i), HostIP: host}}
}

// Get takes the lowest free slot.
func (s *Slots) Get(ctx context.Context, _ bool) (*netslot.Slot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := s.First; i <= s.Last; i++ {
		if !s.inUse[i] {
			return s.take(i), nil
		}
	}
	return nil, errors.New("agenttest: no free slot")
}

func (s *Slots) take(i int) *netslot.Slot {
	sl := s.slot(i)
	s.inUse[i] = true
	s.byNS[sl.NetNSPath()] = sl.HostIP
	return sl
}

// Release frees a slot.
func (s *Slots) Release(sl *netslot.Slot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.inUse[sl.Index] {
		return fmt.Errorf("agenttest: slot %d is not in use", sl.Index)
	}
	delete(s.inUse, sl.Index)
	delete(s.byNS, sl.NetNSPath())
	return nil
}

// Adopt takes a given slot again (after a manager restart).
func (s *Slots) Adopt(i int) (*netslot.Slot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.Owns(i) {
		return nil, fmt.Errorf("agenttest: slot %d is not ours", i)
	}
	return s.take(i), nil
}

// Owns reports whether i is in the pool's range.
func (s *Slots) Owns(i int) bool { return i >= s.First && i <= s.Last }

// InUse is the number of slots handed out.
func (s *Slots) InUse() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.inUse)
}

// hostAddr is the address of the slot whose namespace path is ns.
func (s *Slots) hostAddr(ns string) (netip.Addr, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.byNS[ns]
	return a, ok
}

// Disks makes an empty file as each sandbox's disk; it implements agent.Disks.
type Disks struct{}

// Create writes dir/rootfs.ext4.
func (Disks) Create(_ context.Context, _, dir string, _ int) (string, error) {
	p := filepath.Join(dir, rootfs.DiskName)
	return p, os.WriteFile(p, nil, 0o600)
}

// Adopt finds the disk again.
func (Disks) Adopt(dir string) (string, error) {
	p := filepath.Join(dir, rootfs.DiskName)
	_, err := os.Stat(p)
	return p, err
}

// Flatten copies the disk.
func (Disks) Flatten(_ context.Context, dir, dst string) error {
	b, err := os.ReadFile(filepath.Join(dir, rootfs.DiskName))
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o600)
}

// Release removes the disk.
func (Disks) Release(dir string) error {
	err := os.Remove(filepath.Join(dir, rootfs.DiskName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
