package qemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/wrennhq/wrenn/internal/vmm"
)

// The fake QEMU's side of snapshots: it takes descriptors over the QMP socket like
// QEMU's getfd, "migrates" by writing fakeState to the descriptor and restores by
// reading it back, exiting like QEMU when what it reads is not exactly fakeState.

const fakeVersion = "7.2.0"

// fakeState is what the fake writes as a VM's device state: big enough that a
// truncation is easy to make, with an end marker so that any truncation is caught.
var fakeState = "FAKE-QEMU-STATE v1\n" + strings.Repeat("device-state ", 2000) + "\nEND\n"

// fdReader reads a unix socket and keeps the descriptors that arrive with the data
// (SCM_RIGHTS), in order, for getfd.
type fdReader struct {
	c   *net.UnixConn
	fds []*os.File
}

func (r *fdReader) Read(p []byte) (int, error) {
	oob := make([]byte, syscall.CmsgSpace(4*4))
	n, oobn, _, _, err := r.c.ReadMsgUnix(p, oob)
	if oobn > 0 {
		msgs, perr := syscall.ParseSocketControlMessage(oob[:oobn])
		if perr == nil {
			for i := range msgs {
				fds, _ := syscall.ParseUnixRights(&msgs[i])
				for _, fd := range fds {
					r.fds = append(r.fds, os.NewFile(uintptr(fd), "received"))
				}
			}
		}
	}
	return n, err
}

func (r *fdReader) take() *os.File {
	if len(r.fds) == 0 {
		return nil
	}
	f := r.fds[0]
	r.fds = r.fds[1:]
	return f
}

func (r *fdReader) closeAll() {
	for _, f := range r.fds {
		f.Close()
	}
}

// snapshotCommand answers the QMP commands of snapshot and restore; f.mu is held.
func (f *fakeQMP) snapshotCommand(cmd string, rawArgs json.RawMessage, r *fdReader, ret func(string), qerr func(class, desc string)) {
	var args struct {
		FDName string `json:"fdname"`
		URI    string `json:"uri"`
	}
	if len(rawArgs) > 0 {
		json.Unmarshal(rawArgs, &args)
	}
	fdNamed := func() *os.File {
		name, ok := strings.CutPrefix(args.URI, "fd:")
		if !ok || f.fds[name] == nil {
			return nil
		}
		file := f.fds[name]
		delete(f.fds, name)
		return file
	}
	switch cmd {
	case "query-version":
		ret(`{"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "fake"}`)
	case "migrate-set-capabilities", "migrate-set-parameters":
		ret("{}")
	case "getfd":
		file := r.take()
		if file == nil {
			qerr("GenericError", "No file descriptor supplied via SCM_RIGHTS")
			return
		}
		if f.fds == nil {
			f.fds = map[string]*os.File{}
		}
		if old := f.fds[args.FDName]; old != nil {
			old.Close()
		}
		f.fds[args.FDName] = file
		ret("{}")
	case "migrate":
		if f.status == "postmigrate" {
			qerr("GenericError", "Can't migrate the vm that was paused due to previous migration")
			return
		}
		file := fdNamed()
		if file == nil {
			qerr("GenericError", "File descriptor named '"+args.URI+"' has not been found")
			return
		}
		defer file.Close()
		prev := f.status
		f.status = "postmigrate"
		if f.failSave || prev == "running" {
			// A real QEMU resumes a VM that was running; ours are paused.
			if prev == "running" {
				f.status = "running"
			}
			io.WriteString(file, fakeState[:100])
			f.migration = migrationInfo{Status: "failed", ErrorDesc: "fake: Unable to write to file: No space left on device"}
			ret("{}")
			return
		}
		if _, err := io.WriteString(file, fakeState); err != nil {
			f.migration = migrationInfo{Status: "failed", ErrorDesc: err.Error()}
		} else {
			f.migration = migrationInfo{Status: "completed"}
		}
		ret("{}")
	case "query-migrate":
		if f.migration.Status == "" {
			ret("{}")
			return
		}
		b, _ := json.Marshal(f.migration)
		ret(string(b))
	case "migrate_cancel":
		ret("{}")
	case "migrate-incoming":
		if f.status != "inmigrate" {
			qerr("GenericError", "'-incoming' was not specified on the command line")
			return
		}
		file := fdNamed()
		if file == nil {
			qerr("GenericError", "File descriptor named '"+args.URI+"' has not been found")
			return
		}
		b, err := io.ReadAll(file)
		file.Close()
		ret("{}")
		if err != nil || string(b) != fakeState {
			fmt.Fprintf(os.Stderr, "qemu-system-x86_64: error while loading state section id 2(ram) (read %d bytes)\n", len(b))
			f.fatal()
			return
		}
		f.loadedFrom = "fake state"
		f.status = "paused"
		f.migration = migrationInfo{Status: "completed"}
	}
}

