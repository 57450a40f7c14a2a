package drivers

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/wrennhq/wrenn/internal/vmm"
)

func TestDefault(t *testing.T) {
	r := Default()
	if got := strings.Join(r.Names(), ","); got != "qemu" {
		t.Errorf("drivers %q", got)
	}
	d, err := Open("qemu", vmm.Options{})
	if err != nil || d.Name() != "qemu" {
		t.Fatalf("open qemu: %v, %v", d, err)
	}
	if _, err := Open("qemu", vmm.Options{Accel: "hvf"}); err == nil || !strings.Contains(err.Error(), "hvf") {
		t.Errorf("open qemu with a bad accel: %v", err)
	}
	_, err = Open("xen", vmm.Options{})
	if !errors.Is(err, vmm.ErrUnknownDriver) || !strings.Contains(err.Error(), "auto, qemu") {
		t.Errorf("open xen: %v", err)
	}
	d, err = Open("auto", vmm.Options{})
	if _, lerr := exec.LookPath("qemu-system-x86_64"); lerr != nil {
		if err == nil || !strings.Contains(err.Error(), "qemu binary") {
			t.Errorf("auto without qemu installed: %v", err)
		}
		return
	}
	if err != nil || d.Name() != "qemu" {
		t.Errorf("auto: %v, %v", d, err)
	}
	if _, err := Open("auto", vmm.Options{Binary: "/nonexistent/qemu"}); err == nil || !strings.Contains(err.Error(), "none usable") {
		t.Errorf("auto with a missing binary: %v", err)
	}
}
