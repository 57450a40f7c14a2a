package agenttest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/wrennhq/wrenn/internal/envd/envdapi"
	"github.com/wrennhq/wrenn/internal/envd/envdtest"
	"github.com/wrennhq/wrenn/internal/vmm"
)

// DriverName is the name the fake driver reports (and records in sandbox records).
const DriverName = "fake"

// Driver is a vmm.Driver whose machines are envd processes on the slot's host address.
type Driver struct {
	// EnvdBin is the envd binary (envdtest.Binary).
	EnvdBin string
	Slots   *Slots

	mu sync.Mutex
	// OnStart, when set, runs at the start of every Start; an error fails the start.
	// Tests block in it to hold a create inside the driver.
	OnStart func(ctx context.Context, cfg vmm.Config) error
	// OnStop, when set, runs at the start of every Machine.Stop.
	OnStop func(ctx context.Context) error
	// started holds every machine started, by sandbox directory, so that a second
	// manager on the same WRENN_DIR (an agent restart in a test) can adopt the VMs
	// that still run, as a real driver does.
	started map[string]*machine
}

// Name is DriverName.
func (d *Driver) Name() string { return DriverName }

func (d *Driver) hooks() (func(context.Context, vmm.Config) error, func(context.Context) error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.OnStart, d.OnStop
}

// SetHooks replaces OnStart and OnStop (safe while the driver is in use).
func (d *Driver) SetHooks(onStart func(context.Context, vmm.Config) error, onStop func(context.Context) error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.OnStart, d.OnStop = onStart, onStop
}

// Start launches envd on the host address of the slot whose namespace cfg names.
func (d *Driver) Start(ctx context.Context, cfg vmm.Config) (vmm.Machine, error) {
	if onStart, _ := d.hooks(); onStart != nil {
		if err := onStart(ctx, cfg); err != nil {
			return nil, err
		}
	}
	m, err := d.launch(cfg)
	if err != nil {
		return nil, err // not a nil *machine in a non-nil vmm.Machine
	}
	return m, nil
}

func (d *Driver) launch(cfg vmm.Config) (*machine, error) {
	if cfg.Net == nil {
		return nil, fmt.Errorf("agenttest: vm %s has no network", cfg.ID)
	}
	host, ok := d.Slots.hostAddr(cfg.Net.NetNS)
	if !ok {
		return nil, fmt.Errorf("agenttest: no slot has namespace %s", cfg.Net.NetNS)
	}
	addr := netip.AddrPortFrom(host, envdapi.Port).String()
	// An envd already answering there (a VM some test left running) would take this
	// VM's requests; fail the start plainly instead.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("agenttest: vm %s: its address is taken: %w", cfg.ID, err)
	}
	ln.Close()
	e, err := envdtest.Launch(d.EnvdBin, filepath.Join(cfg.Dir, "guest"), addr)
	if err != nil {
		return nil, err
	}
	m := &machine{d: d, e: e, console: filepath.Join(cfg.Dir, vmm.ConsoleLogName), cfg: cfg, guestDir: filepath.Join(cfg.Dir, "guest")}
	d.mu.Lock()
	if d.started == nil {
		d.started = map[string]*machine{}
	}
	d.started[cfg.Dir] = m
	d.mu.Unlock()
	return m, nil
}

// Adopt returns the machine this driver started for the sandbox in dir while it still
// runs: envd processes live as long as the test, so only a manager started again
// within the test finds any.
func (d *Driver) Adopt(_ context.Context, dir string) (vmm.Machine, error) {
	d.mu.Lock()
	m, ok := d.started[dir]
	d.mu.Unlock()
	if !ok {
		return nil, vmm.ErrNotRunning
	}
	select {
	case <-m.Done():
		return nil, vmm.ErrNotRunning
	default:
		return m, nil
	}
}

type machine struct {
	d        *Driver
	e        *envdtest.Envd
	console  string
	cfg      vmm.Config
	guestDir string

	mu     sync.Mutex
	paused bool
}

func (m *machine) PID() int              { return m.e.PID }
func (m *machine) Done() <-chan struct{} { return m.e.Done() }
func (m *machine) Err() error            { return m.e.Err() }

// Pause and Resume freeze and thaw the envd process, as vCPUs are stopped.
func (m *machine) Pause(context.Context) error  { return m.signal(syscall.SIGSTOP, true) }
func (m *machine) Resume(context.Context) error { return m.signal(syscall.SIGCONT, false) }

func (m *machine) signal(sig syscall.Signal, paused bool) error {
	select {
	case <-m.Done():
		return vmm.ErrNotRunning
	default:
	}
	if err := syscall.Kill(m.e.PID, sig); err != nil {
		return err
	}
	m.mu.Lock()
	m.paused = paused
	m.mu.Unlock()
	return nil
}

func (m *machine) Stop(ctx context.Context) error {
	if _, onStop := m.d.hooks(); onStop != nil {
		if err := onStop(ctx); err != nil {
			return err
		}
	}
	return m.terminate()
}

// terminate ends the envd process, paused or not.
func (m *machine) terminate() error {
	_ = syscall.Kill(m.e.PID, syscall.SIGCONT) // a paused process cannot handle SIGTERM
	return m.e.Stop()
}

// ConsoleLog writes what envd printed so far to the VM's console log and returns it.
func (m *machine) ConsoleLog() string {
	_ = os.WriteFile(m.console, []byte(m.e.Logs()), 0o600)
	return m.console
}

// stopAll stops every machine this driver started that still runs. The harness calls
// it when its test ends: a VM no manager tracks any more (one a test abandoned, or
// kept in the error state without adopting it) would otherwise keep its address
// after the harness frees its block, and answer for the next harness's sandbox there.
func (d *Driver) stopAll() {
	d.mu.Lock()
	machines := make([]*machine, 0, len(d.started))
	for _, m := range d.started {
		machines = append(machines, m)
	}
	d.mu.Unlock()
	for _, m := range machines {
		select {
		case <-m.Done():
		default:
			_ = m.terminate()
		}
	}
}

// FailNextStart makes the next Start fail with err (and later ones succeed), as a host
// out of disk or memory fails a VM start. It replaces OnStart.
func (d *Driver) FailNextStart(err error) {
	var once sync.Once
	d.mu.Lock()
	defer d.mu.Unlock()
	d.OnStart = func(context.Context, vmm.Config) error {
		var fail error
		once.Do(func() { fail = err })
		return fail
	}
}
