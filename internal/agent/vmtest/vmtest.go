// Package vmtest makes in-process agent managers that boot real VMs, for the end-to-end
// tests and the benchmarks: a slot pool, the QEMU driver and copied-on-write disks,
// wired as `wrenn agent` wires them.
package vmtest

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/wrennhq/wrenn/internal/agent"
	"github.com/wrennhq/wrenn/internal/netslot"
	"github.com/wrennhq/wrenn/internal/rootfs"
	"github.com/wrennhq/wrenn/internal/vmm"
	"github.com/wrennhq/wrenn/internal/vmm/drivers"
)

// Options are what tests and benchmarks vary between their managers.
type Options struct {
	// Dir is the WRENN_DIR: the templates to boot, and where sandboxes go.
	Dir string
	// FirstSlot..LastSlot are the slot indices of the manager's own pool: a range that
	// no agent (agents start at 1) and no other test uses, so their namespaces never
	// collide.
	FirstSlot, LastSlot int
	// ReadySlots is how many slots (internet off) the pool keeps ready.
	ReadySlots int
	// Pool, when set, is another manager's pool to share instead of making one (the
	// three fields above are then unused): two managers on one slot range must share
	// its pool, or both would create the same namespaces.
	Pool *netslot.Pool
	// KernelArgs are appended to every VM's kernel command line.
	KernelArgs []string
	// Log defaults to warnings and errors on stderr, so a passing run stays quiet.
	Log *slog.Logger
	// WarmStart: creates restore their template's warm snapshot (agent.Config).
	WarmStart bool
	// Confinement jails and limits the VMMs (agent.Config); zero: neither.
	Confinement agent.Confinement
	// Driver is the VMM driver's name: "qemu" (default), or "firecracker" for the
	// tests that run only on KVM hosts (scripts/kvm-host-check.sh).
	Driver string
}

// NewManager returns an agent manager that runs VMs with QEMU, the driver this
// project's own tests exercise, and its slot pool. The pool is closed when the test
// ends, destroying its ready slots; closing it earlier is fine.
func NewManager(t testing.TB, o Options) (*agent.Manager, *netslot.Pool) {
	t.Helper()
	log := o.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	pool := o.Pool
	if pool == nil {
		var err error
		pool, err = netslot.NewPool(netslot.DefaultConfig(), netslot.PoolOptions{
			Size: o.ReadySlots, FirstIndex: o.FirstSlot, LastIndex: o.LastSlot,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pool.Close() })
	}
	if o.Driver == "" {
		o.Driver = "qemu"
	}
	driver, err := drivers.Open(o.Driver, vmm.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	// The key where `wrenn agent` keeps it by default (WRENN_DIR/agent), so managers
	// on one Dir, one after the other, open each other's records as a restarted agent does.
	key, err := agent.LoadOrCreateRecordKey(filepath.Join(o.Dir, "agent"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := agent.New(agent.Config{
		Dir: o.Dir, Driver: driver, Slots: pool, Disks: rootfs.CloneDisks{}, RecordKey: key, Log: log, KernelArgs: o.KernelArgs,
		WarmStart: o.WarmStart, Confinement: o.Confinement,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m, pool
}