// fakeVM starts a fake QEMU VM called id and stops it at the end of the test.
func fakeVM(t *testing.T, d *Driver, id string) (vmm.Config, *Machine) {
	t.Helper()
	cfg := testFiles(t)
	cfg.ID = id
	killAllIn(t, cfg.Dir)
	vm, err := d.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Stop(context.Background()) })
	return cfg, vm.(*Machine)
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// The guest RAM file: made fresh (0600, sparse, the VM's size) by Start, linked by a
// pause snapshot, used in place by a restore into the same Dir, copied by any other
// restore, and removed by Stop only when no snapshot shares it.
func TestFakeMemoryFileLifecycle(t *testing.T) {
	d, _ := fakeDriver(t)
	ctx := context.Background()
	cfg, m := fakeVM(t, d, "fake-mem")
	memPath := filepath.Join(cfg.Dir, memoryName)
	fi, err := os.Stat(memPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != int64(cfg.MemoryMiB)<<20 || fi.Mode().Perm() != 0o600 {
		t.Errorf("memory file %d bytes mode %v, want %d bytes 0600", fi.Size(), fi.Mode().Perm(), int64(cfg.MemoryMiB)<<20)
	}
	// Without a snapshot, Stop removes it.
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(memPath); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("memory file after Stop without snapshot: %v", err)
	}

	vm, err := d.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	m = vm.(*Machine)
	ino := inode(t, memPath)
	if err := m.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	snapDir := filepath.Join(cfg.Dir, "snapshot")
	os.Mkdir(snapDir, 0o700)
	snap, err := m.Snapshot(ctx, vmm.SnapshotOptions{Dir: snapDir})
	if err != nil {
		t.Fatal(err)
	}
	if inode(t, filepath.Join(snapDir, snapMemoryName)) != ino {
		t.Error("pause snapshot copied the memory file instead of linking it")
	}
	if st, _ := snap.File(vmm.FileState); st.SHA256 == "" || st.Size != int64(len(fakeState)) {
		t.Errorf("state file entry %+v", st)
	}
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(memPath); err != nil {
		t.Fatalf("Stop removed a memory file a snapshot shares: %v", err)
	}
	// Restore into the same Dir: in place.
	r, err := d.Restore(ctx, cfg, snapDir)
	if err != nil {
		t.Fatal(err)
	}
	if inode(t, memPath) != ino {
		t.Error("restore into the vm's own dir did not use the memory file in place")
	}
	if s, _ := r.(*Machine).Status(ctx); s != "paused" {
		t.Errorf("restored status %q", s)
	}
	// A second snapshot of the restored VM before it ran; then the restored VM
	// resumes and both pause snapshots are withdrawn.
	snap2 := t.TempDir()
	if _, err := r.(*Machine).Snapshot(ctx, vmm.SnapshotOptions{Dir: snap2}); err != nil {
		t.Fatal(err)
	}
	if err := r.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{snapDir, snap2} {
		if _, err := vmm.ReadSnapshotMeta(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s not withdrawn: %v", dir, err)
		}
	}
	_, err = d.Restore(ctx, cfg, snapDir)
	if err == nil || !strings.Contains(err.Error(), "withdrawn") {
		t.Errorf("restore of a withdrawn snapshot: %v", err)
	}
	if err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	// A detached snapshot is a copy; restoring it elsewhere copies again.
	cfg2, m2 := fakeVM(t, d, "fake-mem-detached")
	if err := m2.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	det := t.TempDir()
	if _, err := m2.Snapshot(ctx, vmm.SnapshotOptions{Dir: det, Detached: true}); err != nil {
		t.Fatal(err)
	}
	if inode(t, filepath.Join(det, snapMemoryName)) == inode(t, filepath.Join(cfg2.Dir, memoryName)) {
		t.Error("detached snapshot shares the vm's memory file")
	}
	if err := m2.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := vmm.ReadSnapshotMeta(det); err != nil {
		t.Errorf("detached snapshot withdrawn by resume: %v", err)
	}
	clone := testFiles(t)
	clone.ID = "fake-mem-clone"
	clone.Kernel, clone.Initrd = cfg2.Kernel, cfg2.Initrd
	killAllIn(t, clone.Dir)
	c, err := d.Restore(ctx, clone, det)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop(ctx)
	if inode(t, filepath.Join(clone.Dir, memoryName)) == inode(t, filepath.Join(det, snapMemoryName)) {
		t.Error("restore elsewhere maps the snapshot's memory file itself")
	}
}

