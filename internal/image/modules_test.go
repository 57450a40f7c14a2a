package image

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fakeKO returns a minimal relocatable ELF whose .modinfo says name= and depends=.
func fakeKO(name, depends string) []byte {
	le := binary.LittleEndian
	modinfo := []byte("license=GPL\x00depends=" + depends + "\x00name=" + name + "\x00")
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	dataOff := 64
	strOff := dataOff + len(modinfo)
	shOff := (strOff + len(shstr) + 7) &^ 7
	out := make([]byte, shOff+3*64)
	copy(out, "\x7fELF\x02\x01\x01")
	le.PutUint16(out[16:], 1)  // ET_REL
	le.PutUint16(out[18:], 62) // EM_X86_64
	le.PutUint32(out[20:], 1)
	le.PutUint64(out[40:], uint64(shOff))
	le.PutUint16(out[52:], 64)
	le.PutUint16(out[58:], 64) // e_shentsize
	le.PutUint16(out[60:], 3)  // e_shnum
	le.PutUint16(out[62:], 2)  // e_shstrndx
	copy(out[dataOff:], modinfo)
	copy(out[strOff:], shstr)
	sec := func(i int, nameOff, typ uint32, off, size int) {
		s := out[shOff+i*64:]
		le.PutUint32(s[0:], nameOff)
		le.PutUint32(s[4:], typ)
		le.PutUint64(s[24:], uint64(off))
		le.PutUint64(s[32:], uint64(size))
		le.PutUint64(s[48:], 1)
	}
	sec(1, 1, 1, dataOff, len(modinfo)) // .modinfo, PROGBITS
	sec(2, 10, 3, strOff, len(shstr))   // .shstrtab, STRTAB
	return out
}

func TestModuleResolve(t *testing.T) {
	modDir := t.TempDir()
	mods := map[string]string{ // file → depends
		"drivers/virtio/virtio_ring.ko": "",
		"drivers/virtio/virtio.ko":      "virtio_ring",
		"drivers/virtio/virtio_mmio.ko": "virtio,virtio_ring",
		"drivers/block/virtio_blk.ko":   "virtio,virtio_ring",
		"drivers/net/virtio_net.ko":     "virtio_ring,virtio,net_failover",
		"drivers/net/net_failover.ko":   "failover",
		"net/core/failover.ko":          "",
		"drivers/char/virtio-rng.ko":    "virtio,virtio_ring", // dash in the file name
		"drivers/ptp/ptp_kvm.ko":        "",
	}
	for f, deps := range mods {
		p := filepath.Join(modDir, "kernel", f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, fakeKO(modName(f), deps), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(modDir, "modules.builtin"), []byte("kernel/fs/ext4/ext4.ko\n"), 0o644)
	tree, err := readModuleTree(modDir)
	if err != nil {
		t.Fatal(err)
	}
	order, data, err := tree.resolve(context.Background(), wantedModules())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range order {
		names = append(names, m.Name)
		if len(data[m.Name]) == 0 {
			t.Errorf("no bytes for %s", m.Name)
		}
		if m.MayFail != (m.Name == "ptp_kvm") {
			t.Errorf("%s may_fail = %v", m.Name, m.MayFail)
		}
	}
	want := []string{"virtio_ring", "virtio", "virtio_mmio", "virtio_blk", "failover", "net_failover", "virtio_net", "virtio_rng", "ptp_kvm"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("order = %v, want %v", names, want)
	}

	// ext4 neither built in nor shipped: the guest could not mount its root.
	os.WriteFile(filepath.Join(modDir, "modules.builtin"), nil, 0o644)
	tree, _ = readModuleTree(modDir)
	if _, _, err := tree.resolve(context.Background(), wantedModules()); err == nil || !strings.Contains(err.Error(), "ext4") {
		t.Fatalf("missing ext4: err = %v", err)
	}

	// A dependency the package does not ship is an error, not a silent boot failure.
	os.Remove(filepath.Join(modDir, "kernel/net/core/failover.ko"))
	os.WriteFile(filepath.Join(modDir, "modules.builtin"), []byte("kernel/fs/ext4/ext4.ko\n"), 0o644)
	tree, _ = readModuleTree(modDir)
	if _, _, err := tree.resolve(context.Background(), wantedModules()); err == nil || !strings.Contains(err.Error(), "failover") {
		t.Fatalf("missing dependency: err = %v", err)
	}
}

func TestConfigValue(t *testing.T) {
	cfg := []byte("# comment\nCONFIG_EXT4_FS=y\nCONFIG_VIRTIO_BLK=m\nCONFIG_LOCALVERSION=\"-cloud\"\n# CONFIG_IP_PNP is not set\n")
	for sym, want := range map[string]string{"CONFIG_EXT4_FS": "y", "CONFIG_VIRTIO_BLK": "m", "CONFIG_LOCALVERSION": "-cloud", "CONFIG_IP_PNP": "", "CONFIG_EXT4": ""} {
		if got := configValue(cfg, sym); got != want {
			t.Errorf("%s = %q, want %q", sym, got, want)
		}
	}
}
