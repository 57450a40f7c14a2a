// Package drivers builds the registry of every VMM driver compiled into Wrenn, so that
// cmd/wrenn (and tests) open drivers by name — the name each sandbox's record keeps —
// without internal/vmm importing its own implementations.
package drivers

import (
	"github.com/wrennhq/wrenn/internal/vmm"
	"github.com/wrennhq/wrenn/internal/vmm/firecracker"
	"github.com/wrennhq/wrenn/internal/vmm/qemu"
)

// Default returns a new registry with every driver of this build, in auto-selection
// order. Firecracker is registered before qemu: auto picks it where its binary and a
// KVM that runs stock kernels exist, and qemu everywhere else.
func Default() *vmm.Registry {
	r := &vmm.Registry{}
	must(r.Register(vmm.Registration{Name: firecracker.Name, New: firecracker.Open, Usable: firecracker.Usable}))
	must(r.Register(vmm.Registration{Name: qemu.Name, New: qemu.Open, Usable: qemu.Usable}))
	return r
}

// Open opens a driver by name ("auto", "firecracker", "qemu") from the Default registry.
func Open(name string, opts vmm.Options) (vmm.Driver, error) {
	return Default().Open(name, opts)
}

func must(err error) {
	if err != nil {
		panic(err) // a programming error in the list above, caught by the tests
	}
}
