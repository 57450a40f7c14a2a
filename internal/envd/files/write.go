package files

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/wrennhq/wrenn/internal/envd/fsx"
	"github.com/wrennhq/wrenn/internal/envd/state"
)

// newFileMode is the mode of files envd creates: 0666 under the usual 022 umask, set
// explicitly so the daemon's own umask does not matter.
const newFileMode = 0o644

// maxSymlinkHops bounds symlink resolution, like the kernel's limit.
const maxSymlinkHops = 40

// writeFile stores src at abs for user u, with md as the file's complete metadata, and
// returns the path of the file actually written (abs with trailing symlinks resolved).
//
// The data goes to a temporary inode in the target's directory that only replaces the
// target once everything succeeded, so an upload that fails midway (client gone, disk
// full) leaves the previous version intact and never a truncated file under the
// target's name. The temporary inode is an unnamed O_TMPFILE where the filesystem
// supports it (nothing is left behind even if envd dies), else a hidden named file.
// Targets that cannot be replaced that way (devices, files on procfs/sysfs, a directory
// where no new file can be created) are written in place, as E2B does.
func (h *Handler) writeFile(abs string, u *state.User, src io.Reader, md map[string]string, contentLength int64) (string, *httpError) {
	if err := fsx.MkdirAllOwned(filepath.Dir(abs), u.UID, u.GID); err != nil {
		return "", fsError("error ensuring directories", err, 0)
	}
	st, err := os.Stat(abs) // follows symlinks: a link to a directory is a directory
	exists := err == nil
	switch {
	case err == nil && st.IsDir():
		return "", errorf(http.StatusBadRequest, "path is a directory: %s", abs)
	case err == nil && st.Mode()&(fs.ModeNamedPipe|fs.ModeSocket) != 0:
		return "", errorf(http.StatusBadRequest, "path is not a regular file: %s", abs)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return "", fsError("error getting file info", err, 0)
	}
	// Writing "through" a symlink must update the file it points to, not replace the
	// link with a regular file, so the rename targets the link's final destination.
	final, err := resolveSymlinks(abs)
	if err != nil {
		return "", fsError("error resolving symlinks", err, 0)
	}
	if exists && !st.Mode().IsRegular() {
		return final, h.writeInPlace(final, st, u, src, md, contentLength)
	}

	mode := os.FileMode(newFileMode)
	if exists {
		// An overwrite keeps the permission bits (E2B truncates in place, which keeps
		// them), so e.g. an uploaded script stays executable.
		mode = st.Mode().Perm()
	}
	tmp, err := createTemp(filepath.Dir(final), filepath.Base(final))
	if err != nil {
		if exists && !errorsIsAny(err, syscall.ENOSPC, syscall.EDQUOT) {
			return final, h.writeInPlace(final, st, u, src, md, contentLength)
		}
		return "", fsError("error creating file", err, 0)
	}
	defer tmp.discard()

	if err := tmp.f.Chown(int(u.UID), int(u.GID)); err != nil {
		return "", fsError("error changing file ownership", err, 0)
	}
	if err := tmp.f.Chmod(mode); err != nil {
		return "", fsError("error changing file mode", err, 0)
	}
	if herr := h.copyBody(tmp.f, src, contentLength); herr != nil {
		return "", herr
	}
	// The temporary inode is new, so setting md on it replaces all previous metadata.
	if herr := h.setMetadataFD(tmp.f, final, md); herr != nil {
		return "", herr
	}
	if err := tmp.commit(final); err != nil {
		if errors.Is(err, syscall.EISDIR) { // a directory appeared there meanwhile
			return "", errorf(http.StatusBadRequest, "path is a directory: %s", abs)
		}
		return "", fsError("error replacing file", err, 0)
	}
	signalWrite(final, tmp.f)
	return final, nil
}

