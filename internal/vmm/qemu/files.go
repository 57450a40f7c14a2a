package qemu

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/wrennhq/wrenn/internal/jail"
	"github.com/wrennhq/wrenn/internal/vmm/vmproc"
)

// inherited are the descriptors a QEMU process starts with (see qmpFD and tapFD).
// The driver's copies are closed once QEMU holds its own.
type inherited struct {
	files []*os.File
}

func (h inherited) Close() {
	for _, f := range h.files {
		f.Close()
	}
}

// openInherited binds and listens on the VM's QMP socket and, for a VM with a NIC,
// attaches to its TAP inside its network namespace. The socket stays at its path
// for as long as QEMU runs, so a restarted agent connects to it as before.
func openInherited(s spec) (inherited, error) {
	var h inherited
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: s.qmpPath(), Net: "unix"})
	if err != nil {
		return h, fmt.Errorf("qmp socket: %w", err)
	}
	ln.SetUnlinkOnClose(false) // QEMU listens on it from now on
	f, err := ln.File()
	ln.Close()
	if err != nil {
		os.Remove(s.qmpPath())
		return h, fmt.Errorf("qmp socket: %w", err)
	}
	h.files = append(h.files, f)
	if s.tap != "" {
		tap, err := vmproc.OpenTAP(s.netns, s.tap)
		if err != nil {
			h.Close()
			os.Remove(s.qmpPath())
			return inherited{}, err
		}
		h.files = append(h.files, tap)
	}
	return h, nil
}

// jailed returns how to spawn QEMU's argv inside s's jail: the helper's path and argv.
// The jail's root mirrors the host paths of the VM's files, so QEMU's argv is the
// same jailed or not (and a half-started QEMU is recognised by its -pidfile path
// either way). Files QEMU writes are given to the jail's uid; the rest of the VM's
// Dir — the agent's records, pause snapshots — is not in the jail at all.
func jailed(s spec, bin, accel string, argv []string) (string, []string, error) {
	j := s.jail
	if err := prepareJailFiles(s); err != nil {
		return "", nil, err
	}
	var mounts []jail.Mount
	for _, p := range []string{s.kernel, s.initrd} {
		if p == "" {
			continue
		}
		if err := readableByAll(p); err != nil {
			return "", nil, err
		}
		mounts = append(mounts, jail.Mount{Source: p})
	}
	for _, p := range []string{s.memoryPath(), s.consolePath(), s.pidPath(), s.disk} {
		if p != "" {
			mounts = append(mounts, jail.Mount{Source: p, Writable: true})
		}
	}
	if !strings.HasPrefix(bin, "/usr/") {
		mounts = append(mounts, jail.Mount{Source: bin, Executable: true})
	}
	var groups []uint32
	if accel == "kvm" {
		mounts = append(mounts, jail.Mount{Source: "/dev/kvm", Writable: true})
		var err error
		if groups, err = jail.DeviceGroups("/dev/kvm"); err != nil {
			return "", nil, err
		}
	}
	helper, err := jail.HelperArgv(jail.Spec{
		Argv: argv, UID: j.UID, GID: j.GID, Groups: groups,
		Mounts: mounts, SystemDirs: true, CgroupProcs: j.CgroupProcs,
	})
	if err != nil {
		return "", nil, err
	}
	return jail.HelperPath, helper, nil
}

// readableByAll refuses a boot file a jailed QEMU could not read: it is shared by
// every VM of a template, so it is not given to one jail's uid.
func readableByAll(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	if fi.Mode().Perm()&0o004 == 0 {
		return fmt.Errorf("jail: %s (mode %v) is not readable by others, so not by the jailed vmm's uid", p, fi.Mode().Perm())
	}
	return nil
}

// prepareJailFiles makes the files a jailed QEMU opens for writing exist and belong
// to the jail's uid: it cannot create files, as the jail's root is read-only. The
// memory file and the disk change owner as the VM moves between slots (a resume may
// get another slot, so another uid).
func prepareJailFiles(s spec) error {
	for _, p := range []string{s.consolePath(), s.pidPath()} {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return fmt.Errorf("jail: %w", err)
		}
		f.Close()
	}
	for _, p := range []string{s.memoryPath(), s.consolePath(), s.pidPath(), s.disk} {
		if p == "" {
			continue
		}
		if err := os.Chown(p, int(s.jail.UID), int(s.jail.GID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("jail: give %s to uid %d: %w", filepath.Base(p), s.jail.UID, err)
		}
	}
	return nil
}
