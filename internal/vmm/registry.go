package vmm

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// Options are what every driver constructor takes. Zero values mean the driver's
// defaults.
type Options struct {
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Binary overrides the VMM executable (a path, or a name looked up in PATH).
	Binary string
	// Accel is "auto" (default), "kvm" or "tcg". A driver that has only one
	// accelerator refuses the others.
	Accel string
	// StartTimeout bounds spawn → VMM API ready.
	StartTimeout time.Duration
}

// Constructor makes a driver; it checks opts but probes nothing expensive.
type Constructor func(Options) (Driver, error)

// Registration is one driver kind in a Registry.
type Registration struct {
	// Name is what Driver.Name returns and what sandbox records store.
	Name string
	New  Constructor
	// Usable says whether the driver can run VMs on this host with opts (binary
	// present, KVM usable, …): nil when it can, else why not. Auto selection
	// skips drivers that are not usable. nil means always usable.
	Usable func(Options) error
}

// Auto is the driver name that picks the first usable registered driver.
const Auto = "auto"

// Registry maps driver names to constructors. Build one explicitly (the drivers
// package's Default registers every driver in this build) rather than relying on
// package state; a Registry is not safe for concurrent Register calls.
type Registry struct {
	regs []Registration // in preference order for Auto
}

// Register adds a driver kind. Drivers registered earlier are preferred by Auto
// (register firecracker before qemu). A duplicate or reserved name is an error.
func (r *Registry) Register(reg Registration) error {
	if reg.Name == "" || reg.Name == Auto || reg.New == nil {
		return fmt.Errorf("register vmm driver %q: needs a name other than %q and a constructor", reg.Name, Auto)
	}
	if slices.ContainsFunc(r.regs, func(x Registration) bool { return x.Name == reg.Name }) {
		return fmt.Errorf("register vmm driver %q: already registered", reg.Name)
	}
	r.regs = append(r.regs, reg)
	return nil
}

// Names lists the registered driver names in preference order.
func (r *Registry) Names() []string {
	names := make([]string, len(r.regs))
	for i, reg := range r.regs {
		names[i] = reg.Name
	}
	return names
}

// ErrUnknownDriver is matched by Open's error for a name nobody registered.
var ErrUnknownDriver = errors.New("unknown vmm driver")

// Open makes the driver called name, or for "auto" (or "") the first registered
// driver that is usable on this host. An unknown name is an error listing the known
// ones; a named driver is made even if Usable says no (its Start then explains).
func (r *Registry) Open(name string, opts Options) (Driver, error) {
	if name == "" || name == Auto {
		return r.auto(opts)
	}
	for _, reg := range r.regs {
		if reg.Name == name {
			d, err := reg.New(opts)
			if err != nil {
				return nil, fmt.Errorf("open vmm driver %s: %w", name, err)
			}
			return d, nil
		}
	}
	return nil, fmt.Errorf("%w %q: known drivers are %s", ErrUnknownDriver, name,
		strings.Join(append([]string{Auto}, r.Names()...), ", "))
}

// Unusable lists, as "name: why", the registered drivers that cannot run on this
// host with opts: what auto skipped, for the agent to say at start.
func (r *Registry) Unusable(opts Options) []string {
	var why []string
	for _, reg := range r.regs {
		if reg.Usable != nil {
			if err := reg.Usable(opts); err != nil {
				why = append(why, reg.Name+": "+err.Error())
			}
		}
	}
	return why
}

func (r *Registry) auto(opts Options) (Driver, error) {
	var why []string
	for _, reg := range r.regs {
		if reg.Usable != nil {
			if err := reg.Usable(opts); err != nil {
				why = append(why, reg.Name+": "+err.Error())
				continue
			}
		}
		d, err := reg.New(opts)
		if err != nil {
			return nil, fmt.Errorf("open vmm driver %s (auto): %w", reg.Name, err)
		}
		return d, nil
	}
	if len(why) == 0 {
		return nil, errors.New("open vmm driver auto: no drivers registered")
	}
	return nil, fmt.Errorf("open vmm driver auto: none usable on this host (%s)", strings.Join(why, "; "))
}
