package filesystem

import (
	"errors"
	"fmt"
	"github.com/wrennhq/wrenn/internal/envd/fsx"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"connectrpc.com/connect"
	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"

	rpc "github.com/wrennhq/wrenn/gen/envd/filesystem"
)

// Filesystem magic numbers (Linux include/uapi/linux/magic.h and the CIFS/SMB2 client)
// of the mounts inotify cannot observe reliably: changes made by other machines never
// reach the local kernel, so a watch there silently misses events.
const (
	nfsSuperMagic  = 0x6969
	smbSuperMagic  = 0x517b
	cifsMagic      = 0xff534d42
	smb2Magic      = 0xfe534d42
	fuseSuperMagic = 0x65735546
)

func isNetworkFS(magic uint32) bool {
	switch magic {
	case nfsSuperMagic, smbSuperMagic, cifsMagic, smb2Magic, fuseSuperMagic:
		return true
	}
	return false
}

// statfsType returns the filesystem magic number of the mount holding path.
func statfsType(path string) (uint32, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	// f_type is a signed word; the CIFS magic is negative on 32-bit kernels.
	return uint32(sfs.Type), nil
}

// watchTarget validates a WatchDir/CreateWatcher request and returns the absolute
// directory to watch (as requested, not symlink-resolved, so event names and entry paths
// are relative to what the client asked for).
func (s *Service) watchTarget(h http.Header, path string, allowNetwork bool) (string, error) {
	u, err := s.user(h)
	if err != nil {
		return "", err
	}
	abs, err := s.resolve(path, u)
	if err != nil {
		return "", err
	}
	info, err := os.Stat(abs)
	if err != nil {
		if missing(err) {
			return "", connect.NewError(connect.CodeNotFound, fmt.Errorf("path %s not found: %w", abs, err))
		}
		if c := pathCode(err); c != connect.CodeInternal {
			return "", connect.NewError(c, fmt.Errorf("error statting path %s: %w", abs, err))
		}
		return "", s.internal("watch", fmt.Errorf("error statting path %s: %w", abs, err))
	}
	if !info.IsDir() {
		return "", connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("path %s not a directory", abs))
	}
	if !allowNetwork {
		magic, err := s.fsType(abs)
		if err != nil {
			return "", s.internal("watch", fmt.Errorf("error checking mount status: %w", err))
		}
		if isNetworkFS(magic) {
			return "", connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("cannot watch path on network filesystem: %s", abs))
		}
	}
	return abs, nil
}

// dirWatch turns inotify events under one directory into protocol events. Its methods
// other than the channels are meant for the single goroutine consuming it.
type dirWatch struct {
	root         string
	recursive    bool
	includeEntry bool
	names        *idNames
	fsw          *fsnotify.Watcher

	// errs receives the watcher's first error. A dedicated goroutine drains
	// fsw.Errors because fsnotify can send an error while holding the lock that
	// Add/Remove need; if the consumer (which calls Add/Remove) were the only reader,
	// the two would deadlock.
	errs    chan error
	drained chan struct{}

	dirs map[string]struct{} // watched subdirectories (recursive mode), root excluded
	// dupRename holds directories whose own IN_MOVE_SELF fsnotify already turned into a
	// second RENAME event (seen as Remove failing with ErrNonExistentWatch); that
	// duplicate is dropped so a moved directory yields one RENAME, as with E2B.
	dupRename map[string]struct{}
}

// openDirWatch arms inotify on root and, when recursive, on every directory below it
// (not following symlinks).
func openDirWatch(root string, recursive, includeEntry bool, names *idNames) (*dirWatch, error) {
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("error creating watcher: %w", err)
	}
	d := &dirWatch{
		root:         root,
		recursive:    recursive,
		includeEntry: includeEntry,
		names:        names,
		fsw:          fsw,
		errs:         make(chan error, 1),
		drained:      make(chan struct{}),
		dirs:         map[string]struct{}{},
		dupRename:    map[string]struct{}{},
	}
	go d.drainErrors()
	if err := fsw.Add(root); err != nil {
		d.close()
		return nil, fmt.Errorf("error adding path %s to watcher: %w", root, err)
	}
	if recursive {
		if _, err := d.addTree(root, false); err != nil {
			d.close()
			return nil, err
		}
	}
	return d, nil
}

func (d *dirWatch) drainErrors() {
	defer close(d.drained)
	for err := range d.fsw.Errors { // closed by fsw.Close
		select {
		case d.errs <- err:
		default: // the first error already ends the watch
		}
	}
}

// events is the raw inotify event stream; closed when the watcher is.
func (d *dirWatch) events() <-chan fsnotify.Event { return d.fsw.Events }

// close releases the inotify descriptor and waits for fsnotify's and our goroutines.
func (d *dirWatch) close() {
	_ = d.fsw.Close() // waits for fsnotify's reader; only fails if already closed
	<-d.drained
}

// addDir starts watching dir; a directory that vanished first is not an error.
func (d *dirWatch) addDir(dir string) error {
	if err := d.fsw.Add(dir); err != nil {
		if missing(err) {
			return nil
		}
		return fmt.Errorf("error adding path %s to watcher: %w", dir, err)
	}
	d.dirs[dir] = struct{}{}
	return nil
}

