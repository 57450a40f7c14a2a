package drivers

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/wrennhq/wrenn/internal/vmm"
	"github.com/wrennhq/wrenn/internal/vmm/firecracker"
)

func TestDefault(t *testing.T) {
	r := Default()
	if got := strings.Join(r.Names(), ","); got != "firecracker,qemu" {
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
	if !errors.Is(err, vmm.ErrUnknownDriver) || !strings.Contains(err.Error(), "auto, firecracker, qemu") {
		t.Errorf("open xen: %v", err)
	}
	d, err = Open("auto", vmm.Options{})
	if _, lerr := exec.LookPath("qemu-system-x86_64"); lerr != nil {
		if err == nil || !strings.Contains(err.Error(), "qemu binary") {
			t.Errorf("auto without qemu installed: %v", err)
		}
		return
	}
	want := "qemu"
	if firecracker.Usable(vmm.Options{}) == nil {
		want = "firecracker"
	}
	if err != nil || d.Name() != want {
		t.Errorf("auto: %v, %v (want %s)", d, err, want)
	}
	if _, err := Open("firecracker", vmm.Options{Accel: "tcg"}); err == nil {
		t.Error("firecracker opened with tcg")
	}
	if _, err := Open("auto", vmm.Options{Binary: "/nonexistent/qemu"}); err == nil || !strings.Contains(err.Error(), "none usable") {
		t.Errorf("auto with a missing binary: %v", err)
	}
}