// writeInPlace is E2B's write: truncate the existing file and write into it. It is the
// fallback for targets a temporary file cannot replace; st describes the target.
func (h *Handler) writeInPlace(final string, st fs.FileInfo, u *state.User, src io.Reader, md map[string]string, contentLength int64) *httpError {
	regular := st.Mode().IsRegular()
	flags := os.O_WRONLY | syscall.O_CLOEXEC
	if regular {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(final, flags, 0)
	if err != nil {
		return fsError("error opening file", err, 0)
	}
	defer f.Close()
	if regular {
		// Pseudo filesystems refuse ownership changes; the data still matters more.
		if err := f.Chown(int(u.UID), int(u.GID)); err != nil && !errorsIsAny(err, syscall.EPERM, syscall.EROFS, syscall.ENOTSUP) {
			return fsError("error changing file ownership", err, 0)
		}
	}
	if herr := h.copyBody(f, src, contentLength); herr != nil {
		return herr
	}
	if err := fsx.ReplaceMetadata(final, md); err != nil {
		// User xattrs exist only on regular files and directories of filesystems that
		// support them; like E2B, the data counts and the response reads back what stuck.
		if errorsIsAny(err, syscall.ENOTSUP, syscall.EPERM) {
			h.log.Warn("files: metadata not stored", "path", final, "err", err)
			return nil
		}
		return fsError("error writing file metadata", err, 0)
	}
	return nil
}

// copyBody copies the request data to f. Read failures are the client's (a truncated
// or malformed body, a dropped connection): 400. Write failures are ours, and a full
// disk is 507 as the SDKs expect.
func (h *Handler) copyBody(f *os.File, src io.Reader, contentLength int64) *httpError {
	buf := h.getBuf()
	defer h.putBuf(buf)
	_, rerr, werr := copyChunks(f, src, *buf)
	if werr != nil {
		return fsError("error writing file", werr, contentLength)
	}
	if rerr != nil {
		return errorf(http.StatusBadRequest, "error reading request body: %v", rerr)
	}
	return nil
}

// setMetadataFD sets md as `user.e2b.<lower-cased key>` xattrs on the open file.
func (h *Handler) setMetadataFD(f *os.File, path string, md map[string]string) *httpError {
	for k, v := range md {
		err := unix.Fsetxattr(int(f.Fd()), fsx.MetadataPrefix+strings.ToLower(k), []byte(v), 0)
		if err == nil {
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			// E2B's behaviour: keep the data, log, and let the response (which reads
			// the metadata back) show that none was stored.
			h.log.Warn("files: filesystem does not support xattrs; metadata not stored", "path", path)
			return nil
		}
		if errorsIsAny(err, syscall.ENOSPC, syscall.EDQUOT) {
			// Also what ext4 says when the attributes do not fit its one xattr block.
			return errorf(http.StatusInsufficientStorage, "not enough space for file metadata: %v", err)
		}
		return errorf(http.StatusInternalServerError, "error writing file metadata: %v", err)
	}
	return nil
}

// fsError maps a filesystem error to a response. A full disk or quota is 507 with the
// message the SDKs look for (prefixed with the request size when known, as E2B does);
// errors that come from the requested path itself are 400; the rest are 500.
func fsError(what string, err error, contentLength int64) *httpError {
	switch {
	case errorsIsAny(err, syscall.ENOSPC, syscall.EDQUOT):
		if contentLength > 0 {
			return errorf(http.StatusInsufficientStorage, "attempted to write %d bytes: not enough disk space available", contentLength)
		}
		return errorf(http.StatusInsufficientStorage, "not enough disk space available")
	case errorsIsAny(err, syscall.ENOTDIR, syscall.ENAMETOOLONG, syscall.ELOOP, syscall.EISDIR):
		return errorf(http.StatusBadRequest, "%s: %v", what, err)
	// Pseudo and read-only filesystems (/proc, /sys, a read-only mount) refuse new
	// files: the request's target is wrong, not envd.
	case errorsIsAny(err, syscall.EACCES, syscall.EPERM, syscall.EROFS):
		return errorf(http.StatusForbidden, "%s: %v", what, err)
	case errorsIsAny(err, syscall.ENOENT, syscall.EOPNOTSUPP):
		return errorf(http.StatusBadRequest, "%s: %v: the file system there does not take new files", what, err)
	default:
		return errorf(http.StatusInternalServerError, "%s: %v", what, err)
	}
}

// resolveSymlinks follows symlinks in the last component of p (possibly dangling ones)
// and returns the path of the file they end at.
func resolveSymlinks(p string) (string, error) {
	for range maxSymlinkHops {
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			return p, nil // missing or not a link: this is the file to write
		}
		target, err := os.Readlink(p)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(p), target)
		}
		p = filepath.Clean(target)
	}
	return "", &fs.PathError{Op: "resolve", Path: p, Err: syscall.ELOOP}
}

// tempFile is the not-yet-visible new version of an uploaded file.
type tempFile struct {
	f         *os.File
	dir, base string
	name      string // path of a named temporary file; "" for an O_TMPFILE inode
	committed bool
}

// createTemp makes the temporary inode in dir, preferring O_TMPFILE.
func createTemp(dir, base string) (*tempFile, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return &tempFile{f: os.NewFile(uintptr(fd), filepath.Join(dir, base)), dir: dir, base: base}, nil
	}
	if errorsIsAny(err, syscall.ENOSPC, syscall.EDQUOT) {
		return nil, &fs.PathError{Op: "create", Path: dir, Err: err}
	}
	// Filesystems without O_TMPFILE (some FUSE, 9p, NFS) get a hidden named file.
	f, err := os.CreateTemp(dir, fsx.UploadTempPrefix(base)+"*")
	if err != nil {
		return nil, err
	}
	return &tempFile{f: f, dir: dir, base: base, name: f.Name()}, nil
}

