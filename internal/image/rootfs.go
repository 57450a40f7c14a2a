package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// debootstrapKey is the cache key of a debootstrap result: everything that changes what
// debootstrap and the post-processing produce, and nothing else (not envd, not the kernel).
func debootstrapKey(o *Options) string {
	pkgs := append([]string(nil), o.Packages...)
	sort.Strings(pkgs)
	h := sha256.Sum256([]byte(strings.Join([]string{
		"debootstrap", builderVersion, o.Suite, o.Mirror, "minbase", "amd64", strings.Join(pkgs, ","),
	}, "\n")))
	return hex.EncodeToString(h[:])[:16]
}

// ensureDebootstrap returns a cached debootstrap tree for the options, making it when
// missing (about a minute and ~60 MB from the mirror).
func ensureDebootstrap(ctx context.Context, rep *reporter, o *Options) (string, error) {
	start := time.Now()
	key := debootstrapKey(o)
	base := filepath.Join(o.CacheDir, "debootstrap")
	final := filepath.Join(base, o.Suite+"-"+key)
	root := filepath.Join(final, "rootfs")
	if !o.Force {
		if _, err := os.Stat(filepath.Join(final, "info.json")); err == nil {
			now := time.Now()
			_ = os.Chtimes(filepath.Join(final, "info.json"), now, now) // last use, for pruning
			rep.done("debootstrap", start, true, o.Suite+"-"+key)
			return root, nil
		}
	}
	pruneDebootstrapCache(rep, base)
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", errors.New("debootstrap is not installed (apt-get install debootstrap)")
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", fmt.Errorf("create debootstrap cache: %w", err)
	}
	tmp, err := os.MkdirTemp(base, ".tmp-"+key+"-")
	if err != nil {
		return "", fmt.Errorf("create debootstrap staging dir: %w", err)
	}
	defer os.RemoveAll(tmp) // debootstrap ran in its own mount namespace: nothing is mounted here
	if err := os.Chmod(tmp, 0o700); err != nil {
		return "", err
	}
	logFile := filepath.Join(base, o.Suite+"-"+key+".log")
	_ = os.Remove(logFile)
	rep.printf("debootstrap %s from %s: running (about 1-2 minutes, downloads ~60 MB; log %s)", o.Suite, o.Mirror, logFile)
	tree := filepath.Join(tmp, "rootfs")
	_, err = runCmd(ctx, rep, runOpts{heartbeat: 15 * time.Second, step: "debootstrap", logFile: logFile, newMountNS: true},
		"debootstrap", "--variant=minbase", "--arch=amd64", "--components=main",
		"--include="+strings.Join(o.Packages, ","), o.Suite, tree, o.Mirror)
	if err != nil {
		return "", fmt.Errorf("debootstrap %s: %w", o.Suite, err)
	}
	if err := trimDebootstrap(tree); err != nil {
		return "", fmt.Errorf("post-process debootstrap tree: %w", err)
	}
	info, _ := json.MarshalIndent(map[string]any{
		"suite": o.Suite, "mirror": o.Mirror, "packages": o.Packages, "builder_version": builderVersion,
		"created": time.Now().UTC(),
	}, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, "info.json"), info, 0o644); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	if _, err := os.Stat(final); err == nil { // Force: replace the previous cache entry
		old := filepath.Join(base, ".old-"+key+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
		if err := os.Rename(final, old); err != nil {
			return "", fmt.Errorf("retire old debootstrap cache: %w", err)
		}
		defer os.RemoveAll(old)
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("publish debootstrap cache: %w", err)
	}
	rep.done("debootstrap", start, false, o.Suite+"-"+key)
	return root, nil
}

// pruneDebootstrapCache removes leftovers of interrupted runs and cache entries unused for
// 30 days (another package list or mirror), so the cache does not grow by ~300 MB per
// change. The caller holds the cache lock.
func pruneDebootstrapCache(rep *reporter, base string) {
	entries, err := os.ReadDir(base)
	if err != nil {
		return
	}
	for _, e := range entries {
		p := filepath.Join(base, e.Name())
		switch {
		case strings.HasPrefix(e.Name(), ".tmp-") || strings.HasPrefix(e.Name(), ".old-"):
		case e.IsDir():
			fi, err := os.Stat(filepath.Join(p, "info.json"))
			if err == nil && time.Since(fi.ModTime()) < 30*24*time.Hour {
				continue
			}
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				continue
			}
			_ = os.Remove(p + ".log")
		default:
			continue
		}
		if err := os.RemoveAll(p); err == nil {
			rep.printf("debootstrap: pruned old cache entry %s", e.Name())
		}
	}
}

