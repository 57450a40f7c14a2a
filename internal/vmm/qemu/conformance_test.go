package qemu

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/vmm"
	"github.com/wrennhq/wrenn/internal/vmm/vmmtest"
)

// The driver-independent conformance suite, once against the fake QEMU (this test
// binary speaking QMP) and once against real QEMU booting a guest when this host can.

func TestConformanceFake(t *testing.T) {
	_, bin := fakeDriver(t)
	n := 0
	config := func(prefix string) func(t *testing.T) vmm.Config {
		return func(t *testing.T) vmm.Config {
			n++
			cfg := testFiles(t)
			cfg.ID = fmt.Sprintf("%s-%d", prefix, n)
			return cfg
		}
	}
	vmmtest.Run(t, vmmtest.Harness{
		New: func(t *testing.T) vmm.Driver {
			d := New(Options{Binary: bin, StartTimeout: 2 * time.Second})
			d.kvmUsable = func() bool { return false }
			d.tscKHz = func() int64 { return 2096010 }
			return d
		},
		Config:        config("fake-ok"),
		FailingConfig: config("fake-exit"), // the fake prints an error and exits 1
		Timeout:       10 * time.Second,
	})
}

func TestConformanceReal(t *testing.T) {
	requireQEMU(t)
	kernel, initrd := testKernel(t), testInitramfs(t)
	n := 0
	vmmtest.Run(t, vmmtest.Harness{
		New: func(t *testing.T) vmm.Driver { return New(Options{}) },
		Config: func(t *testing.T) vmm.Config {
			n++
			return vmm.Config{ID: fmt.Sprintf("conf-%d", n), Dir: t.TempDir(), Kernel: kernel, Initrd: initrd, VCPUs: 1, MemoryMiB: 256,
				KernelArgs: counterArgs}
		},
		FailingConfig: func(t *testing.T) vmm.Config {
			bad := filepath.Join(t.TempDir(), "vmlinux")
			if err := os.WriteFile(bad, []byte("this is not a kernel"), 0o600); err != nil {
				t.Fatal(err)
			}
			return vmm.Config{ID: "conf-bad-kernel", Dir: t.TempDir(), Kernel: bad, VCPUs: 1, MemoryMiB: 256}
		},
		// A new tick on the console: the guest runs, whether it just booted or was
		// restored (its console then continues the snapshotted VM's or starts
		// empty, and shows no boot).
		Ready:   func(t *testing.T, m vmm.Machine) { waitNewTick(t, m.ConsoleLog(), bootTimeout) },
		Timeout: bootTimeout,
	})
}
