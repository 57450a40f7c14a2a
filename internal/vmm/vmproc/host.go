package vmproc

import (
	"os"
	"runtime"
)

// KVMUsable reports whether hardware KVM can run a stock guest kernel here. /dev/kvm
// alone is not enough: a host with only kvm_pvm (nested "PVM") exposes /dev/kvm but
// cannot run an unmodified kernel, so the Intel or AMD hardware module must be loaded
// too (DESIGN.md §3, §9).
func KVMUsable() bool {
	if runtime.GOARCH != "amd64" {
		return false
	}
	hw := false
	for _, m := range []string{"/sys/module/kvm_intel", "/sys/module/kvm_amd"} {
		if _, err := os.Stat(m); err == nil {
			hw = true
			break
		}
	}
	if !hw {
		return false
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}
