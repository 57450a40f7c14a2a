package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// extractTar unpacks a container export (`docker export`, optionally gzipped) into tree,
// keeping numeric owners, modes (setuid included), symlinks, hard links and file
// capabilities. Entries are refused when their names are absolute or climb out with "..",
// and every write goes through os.Root, so a symlink planted by an earlier entry cannot
// redirect a later one outside tree. Device nodes and FIFOs are skipped: the guest gets
// /dev from devtmpfs. It returns the number of entries written; progress, when not nil,
// counts them as they land.
func extractTar(ctx context.Context, tarPath, tree string, progress *atomic.Int64) (int, error) {
	f, err := os.Open(tarPath)
	if err != nil {
		return 0, fmt.Errorf("open container tar: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	var rd io.Reader = br
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte(magicGzip)) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return 0, fmt.Errorf("read gzipped tar: %w", err)
		}
		defer zr.Close()
		rd = zr
	}
	r, err := os.OpenRoot(tree)
	if err != nil {
		return 0, fmt.Errorf("open extraction root: %w", err)
	}
	defer r.Close()

	type dirMeta struct {
		name     string
		mode     fs.FileMode
		uid, gid int
		mtime    time.Time
	}
	var dirs []dirMeta
	tr := tar.NewReader(rd)
	n := 0
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, fmt.Errorf("read tar entry after %d entries: %w", n, err)
		}
		name, err := tarEntryName(hdr.Name)
		if err != nil {
			return n, err
		}
		mode := hdr.FileInfo().Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		if name == "." {
			dirs = append(dirs, dirMeta{".", mode, hdr.Uid, hdr.Gid, hdr.ModTime})
			continue
		}
		if dir := path.Dir(name); dir != "." {
			if err := r.MkdirAll(dir, 0o755); err != nil {
				return n, fmt.Errorf("tar entry %q: create parent: %w", hdr.Name, err)
			}
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if fi, err := r.Lstat(name); err == nil && !fi.IsDir() {
				if err := r.Remove(name); err != nil {
					return n, fmt.Errorf("tar entry %q: replace non-directory: %w", hdr.Name, err)
				}
			}
			if err := r.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return n, fmt.Errorf("tar entry %q: %w", hdr.Name, err)
			}
			dirs = append(dirs, dirMeta{name, mode, hdr.Uid, hdr.Gid, hdr.ModTime})
		case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old tars still use '\x00'
			if err := removeExisting(r, name); err != nil {
				return n, fmt.Errorf("tar entry %q: %w", hdr.Name, err)
			}
			if err := writeTarFile(r, name, hdr, tr, mode); err != nil {
				return n, fmt.Errorf("tar entry %q: %w", hdr.Name, err)
			}
		case tar.TypeSymlink:
			if err := removeExisting(r, name); err != nil {
				return n, fmt.Errorf("tar entry %q: %w", hdr.Name, err)
			}
			// The target is stored as is: it is resolved by the guest, inside the guest.
			if err := r.Symlink(hdr.Linkname, name); err != nil {
				return n, fmt.Errorf("tar entry %q: symlink: %w", hdr.Name, err)
			}
			if err := r.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
				return n, fmt.Errorf("tar entry %q: lchown: %w", hdr.Name, err)
			}
		case tar.TypeLink:
			target, err := tarEntryName(hdr.Linkname)
			if err != nil {
				return n, fmt.Errorf("hard link %q: %w", hdr.Name, err)
			}
			if err := removeExisting(r, name); err != nil {
				return n, fmt.Errorf("tar entry %q: %w", hdr.Name, err)
			}
			if err := r.Link(target, name); err != nil {
				return n, fmt.Errorf("tar entry %q: hard link to %q: %w", hdr.Name, hdr.Linkname, err)
			}
		default:
			continue // devices, FIFOs, vendor extensions
		}
		n++
		if progress != nil {
			progress.Store(int64(n))
		}
	}
	// Directory metadata last: adding children changes mtimes. Only entries that are still
	// directories (a later entry may have replaced one) are touched.
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		if fi, err := r.Lstat(d.name); err != nil || !fi.IsDir() {
			continue
		}
		if err := r.Chown(d.name, d.uid, d.gid); err != nil {
			return n, fmt.Errorf("chown directory %q: %w", d.name, err)
		}
		if err := r.Chmod(d.name, d.mode|fs.ModeDir); err != nil {
			return n, fmt.Errorf("chmod directory %q: %w", d.name, err)
		}
		_ = r.Chtimes(d.name, d.mtime, d.mtime)
	}
	return n, nil
}

// writeTarFile creates one regular file with its owner, mode and xattrs (file capabilities
// such as ping's live in security.capability).
func writeTarFile(r *os.Root, name string, hdr *tar.Header, body io.Reader, mode fs.FileMode) error {
	f, err := r.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, body)
	if err == nil {
		err = f.Chown(hdr.Uid, hdr.Gid) // before chmod: chown clears setuid bits
	}
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		for k, v := range hdr.PAXRecords {
			if attr, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if xerr := unix.Fsetxattr(int(f.Fd()), attr, []byte(v), 0); xerr != nil && !errors.Is(xerr, unix.ENOTSUP) {
					err = fmt.Errorf("set xattr %s: %w", attr, xerr)
					break
				}
			}
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return r.Chtimes(name, hdr.ModTime, hdr.ModTime)
}

// tarEntryName cleans an entry name and refuses ones that would land outside the tree.
func tarEntryName(name string) (string, error) {
	if strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("tar entry name %q contains NUL", name)
	}
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("tar entry %q has an absolute path; refusing the archive", name)
	}
	clean := path.Clean(name)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("tar entry %q climbs out of the root; refusing the archive", name)
	}
	return clean, nil
}

// removeExisting clears the way for a new entry of the same name (later entries win).
func removeExisting(r *os.Root, name string) error {
	fi, err := r.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return r.RemoveAll(name)
	}
	return r.Remove(name)
}

// statOwner returns a file's numeric owner and group.
func statOwner(fi fs.FileInfo) ([2]int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return [2]int{}, false
	}
	return [2]int{int(st.Uid), int(st.Gid)}, true
}
