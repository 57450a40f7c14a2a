package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wrennhq/wrenn/images"
)

// Initrd identifies a generated initramfs: kernels/{kernel ID}/initrd-{ID}.img, keyed by the
// kernel, the init script, busybox and the module list, so changing any of them makes a new
// file and never rewrites one a template or snapshot points at.
type Initrd struct {
	ID     string `json:"id"`
	Path   string `json:"path"` // relative to WRENN_DIR
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// ensureInitrd builds the initramfs for kernel k unless it exists.
func ensureInitrd(ctx context.Context, rep *reporter, o *Options, k *Kernel) (*Initrd, error) {
	start := time.Now()
	initScript, err := images.Read("initramfs/init")
	if err != nil {
		return nil, fmt.Errorf("read embedded initramfs init: %w", err)
	}
	busybox, bbSource, err := staticBusybox(ctx, rep, o)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	fmt.Fprintf(h, "wrenn-initrd %s\nkernel %s\n", builderVersion, k.ID)
	for _, part := range [][]byte{initScript, busybox} {
		s := sha256.Sum256(part)
		fmt.Fprintf(h, "%x\n", s)
	}
	for _, m := range k.Modules {
		fmt.Fprintf(h, "module %s %s %t\n", m.Name, m.File, m.MayFail)
	}
	id := hex.EncodeToString(h.Sum(nil))[:16]
	rel := filepath.Join("kernels", k.ID, "initrd-"+id+".img")
	path := filepath.Join(o.Dir, rel)
	if data, err := os.ReadFile(path); err == nil {
		sum := sha256.Sum256(data)
		rep.done("initramfs", start, true, rel)
		return &Initrd{ID: id, Path: rel, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data))}, nil
	}

	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	cw := newCPIOWriter(zw)
	for _, d := range []string{"bin", "sbin", "dev", "proc", "sys", "newroot", "lib", "lib/modules"} {
		if err := cw.Dir(d, 0o755); err != nil {
			return nil, err
		}
	}
	// The kernel opens /dev/console for init's stdio before init can mount devtmpfs.
	if err := cw.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return nil, err
	}
	if err := cw.File("bin/busybox", 0o755, busybox); err != nil {
		return nil, err
	}
	if err := cw.File("init", 0o755, initScript); err != nil {
		return nil, err
	}
	var order strings.Builder
	kdir := filepath.Join(o.Dir, "kernels", k.ID)
	for _, m := range k.Modules {
		ko, err := os.ReadFile(filepath.Join(kdir, m.File))
		if err != nil {
			return nil, fmt.Errorf("read module %s of kernel %s: %w", m.Name, k.ID, err)
		}
		if err := cw.File("lib/modules/"+m.Name+".ko", 0o644, ko); err != nil {
			return nil, err
		}
		order.WriteString(m.Name)
		if m.MayFail {
			order.WriteString(" optional")
		}
		order.WriteString("\n")
	}
	if err := cw.File("lib/modules/wrenn.order", 0o644, []byte(order.String())); err != nil {
		return nil, err
	}
	if err := cw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip initramfs: %w", err)
	}
	if err := writeFileAtomic(path, gz.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("write initramfs %s: %w", path, err)
	}
	sum := sha256.Sum256(gz.Bytes())
	rep.done("initramfs", start, false, fmt.Sprintf("%s, %d modules, busybox from %s, %d KiB", rel, len(k.Modules), bbSource, gz.Len()>>10))
	return &Initrd{ID: id, Path: rel, SHA256: hex.EncodeToString(sum[:]), Size: int64(gz.Len())}, nil
}

// staticBusybox returns a statically linked busybox: the host's (Debian's busybox-static
// installs one at /bin/busybox) or, failing that, the one from the busybox-static package,
// downloaded with apt into the cache. A dynamic busybox would not run in the initramfs.
func staticBusybox(ctx context.Context, rep *reporter, o *Options) ([]byte, string, error) {
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if data, err := os.ReadFile(p); err == nil && isStaticELF(data) {
			return data, p, nil
		}
	}
	cached := filepath.Join(o.CacheDir, "busybox", "busybox")
	if data, err := os.ReadFile(cached); err == nil && isStaticELF(data) {
		return data, cached, nil
	}
	out, err := runCmd(ctx, nil, runOpts{}, "apt-cache", "show", "--no-all-versions", "busybox-static")
	if err != nil {
		return nil, "", fmt.Errorf("no static busybox on this host and apt cannot resolve busybox-static (apt-get install busybox-static): %w", err)
	}
	ver := debFields(out)["Version"]
	if !validDebField(ver) {
		return nil, "", fmt.Errorf("apt reports an unusable busybox-static version %q", ver)
	}
	deb, err := downloadDeb(ctx, rep, o, "busybox-static", ver)
	if err != nil {
		return nil, "", err
	}
	tmp, err := os.MkdirTemp(o.workDir(), "busybox-")
	if err != nil {
		return nil, "", err
	}
	defer os.RemoveAll(tmp)
	if _, err := runCmd(ctx, nil, runOpts{}, "dpkg-deb", "-x", deb, tmp); err != nil {
		return nil, "", fmt.Errorf("unpack busybox-static: %w", err)
	}
	data, err := os.ReadFile(filepath.Join(tmp, "bin", "busybox"))
	if err != nil {
		data, err = os.ReadFile(filepath.Join(tmp, "usr", "bin", "busybox"))
	}
	if err != nil || !isStaticELF(data) {
		return nil, "", errors.New("busybox-static package holds no static busybox binary")
	}
	if err := writeFileAtomic(cached, data, 0o755); err != nil {
		return nil, "", fmt.Errorf("cache busybox: %w", err)
	}
	return data, "busybox-static " + ver, nil
}

// isStaticELF reports whether data is an ELF executable without a program interpreter.
func isStaticELF(data []byte) bool {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return false
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return false
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}
