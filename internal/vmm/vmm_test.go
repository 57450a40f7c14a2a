package vmm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type testDriver struct{ name string }

func (d testDriver) Name() string { return d.name }
func (d testDriver) Start(context.Context, Config) (Machine, error) {
	return nil, errors.New("not implemented")
}
func (d testDriver) Adopt(context.Context, string) (Machine, error) { return nil, ErrNotRunning }

func TestRegistry(t *testing.T) {
	ctor := func(name string) Constructor {
		return func(Options) (Driver, error) { return testDriver{name}, nil }
	}
	var r Registry
	if _, err := r.Open("auto", Options{}); err == nil {
		t.Error("auto on an empty registry succeeded")
	}
	fcUsable := errors.New("no /dev/kvm")
	if err := r.Register(Registration{Name: "firecracker", New: ctor("firecracker"), Usable: func(Options) error { return fcUsable }}); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(Registration{Name: "qemu", New: ctor("qemu")}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Registration{{Name: "qemu", New: ctor("qemu")}, {Name: "auto", New: ctor("x")}, {Name: "x"}} {
		if err := r.Register(bad); err == nil {
			t.Errorf("registered %q twice, as auto or without constructor", bad.Name)
		}
	}
	if d, err := r.Open("", Options{}); err != nil || d.Name() != "qemu" {
		t.Errorf("auto without kvm: %v, %v", d, err)
	}
	fcUsable = nil
	if d, err := r.Open("auto", Options{}); err != nil || d.Name() != "firecracker" {
		t.Errorf("auto with kvm: %v, %v", d, err)
	}
	if d, err := r.Open("qemu", Options{}); err != nil || d.Name() != "qemu" {
		t.Errorf("open qemu: %v, %v", d, err)
	}
	_, err := r.Open("xen", Options{})
	if !errors.Is(err, ErrUnknownDriver) || !strings.Contains(err.Error(), "auto, firecracker, qemu") {
		t.Errorf("unknown driver: %v", err)
	}
}

func TestCheckCompatible(t *testing.T) {
	base := SnapshotMeta{
		Format: SnapshotMetaFormat, VMM: "qemu", VMMVersion: "7.2.0", Kind: SnapshotFull,
		KernelSHA256: "aa", InitrdSHA256: "bb", VCPUs: 2, MemoryMiB: 512,
		MachineArgs: []string{"-M", "microvm", "-accel", "tcg"},
	}
	want := base
	want.Kind, want.Parent = SnapshotDiff, "/elsewhere" // not part of compatibility
	if err := CheckCompatible(base, want); err != nil {
		t.Fatalf("identical metas: %v", err)
	}
	for name, change := range map[string]func(*SnapshotMeta){
		`vmm "qemu"`:          func(m *SnapshotMeta) { m.VMM = "firecracker" },
		`vmm version "7.2.0"`: func(m *SnapshotMeta) { m.VMMVersion = "8.0.0" },
		"kernel sha256":       func(m *SnapshotMeta) { m.KernelSHA256 = "cc" },
		"initrd sha256":       func(m *SnapshotMeta) { m.InitrdSHA256 = "" },
		`vcpus "2"`:           func(m *SnapshotMeta) { m.VCPUs = 1 },
		"memory MiB":          func(m *SnapshotMeta) { m.MemoryMiB = 256 },
		"machine args":        func(m *SnapshotMeta) { m.MachineArgs = []string{"-M", "microvm", "-accel", "kvm"} },
	} {
		w := base
		change(&w)
		err := CheckCompatible(base, w)
		if !errors.Is(err, ErrIncompatibleSnapshot) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s changed: %v", name, err)
		}
	}
	old := base
	old.Format = 0
	if err := CheckCompatible(old, base); !errors.Is(err, ErrIncompatibleSnapshot) {
		t.Errorf("meta of another format: %v", err)
	}
}

func TestSnapshotMetaFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadSnapshotMeta(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("read from an empty dir: %v", err)
	}
	m := SnapshotMeta{VMM: "qemu", Files: []SnapshotFile{{Role: FileMemory, Name: "mem", Size: 4096}}}
	if err := WriteSnapshotMeta(dir, m); err != nil {
		t.Fatal(err)
	}
	got, err := ReadSnapshotMeta(dir)
	if err != nil || got.Format != SnapshotMetaFormat || got.VMM != "qemu" || len(got.Files) != 1 {
		t.Fatalf("read back %+v, %v", got, err)
	}
	s := Snapshot{Dir: dir, Meta: got}
	if f, ok := s.File(FileMemory); !ok || f.Name != "mem" {
		t.Errorf("File(memory) = %+v, %v", f, ok)
	}
	k := filepath.Join(dir, "k")
	os.WriteFile(k, []byte("abc"), 0o600)
	if h, err := FileSHA256(k); err != nil || h != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("FileSHA256 = %q, %v", h, err)
	}
	if h, err := FileSHA256(""); err != nil || h != "" {
		t.Errorf(`FileSHA256("") = %q, %v`, h, err)
	}
}

func TestCheckCompatibleTSC(t *testing.T) {
	base := SnapshotMeta{Format: SnapshotMetaFormat, VMM: "qemu", TSCKHz: 2_096_010}
	for _, c := range []struct {
		host int64
		ok   bool
	}{
		{2_096_010, true},
		{2_095_998, true}, // the same host after a reboot: a few ppm
		{0, true},         // unknown on this host
		{2_097_000, true}, // 472 ppm
		{2_100_000, false},
		{3_000_000, false},
	} {
		want := base
		want.TSCKHz = c.host
		err := CheckCompatible(base, want)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrIncompatibleSnapshot)) {
			t.Errorf("host tsc %d kHz: %v, want ok=%v", c.host, err, c.ok)
		}
	}
	unknown := base
	unknown.TSCKHz = 0
	if err := CheckCompatible(unknown, base); err != nil {
		t.Errorf("snapshot without tsc: %v", err)
	}
}
