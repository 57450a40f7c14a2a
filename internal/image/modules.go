package image

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// moduleWant is a kernel module the initramfs loads. Debian's cloud kernel builds virtio and
// virtio_blk as modules but ext4 in; other kernels differ, so every want is resolved against
// modules.builtin and the .ko files the package ships.
type moduleWant struct {
	name     string
	required bool // the guest cannot boot without it (built in or as a module)
	mayFail  bool // loading is allowed to fail (ptp_kvm needs a KVM host)
}

// wantedModules lists, in load order, what the guest needs: the measured order from the QEMU
// notes, ptp_kvm (/dev/ptp0 for chrony on KVM hosts), virtio_rng (entropy when the VMM
// offers a virtio-rng device) and ext4 for kernels that build it as a module. Dependencies
// not listed are found through each module's modinfo and loaded first.
func wantedModules() []moduleWant {
	return []moduleWant{
		{name: "virtio_ring", required: true},
		{name: "virtio", required: true},
		{name: "virtio_mmio", required: true},
		{name: "virtio_pci_legacy_dev"},
		{name: "virtio_pci_modern_dev"},
		{name: "virtio_pci"},
		{name: "virtio_blk", required: true},
		{name: "failover"},
		{name: "net_failover"},
		{name: "virtio_net", required: true},
		{name: "vsock"},
		{name: "vmw_vsock_virtio_transport_common"},
		{name: "vmw_vsock_virtio_transport"},
		{name: "virtio_rng"},
		{name: "ptp_kvm", mayFail: true},
		{name: "ext4", required: true},
	}
}

// Module is one kernel module copied into a kernel directory, in load order.
type Module struct {
	Name    string   `json:"name"`
	File    string   `json:"file"` // relative to the kernel directory: modules/NAME.ko
	Depends []string `json:"depends,omitempty"`
	MayFail bool     `json:"may_fail,omitempty"`
}

// moduleTree indexes the modules of one extracted kernel package.
type moduleTree struct {
	files   map[string]string // module name → path of its .ko[.xz|.zst|.gz]
	builtin map[string]bool
}

// modName normalises a module file name the way the kernel does (dashes become underscores).
func modName(file string) string {
	base := filepath.Base(file)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		base = strings.TrimSuffix(base, ext)
	}
	return strings.ReplaceAll(strings.TrimSuffix(base, ".ko"), "-", "_")
}

// readModuleTree indexes lib/modules/VERSION of an extracted kernel package.
func readModuleTree(modDir string) (*moduleTree, error) {
	t := &moduleTree{files: map[string]string{}, builtin: map[string]bool{}}
	if data, err := os.ReadFile(filepath.Join(modDir, "modules.builtin")); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			if line := strings.TrimSpace(sc.Text()); line != "" {
				t.builtin[modName(line)] = true
			}
		}
	} else if !os.IsNotExist(err) {
		return nil, fmt.Errorf("read modules.builtin: %w", err)
	}
	err := filepath.WalkDir(filepath.Join(modDir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.Contains(d.Name(), ".ko") {
			t.files[modName(d.Name())] = p
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("index kernel modules in %s: %w", modDir, err)
	}
	return t, nil
}

// resolve returns the modules to load, dependencies first, with each module's uncompressed
// bytes. Built-in wants are skipped; a required want that is neither built in nor shipped is
// an error.
func (t *moduleTree) resolve(ctx context.Context, wants []moduleWant) ([]Module, map[string][]byte, error) {
	var order []Module
	data := map[string][]byte{}
	state := map[string]int{} // 1 = visiting, 2 = done
	var visit func(name string, mayFail bool, chain []string) error
	visit = func(name string, mayFail bool, chain []string) error {
		switch state[name] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("module dependency cycle: %s", strings.Join(append(chain, name), " → "))
		}
		state[name] = 1
		ko, err := t.load(ctx, name)
		if err != nil {
			return err
		}
		deps, err := moduleDepends(ko)
		if err != nil {
			return fmt.Errorf("read modinfo of %s: %w", name, err)
		}
		for _, d := range deps {
			if t.builtin[d] {
				continue
			}
			if _, ok := t.files[d]; !ok {
				return fmt.Errorf("module %s depends on %s, which the kernel package does not ship", name, d)
			}
			if err := visit(d, mayFail, append(chain, name)); err != nil {
				return err
			}
		}
		state[name] = 2
		data[name] = ko
		order = append(order, Module{Name: name, File: "modules/" + name + ".ko", Depends: deps, MayFail: mayFail})
		return nil
	}
	for _, w := range wants {
		if t.builtin[w.name] {
			continue
		}
		if _, ok := t.files[w.name]; !ok {
			if w.required {
				return nil, nil, fmt.Errorf("kernel has %s neither built in nor as a module; the guest cannot boot with it", w.name)
			}
			continue
		}
		if err := visit(w.name, w.mayFail, nil); err != nil {
			return nil, nil, err
		}
	}
	return order, data, nil
}

// load returns a module's ELF bytes, decompressing .ko.gz/.xz/.zst (busybox insmod takes
// plain .ko files only).
func (t *moduleTree) load(ctx context.Context, name string) ([]byte, error) {
	p := t.files[name]
	raw, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", name, err)
	}
	switch {
	case strings.HasSuffix(p, ".ko"):
		return raw, nil
	case strings.HasSuffix(p, ".ko.gz"):
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("decompress module %s: %w", name, err)
		}
		out, err := io.ReadAll(zr)
		if err != nil {
			return nil, fmt.Errorf("decompress module %s: %w", name, err)
		}
		return out, nil
	case strings.HasSuffix(p, ".ko.xz"):
		return decompressCLI(ctx, "xz", "xz-utils", raw, "-dc")
	case strings.HasSuffix(p, ".ko.zst"):
		return decompressCLI(ctx, "zstd", "zstd", raw, "-dcq")
	}
	return nil, fmt.Errorf("module %s: unknown file type %s", name, filepath.Base(p))
}

// moduleDepends reads "depends=" from a module's .modinfo section (modules.dep is generated
// by depmod at install time, so the .deb does not ship it).
func moduleDepends(ko []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, nil
	}
	info, err := sec.Data()
	if err != nil {
		return nil, err
	}
	var deps []string
	for _, kv := range bytes.Split(info, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			for _, d := range strings.Split(string(v), ",") {
				if d = strings.TrimSpace(d); d != "" {
					deps = append(deps, strings.ReplaceAll(d, "-", "_"))
				}
			}
		}
	}
	return deps, nil
}

// configValue returns a kernel config symbol's value ("y", "m", "" when unset).
func configValue(config []byte, sym string) string {
	prefix := []byte(sym + "=")
	for _, line := range bytes.Split(config, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, prefix); ok {
			return strings.Trim(string(v), `"`)
		}
	}
	return ""
}