// A failed snapshot leaves the directory empty and the VM paused and resumable; a
// second snapshot in one pause is refused and says why.
func TestFakeSnapshotFailures(t *testing.T) {
	d, _ := fakeDriver(t)
	ctx := context.Background()
	_, m := fakeVM(t, d, "fake-migfail")
	if err := m.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, err := m.Snapshot(ctx, vmm.SnapshotOptions{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "No space left") {
		t.Fatalf("failing migration: %v", err)
	}
	t.Log(err)
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failed snapshot left %v", entries)
	}
	if s, _ := m.Status(ctx); s != "paused" {
		t.Errorf("status after failed snapshot %q", s)
	}
	if st, _ := readState(m.Dir()); len(st.Shared) != 0 {
		t.Errorf("failed snapshot still recorded as shared: %v", st.Shared)
	}
	if err := m.Resume(ctx); err != nil {
		t.Fatalf("resume after failed snapshot: %v", err)
	}

	_, m = fakeVM(t, d, "fake-twice")
	if err := m.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	first := t.TempDir()
	if _, err := m.Snapshot(ctx, vmm.SnapshotOptions{Dir: first}); err != nil {
		t.Fatal(err)
	}
	second := t.TempDir()
	if _, err := m.Snapshot(ctx, vmm.SnapshotOptions{Dir: second}); err == nil || !strings.Contains(err.Error(), "resume it before") {
		t.Errorf("second snapshot in one pause: %v", err)
	}
	if entries, _ := os.ReadDir(second); len(entries) != 0 {
		t.Errorf("refused snapshot left %v", entries)
	}
	if _, err := vmm.ReadSnapshotMeta(first); err != nil {
		t.Errorf("first snapshot damaged: %v", err)
	}
	if _, err := m.Snapshot(ctx, vmm.SnapshotOptions{Dir: first}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("snapshot into a non-empty dir: %v", err)
	}
}

// Restore checks compatibility and the snapshot's files before QEMU starts, and a
// QEMU that cannot load the state leaves nothing behind: no process, no memory copy,
// the snapshot as it was.
func TestFakeRestoreFailures(t *testing.T) {
	d, _ := fakeDriver(t)
	ctx := context.Background()
	cfg, m := fakeVM(t, d, "fake-src")
	if err := m.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	snapDir := t.TempDir()
	snap, err := m.Snapshot(ctx, vmm.SnapshotOptions{Dir: snapDir})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	newClone := func(id string) vmm.Config {
		c := testFiles(t)
		c.ID = id
		c.Kernel, c.Initrd = cfg.Kernel, cfg.Initrd
		killAllIn(t, c.Dir)
		return c
	}
	nothingStarted := func(c vmm.Config) {
		t.Helper()
		assertNoProcesses(t, c.Dir)
		for _, n := range []string{stderrName, memoryName, qmpSocketName} {
			if _, err := os.Stat(filepath.Join(c.Dir, n)); err == nil {
				t.Errorf("%s exists after a refused restore", n)
			}
		}
	}
	bad := newClone("fake-mismatch")
	bad.MemoryMiB = 256
	if _, err := d.Restore(ctx, bad, snapDir); !errors.Is(err, vmm.ErrIncompatibleSnapshot) {
		t.Errorf("restore with other memory size: %v", err)
	} else {
		t.Log(err)
	}
	nothingStarted(bad)
	other := newClone("fake-otherkernel")
	other.Kernel = filepath.Join(t.TempDir(), "vmlinux")
	os.WriteFile(other.Kernel, []byte("another kernel"), 0o600)
	if _, err := d.Restore(ctx, other, snapDir); !errors.Is(err, vmm.ErrIncompatibleSnapshot) || !strings.Contains(err.Error(), "kernel sha256") {
		t.Errorf("restore with another kernel: %v", err)
	}
	nothingStarted(other)

	// A state file QEMU cannot load, but whose meta was made to match it.
	st, _ := snap.File(vmm.FileState)
	statePath := filepath.Join(snapDir, st.Name)
	good, _ := os.ReadFile(statePath)
	short := good[:len(good)/3]
	os.WriteFile(statePath, short, 0o600)
	meta := snap.Meta
	meta.Files = slices.Clone(meta.Files)
	for i := range meta.Files {
		if meta.Files[i].Role == vmm.FileState {
			meta.Files[i].Size, meta.Files[i].SHA256 = int64(len(short)), fmt.Sprintf("%x", sha256.Sum256(short))
		}
	}
	if err := vmm.WriteSnapshotMeta(snapDir, meta); err != nil {
		t.Fatal(err)
	}
	for _, c := range []vmm.Config{newClone("fake-loadfail"), cfg} { // a copy, then in place
		_, err := d.Restore(ctx, c, snapDir)
		if err == nil || !strings.Contains(err.Error(), "load device state") || !strings.Contains(err.Error(), "error while loading state") {
			t.Fatalf("restore of an unloadable state: %v", err)
		}
		t.Log(err)
		assertNoProcesses(t, c.Dir)
		if c.Dir == cfg.Dir {
			if !sameFile(filepath.Join(c.Dir, memoryName), filepath.Join(snapDir, snapMemoryName)) {
				t.Error("failed in-place restore lost the vm's link to its memory")
			}
		} else if _, err := os.Stat(filepath.Join(c.Dir, memoryName)); err == nil {
			t.Error("failed restore left its memory copy")
		}
	}
	if got, _ := os.ReadFile(statePath); !bytes.Equal(got, short) {
		t.Error("failed restore changed the state file")
	}
}