// trimDebootstrap drops what a sandbox never needs and what leaked from the build host:
// downloaded .debs and apt lists (stale anyway; `apt-get update` refreshes them), and the
// host's hostname and resolver (wrenn-init writes both at boot).
func trimDebootstrap(tree string) error {
	for _, glob := range []string{
		"var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*_*",
		"etc/hostname", "etc/resolv.conf", "etc/hosts",
	} {
		matches, err := filepath.Glob(filepath.Join(tree, glob))
		if err != nil {
			return err
		}
		for _, m := range matches {
			if err := os.Remove(m); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// buildRootFS stages the root tree (a copy of the debootstrap cache, or the container tar
// extracted), injects Wrenn's files and packs it into out as ext4. The staging dir is
// removed on every path.
func buildRootFS(ctx context.Context, rep *reporter, o *Options, envd []byte, files []guestFile, out string) (*RootFS, error) {
	stageDir, err := os.MkdirTemp(o.workDir(), "stage-")
	if err != nil {
		return nil, fmt.Errorf("create staging dir: %w", err)
	}
	defer os.RemoveAll(stageDir)
	tree := filepath.Join(stageDir, "root")

	if o.FromTar == "" {
		cache, err := ensureDebootstrap(ctx, rep, o)
		if err != nil {
			return nil, err
		}
		start := time.Now()
		if _, err := runCmd(ctx, rep, runOpts{heartbeat: 10 * time.Second, step: "stage"}, "cp", "-a", "--reflink=auto", cache, tree); err != nil {
			return nil, fmt.Errorf("copy debootstrap cache into staging: %w", err)
		}
		rep.done("stage", start, false, "copy of the debootstrap cache")
	} else {
		start := time.Now()
		if err := os.Mkdir(tree, 0o755); err != nil {
			return nil, err
		}
		var entries atomic.Int64
		stop := rep.heartbeat("stage", 10*time.Second, func() string {
			return fmt.Sprintf("— %d entries extracted", entries.Load())
		})
		n, err := extractTar(ctx, o.FromTar, tree, &entries)
		stop()
		if err != nil {
			return nil, fmt.Errorf("extract %s: %w", o.FromTar, err)
		}
		rep.done("stage", start, false, fmt.Sprintf("%d entries from %s", n, filepath.Base(o.FromTar)))
	}

	start := time.Now()
	if err := inject(tree, envd, files); err != nil {
		return nil, err
	}
	rep.done("inject", start, false, "envd, wrenn-init, chrony.conf, user")

	start = time.Now()
	rfs, err := packExt4(ctx, rep, tree, out, o.SizeBytes)
	if err != nil {
		return nil, err
	}
	rep.done("pack", start, false, fmt.Sprintf("ext4 %d MiB, %d MiB allocated", rfs.Size>>20, rfs.Allocated>>20))
	return rfs, nil
}

// packExt4 writes tree into a sparse ext4 image with mkfs.ext4 -d (no mount, no loop
// device), sized at content*1.5 + 1 GiB unless size is given.
func packExt4(ctx context.Context, rep *reporter, tree, out string, size int64) (*RootFS, error) {
	used, inodes, err := treeUsage(tree)
	if err != nil {
		return nil, fmt.Errorf("measure staging tree: %w", err)
	}
	need := used + used/2 + 1<<30
	if size == 0 {
		size = need
	} else if size < used+used/8+64<<20 {
		return nil, fmt.Errorf("requested disk size %d MiB is too small for %d MiB of content", size>>20, used>>20)
	}
	size = (size + 1<<20 - 1) &^ (1<<20 - 1)
	f, err := os.OpenFile(out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", out, err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, fmt.Errorf("size %s: %w", out, err)
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	args := []string{"-q", "-F", "-L", "root", "-m", "1"}
	// mke2fs gives one inode per 16 KiB; trees of many small files (node_modules) need more.
	if want := inodes*3/2 + 16384; want > size/16384 {
		args = append(args, "-N", strconv.FormatInt(want, 10))
	}
	args = append(args, "-d", tree, out)
	mkfsStart := time.Now()
	if _, err := runCmd(ctx, rep, runOpts{heartbeat: 15 * time.Second, step: "mkfs.ext4"}, "mkfs.ext4", args...); err != nil {
		return nil, fmt.Errorf("pack ext4: %w", err)
	}
	mkfsTime := time.Since(mkfsStart)
	hashStart := time.Now()
	rf, err := os.Open(out)
	if err != nil {
		return nil, err
	}
	defer rf.Close()
	st, err := rf.Stat()
	if err != nil {
		return nil, err
	}
	sum, err := sha256Sparse(ctx, rf, st.Size())
	if err != nil {
		return nil, fmt.Errorf("hash %s: %w", out, err)
	}
	var allocated int64
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		allocated = sys.Blocks * 512
	}
	rep.printf("pack: mkfs.ext4 %s, sha256 %s", mkfsTime.Round(10*time.Millisecond), time.Since(hashStart).Round(10*time.Millisecond))
	return &RootFS{SHA256: sum, Size: st.Size(), Allocated: allocated}, nil
}

// sha256Sparse hashes a sparse file exactly like sha256sum but reads only its data
// extents; holes (most of a fresh ext4 image) are hashed from a zero buffer without I/O.
func sha256Sparse(ctx context.Context, f *os.File, size int64) (string, error) {
	h := sha256.New()
	zero := make([]byte, 1<<20)
	buf := make([]byte, 1<<20)
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			data = size // only a hole remains
		} else if err != nil {
			data = off // no SEEK_DATA support: treat everything as data
		}
		for ; off < data; off += int64(len(zero)) {
			h.Write(zero[:min(int64(len(zero)), data-off)])
		}
		off = data
		if off >= size {
			break
		}
		end, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil || end > size {
			end = size
		}
		if _, err := io.CopyBuffer(h, ctxReader{ctx, io.NewSectionReader(f, data, end-data)}, buf); err != nil {
			return "", err
		}
		off = end
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// treeUsage returns the bytes a tree needs on ext4 (rounded to 4 KiB blocks) and its inode
// count.
func treeUsage(tree string) (bytes, inodes int64, err error) {
	err = filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		inodes++
		info, err := d.Info()
		if err != nil {
			return err
		}
		bytes += (info.Size() + 4095) &^ 4095
		if d.IsDir() || info.Size() == 0 {
			bytes += 4096
		}
		return nil
	})
	return bytes, inodes, err
}