// addTree watches every directory below dir (dir itself must already be watched).
// With announce, it returns a CREATE event for every entry found: they appeared
// together with a new or moved-in directory, before its watch existed, so inotify did
// not report them (e.g. `mkdir -p a/b/c` or `mv tree watched/`).
func (d *dirWatch) addTree(dir string, announce bool) ([]*rpc.FilesystemEvent, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		if missing(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("error reading directory %s: %w", dir, err)
	}
	var out []*rpc.FilesystemEvent
	for _, de := range des {
		p := filepath.Join(dir, de.Name())
		if announce {
			if ev := d.event(p, rpc.EventType_EVENT_TYPE_CREATE, d.entryFor(p)); ev != nil {
				out = append(out, ev)
			}
		}
		if !de.IsDir() { // dirent type: symlinks to directories are not entered
			continue
		}
		if err := d.addDir(p); err != nil {
			return out, err
		}
		more, err := d.addTree(p, announce)
		out = append(out, more...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// handle converts one inotify event into protocol events and, in recursive mode,
// keeps the set of watched directories in step with the tree. An error means the
// watch can no longer be kept complete (e.g. out of inotify watches); the events
// returned with it are still valid.
func (d *dirWatch) handle(ev fsnotify.Event) ([]*rpc.FilesystemEvent, error) {
	// An upload's temporary inode, named or not yet linked, is not the user's file; the
	// target's own events follow when it is put in place. Unlinked inodes only ever
	// see writes and attribute changes.
	if fsx.IsUploadTemp(ev.Name) || (ev.Op&^(fsnotify.Write|fsnotify.Chmod) == 0 && fsx.IsUnlinkedTemp(ev.Name)) {
		return nil, nil
	}
	if d.recursive && ev.Op == fsnotify.Rename {
		if _, dup := d.dupRename[ev.Name]; dup {
			delete(d.dupRename, ev.Name)
			return nil, nil
		}
	}
	var entry *rpc.EntryInfo
	if d.includeEntry && ev.Op&(fsnotify.Create|fsnotify.Write|fsnotify.Chmod) != 0 {
		entry = d.entryFor(ev.Name)
	}
	// The order in which one OS event's operations are emitted (spec §4.3).
	opOrder := [...]struct {
		op fsnotify.Op
		t  rpc.EventType
	}{
		{fsnotify.Create, rpc.EventType_EVENT_TYPE_CREATE},
		{fsnotify.Rename, rpc.EventType_EVENT_TYPE_RENAME},
		{fsnotify.Chmod, rpc.EventType_EVENT_TYPE_CHMOD},
		{fsnotify.Write, rpc.EventType_EVENT_TYPE_WRITE},
		{fsnotify.Remove, rpc.EventType_EVENT_TYPE_REMOVE},
	}
	var out []*rpc.FilesystemEvent
	for _, o := range opOrder {
		if !ev.Has(o.op) {
			continue
		}
		var e *rpc.EntryInfo
		if o.t != rpc.EventType_EVENT_TYPE_RENAME && o.t != rpc.EventType_EVENT_TYPE_REMOVE {
			e = entry
		}
		if fe := d.event(ev.Name, o.t, e); fe != nil {
			out = append(out, fe)
		}
	}
	if !d.recursive || ev.Name == d.root {
		return out, nil
	}
	if ev.Has(fsnotify.Rename) || ev.Has(fsnotify.Remove) {
		d.forget(ev.Name, ev.Has(fsnotify.Rename))
	}
	if ev.Has(fsnotify.Create) {
		more, err := d.created(ev.Name)
		out = append(out, more...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// created starts watching a directory that appeared under the tree.
func (d *dirWatch) created(p string) ([]*rpc.FilesystemEvent, error) {
	info, err := os.Lstat(p)
	if err != nil || !info.IsDir() {
		return nil, nil // a file, a symlink, or already gone
	}
	delete(d.dupRename, p)
	_, known := d.dirs[p]
	if err := d.addDir(p); err != nil { // re-added even if known: it may be a new inode
		return nil, err
	}
	if known {
		// Already walked (announced by a parent's walk before its own CREATE arrived).
		return nil, nil
	}
	return d.addTree(p, true)
}

// forget stops watching a directory that was renamed away or removed, and everything
// below it: the kernel keeps watches on a moved directory, and their events would
// otherwise carry stale names.
func (d *dirWatch) forget(p string, renamed bool) {
	if _, ok := d.dirs[p]; !ok {
		return
	}
	prefix := p + string(filepath.Separator)
	for dir := range d.dirs {
		if dir != p && !strings.HasPrefix(dir, prefix) {
			continue
		}
		delete(d.dirs, dir)
		err := d.fsw.Remove(dir)
		if renamed && dir == p && errors.Is(err, fsnotify.ErrNonExistentWatch) {
			// fsnotify already handled the directory's IN_MOVE_SELF and will deliver
			// it as a second RENAME event.
			if len(d.dupRename) >= maxDupRenames {
				clear(d.dupRename)
			}
			d.dupRename[p] = struct{}{}
		}
	}
}

// maxDupRenames bounds dupRename in case expected duplicates never arrive.
const maxDupRenames = 1024

// event builds a protocol event for path p, named relative to the watched directory.
func (d *dirWatch) event(p string, t rpc.EventType, entry *rpc.EntryInfo) *rpc.FilesystemEvent {
	rel, err := filepath.Rel(d.root, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return nil // not under the watched directory; cannot happen with inotify
	}
	return &rpc.FilesystemEvent{Name: rel, Type: t, Entry: entry}
}

// entryFor describes p for include_entry, best effort: a file already gone gets none.
func (d *dirWatch) entryFor(p string) *rpc.EntryInfo {
	if !d.includeEntry {
		return nil
	}
	e, err := buildEntry(p, p, d.names)
	if err != nil {
		return nil
	}
	return e
}
