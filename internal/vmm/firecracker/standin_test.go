package firecracker

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/wrennhq/wrenn/internal/memfile"
	"github.com/wrennhq/wrenn/internal/uffd/pagerproc"
	"github.com/wrennhq/wrenn/internal/vmm"
	"github.com/wrennhq/wrenn/internal/vmm/firecracker/fcstandin"
)

// These tests drive the real driver against the spec-checking stand-in (fcstandin):
// a process that serves Firecracker's API on the socket, refuses every request that
// breaks the published Swagger schema or Firecracker's call order, journals all of
// them, and simulates just enough (a guest memory that changes at every run, snapshot
// files, a real userfaultfd handshake on load) to check what the driver does with
// the results. It is not a Firecracker emulator: no guest runs.

func TestMain(m *testing.M) {
	if fcstandin.IsStandin() {
		os.Exit(fcstandin.Main(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func swaggerPath(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "..", "..", "..", "shared", "specs", "upstream", "firecracker-swagger.yaml")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("Firecracker's Swagger document is not beside the checkout (%s): %v", p, err)
	}
	return p
}

type rig struct {
	t       *testing.T
	d       *Driver
	journal string
	files   struct{ kernel, initrd, disk string }
}

func newRig(t *testing.T) *rig {
	if _, err := os.Stat("/proc/self/exe"); err != nil {
		t.Skip("no /proc")
	}
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, journal: filepath.Join(dir, "journal.jsonl")}
	launcher, err := fcstandin.WriteLauncherWithJournal(dir, exe, swaggerPath(t), r.journal)
	if err != nil {
		t.Fatal(err)
	}
	drv, err := Open(vmm.Options{Binary: launcher, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	r.d = drv.(*Driver)
	r.files.kernel, r.files.initrd, r.files.disk = filepath.Join(dir, "vmlinux"), filepath.Join(dir, "initrd.img"), filepath.Join(dir, "rootfs.ext4")
	for _, f := range []string{r.files.kernel, r.files.initrd, r.files.disk} {
		os.WriteFile(f, []byte("contents of "+f), 0o600)
	}
	return r
}

func (r *rig) config(id string) vmm.Config {
	dir := filepath.Join(r.t.TempDir(), id)
	os.Mkdir(dir, 0o700)
	return vmm.Config{
		ID: id, Dir: dir, Kernel: r.files.kernel, Initrd: r.files.initrd, Disk: r.files.disk,
		VCPUs: 2, MemoryMiB: 32, // the stand-in hashes all of it at every snapshot and load KernelArgs: []string{"wrenn.hostname=" + id},
		Net: &vmm.NetConfig{TAP: "tap0", MAC: "02:fc:00:00:00:01",
			GuestIP: netip.MustParsePrefix("169.254.0.21/30"), Gateway: netip.MustParseAddr("169.254.0.22")},
		DiskRate: vmm.RateLimit{BytesPerSec: 256 << 20, OpsPerSec: 8000},
		Metadata: map[string]string{"envID": "base"},
	}
}

// calls returns the journal's "METHOD /path" lines of one stand-in process, and fails
// the test on any request the stand-in refused.
func (r *rig) calls(pid int) []string {
	r.t.Helper()
	entries, err := fcstandin.ReadJournal(r.journal)
	if err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.Pid != pid {
			continue
		}
		if e.Fault != "" || e.Status >= 400 {
			r.t.Errorf("stand-in refused %s %s (%d): %s", e.Method, e.Path, e.Status, e.Fault)
		}
		out = append(out, e.Method+" "+e.Path)
	}
	return out
}

func TestBootPauseSnapshotRestoreAgainstTheSpec(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	cfg := r.config("vm-a")
	m, err := r.d.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop(context.Background())
	pid := m.PID()
	snapFull, snapDiff := t.TempDir(), t.TempDir()
	mustDo(t, m.Pause(ctx))
	sm := m.(vmm.Snapshotter)
	if _, err := sm.Snapshot(ctx, vmm.SnapshotOptions{Dir: snapFull}); err != nil {
		t.Fatal(err)
	}
	mustDo(t, m.Resume(ctx))
	if _, err := sm.Snapshot(ctx, vmm.SnapshotOptions{Dir: t.TempDir()}); !errors.Is(err, vmm.ErrNotPaused) {
		t.Fatalf("snapshot of a running vm: %v", err)
	}
	mustDo(t, m.Pause(ctx))
	if _, err := sm.Snapshot(ctx, vmm.SnapshotOptions{Dir: t.TempDir(), Kind: vmm.SnapshotDiff, Parent: t.TempDir()}); err == nil {
		t.Fatal("a diff on a snapshot other than the vm's base was taken")
	}
	diff, err := sm.Snapshot(ctx, vmm.SnapshotOptions{Dir: snapDiff, Kind: vmm.SnapshotDiff, Parent: m.(vmm.Differ).DiffBase()})
	if err != nil {
		t.Fatal(err)
	}
	full, _ := memfile.ReadHeader(snapFull)
	h, err := memfile.ReadHeader(snapDiff)
	if err != nil || len(h.Gens) != 2 || diff.Written >= int64(full.StoredBytes()) {
		t.Fatalf("diff: %d generations, wrote %d bytes (full stored %d): %v", len(h.Gens), diff.Written, full.StoredBytes(), err)
	}
	mustDo(t, m.Stop(ctx))

	want := []string{
		"GET /", "PUT /machine-config", "PUT /boot-source", "PUT /drives/rootfs",
		"PUT /network-interfaces/eth0", "PUT /mmds/config", "PUT /entropy", "PUT /mmds",
		"PUT /actions", "PATCH /vm", "GET /", "PUT /snapshot/create", "PATCH /vm", "GET /",
		"PATCH /vm", "GET /", "PUT /snapshot/create",
	}
	if got := r.calls(pid); !slices.Equal(got, want) {
		t.Fatalf("requests:\n got %q\nwant %q", got, want)
	}

	// Restore the diff chain into another VM: the stand-in loads with the Uffd
	// backend, does the real handshake and reads every page of its memory through
	// the driver's handler, refusing the load if any byte differs from the memory it
	// had when the diff was taken.
	cfg2 := r.config("vm-b")
	m2, err := r.d.Restore(ctx, cfg2, snapDiff)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Stop(context.Background())
	mustDo(t, m2.Resume(ctx))
	want2 := []string{"GET /", "PUT /snapshot/load", "PUT /mmds", "PATCH /vm"}
	if got := r.calls(m2.PID()); !slices.Equal(got, want2) {
		t.Fatalf("restore requests:\n got %q\nwant %q", got, want2)
	}
	st := pagerStats(t, m2)
	if st.Faults == 0 {
		t.Fatalf("no faults served: %+v", st)
	}
	// Pause cycles as the agent runs them: a diff on the VM's own base, then a
	// restore from it. Each load is checked byte for byte by the stand-in. The
	// chain grows a generation per cycle until the stand-in's guest (which dirties a
	// fifth of its pages per run, in a cycle of five) has rewritten every page of
	// the oldest, which then drops out (memfile's tests cover merging at 10).
	prev, machine := snapDiff, m2
	maxGens := 0
	for i := range 6 {
		base := machine.(vmm.Differ).DiffBase()
		if base == "" {
			t.Fatalf("cycle %d: no diff base", i)
		}
		mustDo(t, machine.Pause(ctx))
		next := t.TempDir()
		if _, err := machine.(vmm.Snapshotter).Snapshot(ctx, vmm.SnapshotOptions{Dir: next, Kind: vmm.SnapshotDiff, Parent: base}); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if len(readPrefetch(next)) == 0 {
			t.Fatalf("cycle %d: no prefetch list saved", i)
		}
		mustDo(t, machine.Stop(ctx))
		os.RemoveAll(prev) // as the agent removes a spent snapshot: the next one stands alone
		h, err := memfile.ReadHeader(next)
		if err != nil {
			t.Fatal(err)
		}
		maxGens = max(maxGens, len(h.Gens))
		if machine, err = r.d.Restore(ctx, r.config("vm-c"), next); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if st := pagerStats(t, machine); st.Prefetched+st.Faults == 0 {
			t.Fatalf("cycle %d: restore served nothing: %+v", i, st)
		}
		mustDo(t, machine.Resume(ctx))
		prev = next
	}
	mustDo(t, machine.Stop(ctx))
	if maxGens < 4 {
		t.Fatalf("the diff chain reached only %d generations", maxGens)
	}
}

func TestFaultMessagesBecomeErrors(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	m, err := r.d.Start(ctx, r.config("vm-err"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop(context.Background())
	// Machine configuration after boot is refused by Firecracker's rules.
	err = m.(*Machine).api.do(ctx, "PUT", "/machine-config", machineConfig{VCPUCount: 1, MemSizeMiB: 128}, nil)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 400 || apiErr.Fault == "" {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(err.Error(), "PUT /machine-config") || !strings.Contains(err.Error(), apiErr.Fault) {
		t.Fatalf("error does not say what failed: %v", err)
	}
	mustDo(t, m.Stop(ctx))
	if err := m.Pause(ctx); !errors.Is(err, vmm.ErrNotRunning) {
		t.Fatalf("pause after stop: %v", err)
	}
}

func TestRestoreRefusesAnotherShape(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	m, err := r.d.Start(ctx, r.config("vm-s"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop(context.Background())
	snap := t.TempDir()
	mustDo(t, m.Pause(ctx))
	if _, err := m.(vmm.Snapshotter).Snapshot(ctx, vmm.SnapshotOptions{Dir: snap}); err != nil {
		t.Fatal(err)
	}
	mustDo(t, m.Stop(ctx))
	cfg := r.config("vm-t")
	cfg.VCPUs = 1
	if _, err := r.d.Restore(ctx, cfg, snap); !errors.Is(err, vmm.ErrIncompatibleSnapshot) {
		t.Fatalf("restore with another vcpu count: %v", err)
	}
	if ents, _ := os.ReadDir(cfg.Dir); len(ents) > 1 { // the console log may stay
		t.Fatalf("failed restore left %v", ents)
	}
	if _, err := r.d.Start(ctx, vmm.Config{ID: "Bad ID"}); err == nil {
		t.Fatal("bad config accepted")
	}
}

// pagerStats asks a lazily restored VM's page server what it served.
func pagerStats(t *testing.T, m vmm.Machine) pagerproc.Report {
	t.Helper()
	st, err := pagerproc.Status(t.Context(), filepath.Join(m.(*Machine).dir, pagerCtlName))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
