// Package fsx holds the filesystem operations envd's file services share: creating
// directories owned by the acting user, and reading and replacing the E2B file metadata
// kept in `user.e2b.*` extended attributes.
package fsx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// MkdirAllOwned creates dir and any missing parents with mode 0755, chowning every
// directory it creates (and only those) to uid:gid.
func MkdirAllOwned(dir string, uid, gid uint32) error {
	dir = filepath.Clean(dir)
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return &os.PathError{Op: "mkdir", Path: dir, Err: unix.ENOTDIR}
		}
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := MkdirAllOwned(parent, uid, gid); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil // lost a race with another creator; fine
		}
		return err
	}
	// Mkdir honours the umask; E2B's contract is 0755 regardless.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	return os.Lchown(dir, int(uid), int(gid))
}

// MetadataPrefix is the xattr namespace of user-visible file metadata.
const MetadataPrefix = "user.e2b."

// Limits of metadata, as E2B enforces them.
const (
	MaxMetadataKey   = 246  // bytes, so that prefix + key fits the kernel's 255-byte name limit
	MaxMetadataTotal = 4096 // bytes of keys plus values
)

// ValidateMetadata checks keys and values before anything is written, so a rejected
// upload leaves no file behind.
func ValidateMetadata(md map[string]string) error {
	total := 0
	for k, v := range md {
		if k == "" {
			return errors.New("metadata key must not be empty")
		}
		if len(k) > MaxMetadataKey {
			return fmt.Errorf("metadata key %q is longer than %d bytes", k, MaxMetadataKey)
		}
		if !printableASCII(k) {
			return fmt.Errorf("metadata key %q must be printable ASCII", k)
		}
		if !printableASCII(v) {
			return fmt.Errorf("metadata value of %q must be printable ASCII", k)
		}
		total += len(k) + len(v)
	}
	if total > MaxMetadataTotal {
		return fmt.Errorf("metadata is %d bytes, more than the %d allowed", total, MaxMetadataTotal)
	}
	return nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// ReadMetadata returns the `user.e2b.*` attributes of path (not following a final
// symlink), prefix stripped, or nil when there are none or the filesystem has no xattrs.
func ReadMetadata(path string) (map[string]string, error) {
	names, err := listXattrs(path)
	if err != nil || len(names) == 0 {
		return nil, err
	}
	var md map[string]string
	for _, name := range names {
		key, ok := strings.CutPrefix(name, MetadataPrefix)
		if !ok {
			continue
		}
		val, err := getXattr(path, name)
		if err != nil {
			if errors.Is(err, unix.ENODATA) {
				continue // removed meanwhile
			}
			return nil, fmt.Errorf("read xattr %s of %s: %w", name, path, err)
		}
		if md == nil {
			md = map[string]string{}
		}
		md[key] = string(val)
	}
	return md, nil
}

// ReplaceMetadata makes md the file's whole metadata: attributes not in md are removed.
// Keys are lower-cased, as HTTP header names are case-insensitive.
func ReplaceMetadata(path string, md map[string]string) error {
	old, err := ReadMetadata(path)
	if err != nil {
		return err
	}
	want := make(map[string]string, len(md))
	for k, v := range md {
		want[strings.ToLower(k)] = v
	}
	for k := range old {
		if _, keep := want[k]; keep {
			continue
		}
		if err := unix.Lremovexattr(path, MetadataPrefix+k); err != nil && !errors.Is(err, unix.ENODATA) {
			return fmt.Errorf("remove xattr %s of %s: %w", k, path, err)
		}
	}
	for k, v := range want {
		if err := unix.Lsetxattr(path, MetadataPrefix+k, []byte(v), 0); err != nil {
			return fmt.Errorf("set xattr %s of %s: %w", k, path, err)
		}
	}
	return nil
}

func listXattrs(path string) ([]string, error) {
	size, err := unix.Llistxattr(path, nil)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		return nil, fmt.Errorf("list xattrs of %s: %w", path, err)
	}
	for {
		if size == 0 {
			return nil, nil
		}
		buf := make([]byte, size)
		n, err := unix.Llistxattr(path, buf)
		if errors.Is(err, unix.ERANGE) { // grew meanwhile
			size *= 2
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list xattrs of %s: %w", path, err)
		}
		var names []string
		for _, name := range strings.Split(string(buf[:n]), "\x00") {
			if name != "" {
				names = append(names, name)
			}
		}
		return names, nil
	}
}

func getXattr(path, name string) ([]byte, error) {
	size, err := unix.Lgetxattr(path, name, nil)
	if err != nil {
		return nil, err
	}
	for {
		buf := make([]byte, size)
		n, err := unix.Lgetxattr(path, name, buf)
		if errors.Is(err, unix.ERANGE) {
			size = 2*size + 1
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

// uploadTempMarker is part of the hidden name an upload has for a moment before it
// replaces its target; watchers hide such names, which are not the user's files.
const uploadTempMarker = ".wrenn-upload-"

// UploadTempPrefix is the start of the temporary name for an upload to a file named
// base (shortened so the whole name stays under the 255-byte limit).
func UploadTempPrefix(base string) string {
	if len(base) > 64 {
		base = base[:64]
	}
	return "." + base + uploadTempMarker
}

// IsUploadTemp reports whether path names an upload's temporary file.
func IsUploadTemp(path string) bool {
	base := filepath.Base(path)
	return strings.HasPrefix(base, ".") && strings.Contains(base, uploadTempMarker)
}

// IsUnlinkedTemp reports whether path is how inotify names an O_TMPFILE inode — "#" and
// the inode number — that does not exist under that name. Uploads write such inodes
// before linking them into place; a real file named like that exists, so it is kept.
func IsUnlinkedTemp(path string) bool {
	base := filepath.Base(path)
	if len(base) < 2 || base[0] != '#' {
		return false
	}
	for _, c := range base[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	_, err := os.Lstat(path)
	return errors.Is(err, os.ErrNotExist)
}
