package atomicfile

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// ReplaceDir makes the directory newDir visible as final in one step: a rename when
// final does not exist, else an atomic exchange (readers see the old or the new
// directory, never a mix or nothing), after which newDir holds the previous version
// for the caller to remove. Open files of the old version stay valid. On a
// filesystem that cannot exchange it falls back to two renames: a brief gap, never a
// mix. The caller syncs newDir's contents first.
func ReplaceDir(newDir, final string) error {
	if _, err := os.Lstat(final); errors.Is(err, os.ErrNotExist) {
		if err := os.Rename(newDir, final); err != nil {
			return err
		}
		return syncDirOf(final)
	}
	err := unix.Renameat2(unix.AT_FDCWD, newDir, unix.AT_FDCWD, final, unix.RENAME_EXCHANGE)
	if err == nil {
		return syncDirOf(final)
	}
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) {
		return err
	}
	old := newDir + ".old"
	if err := os.Rename(final, old); err != nil {
		return err
	}
	if err := os.Rename(newDir, final); err != nil {
		_ = os.Rename(old, final)
		return err
	}
	if err := os.Rename(old, newDir); err != nil {
		return err
	}
	return syncDirOf(final)
}