// commit makes the temporary inode the file at final, atomically.
func (t *tempFile) commit(final string) error {
	if t.name != "" {
		if err := os.Rename(t.name, final); err != nil {
			return err
		}
		t.committed = true
		return nil
	}
	// A new file is linked straight to its name: nobody ever sees it partially written
	// and watchers see a plain create.
	if _, err := os.Lstat(final); errors.Is(err, fs.ErrNotExist) {
		err := linkFD(t.f, final)
		if err == nil {
			t.committed = true
			return nil
		}
		if !errors.Is(err, syscall.EEXIST) {
			return err
		}
		// Created meanwhile by someone else: replace it like any existing file.
	}
	// rename(2) is the only atomic replace, and it needs a name: link the inode under a
	// unique hidden name first.
	for range 8 {
		var rnd [8]byte
		_, _ = rand.Read(rnd[:])
		tmpName := filepath.Join(filepath.Dir(final), fsx.UploadTempPrefix(t.base)+hex.EncodeToString(rnd[:]))
		err := linkFD(t.f, tmpName)
		if errors.Is(err, syscall.EEXIST) {
			continue
		}
		if err != nil {
			return err
		}
		if err := os.Rename(tmpName, final); err != nil {
			_ = os.Remove(tmpName)
			return err
		}
		t.committed = true
		return nil
	}
	return fmt.Errorf("link temporary file into %s: %w", filepath.Dir(final), syscall.EEXIST)
}

// discard closes the temporary file and, unless it was committed, removes it. An
// O_TMPFILE inode disappears by itself when closed.
func (t *tempFile) discard() {
	_ = t.f.Close()
	if t.name != "" && !t.committed {
		_ = os.Remove(t.name)
	}
}

// linkFD gives the open O_TMPFILE inode the name newpath. AT_EMPTY_PATH needs
// CAP_DAC_READ_SEARCH (envd runs as root); /proc/self/fd is the unprivileged fallback.
func linkFD(f *os.File, newpath string) error {
	fd := int(f.Fd())
	err := unix.Linkat(fd, "", unix.AT_FDCWD, newpath, unix.AT_EMPTY_PATH)
	if err == nil || errors.Is(err, unix.EEXIST) {
		return wrapLink(newpath, err)
	}
	procPath := fmt.Sprintf("/proc/self/fd/%d", fd)
	if err2 := unix.Linkat(unix.AT_FDCWD, procPath, unix.AT_FDCWD, newpath, unix.AT_SYMLINK_FOLLOW); err2 == nil || errors.Is(err2, unix.EEXIST) {
		return wrapLink(newpath, err2)
	}
	return wrapLink(newpath, err)
}

func wrapLink(newpath string, err error) error {
	if err == nil {
		return nil
	}
	return &fs.PathError{Op: "link", Path: newpath, Err: err}
}

// signalWrite makes watchers see a write to final. The data went into another inode,
// so inotify only reported a create/move for final's name, while E2B's in-place write
// reports IN_MODIFY and the SDKs' watch tests wait for exactly that WRITE event.
// Truncating the new file to its own size is a no-op for the content that emits
// IN_MODIFY. The inode check makes sure a file replaced meanwhile is left alone.
func signalWrite(final string, written *os.File) {
	fd, err := unix.Open(final, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	var ours, theirs unix.Stat_t
	if unix.Fstat(int(written.Fd()), &ours) != nil || unix.Fstat(fd, &theirs) != nil {
		return
	}
	if ours.Dev != theirs.Dev || ours.Ino != theirs.Ino {
		return
	}
	_ = unix.Ftruncate(fd, theirs.Size)
}

// copyChunks copies src to dst through buf, filling buf from as many reads as it takes
// before each write: readers such as a multipart part return at most a few KiB per
// Read, and the file should see few large writes. It reports read and write failures
// separately because they are different parties' faults.
func copyChunks(dst io.Writer, src io.Reader, buf []byte) (written int64, readErr, writeErr error) {
	for {
		n, rerr := fill(src, buf)
		if n > 0 {
			m, werr := dst.Write(buf[:n])
			written += int64(m)
			if werr == nil && m < n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return written, nil, werr
			}
		}
		if rerr == io.EOF {
			return written, nil, nil
		}
		if rerr != nil {
			return written, rerr, nil
		}
	}
}

// fill reads into buf until it is full, the reader ends (io.EOF) or fails. Unlike
// io.ReadFull it passes the reader's own io.ErrUnexpectedEOF through as an error (a
// truncated multipart body must not look like a complete one).
func fill(src io.Reader, buf []byte) (int, error) {
	n, idle := 0, 0
	for n < len(buf) {
		m, err := src.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
		if m == 0 {
			if idle++; idle > 100 {
				return n, io.ErrNoProgress
			}
			continue
		}
		idle = 0
	}
	return n, nil
}
