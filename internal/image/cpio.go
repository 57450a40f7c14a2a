package image

import (
	"fmt"
	"io"
	"strings"
)

// cpioWriter writes the SVR4 "newc" cpio format the Linux kernel unpacks as an initramfs
// (070701 headers, ASCII hex fields, names and data padded to 4 bytes, TRAILER!!! at the
// end). Wrenn writes it itself so building an image needs no cpio binary, and the output is
// byte-for-byte reproducible: every entry has mtime 0 and a synthetic inode number.
type cpioWriter struct {
	w     io.Writer
	off   int64
	ino   uint32
	names map[string]bool
}

// cpio mode bits (the same values as the st_mode file-type bits).
const (
	cpioDir  = 0o040000
	cpioReg  = 0o100000
	cpioLink = 0o120000
	cpioChr  = 0o020000
)

func newCPIOWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: w, names: map[string]bool{}}
}

// cpioEntry is one archive member. Name is relative ("bin/busybox"), without a leading slash.
type cpioEntry struct {
	Name     string
	Mode     uint32 // file type bits | permission bits
	UID, GID uint32
	DevMajor uint32 // for device nodes
	DevMinor uint32
}

// Dir adds a directory.
func (c *cpioWriter) Dir(name string, perm uint32) error {
	return c.write(cpioEntry{Name: name, Mode: cpioDir | perm&0o7777}, nil)
}

// File adds a regular file with the given content.
func (c *cpioWriter) File(name string, perm uint32, data []byte) error {
	return c.write(cpioEntry{Name: name, Mode: cpioReg | perm&0o7777}, data)
}

// Symlink adds a symbolic link; the target is stored as the entry's data.
func (c *cpioWriter) Symlink(name, target string) error {
	return c.write(cpioEntry{Name: name, Mode: cpioLink | 0o777}, []byte(target))
}

// CharDev adds a character device node (the kernel needs /dev/console to give init a console
// before devtmpfs is mounted).
func (c *cpioWriter) CharDev(name string, perm, major, minor uint32) error {
	return c.write(cpioEntry{Name: name, Mode: cpioChr | perm&0o7777, DevMajor: major, DevMinor: minor}, nil)
}

func (c *cpioWriter) write(e cpioEntry, data []byte) error {
	if err := checkCPIOName(e.Name); err != nil {
		return err
	}
	if c.names[e.Name] {
		return fmt.Errorf("cpio: duplicate entry %q", e.Name)
	}
	c.names[e.Name] = true
	c.ino++
	nlink := uint32(1)
	if e.Mode&0o170000 == cpioDir {
		nlink = 2
	}
	return c.raw(c.ino, e, nlink, data)
}

// raw writes one header + name + data, each padded to a multiple of 4 bytes.
func (c *cpioWriter) raw(ino uint32, e cpioEntry, nlink uint32, data []byte) error {
	name := e.Name + "\x00"
	fields := []uint32{
		ino, e.Mode, e.UID, e.GID, nlink,
		0, // mtime: fixed for reproducible archives
		uint32(len(data)),
		0, 0, // dev major/minor of the file system holding the file
		e.DevMajor, e.DevMinor,
		uint32(len(name)),
		0, // check (only used by the crc format)
	}
	var hdr strings.Builder
	hdr.WriteString("070701")
	for _, f := range fields {
		fmt.Fprintf(&hdr, "%08X", f)
	}
	hdr.WriteString(name)
	if err := c.put([]byte(hdr.String())); err != nil {
		return err
	}
	if err := c.pad(); err != nil {
		return err
	}
	if err := c.put(data); err != nil {
		return err
	}
	return c.pad()
}

// Close writes the trailer entry. It does not close the underlying writer.
func (c *cpioWriter) Close() error {
	return c.raw(0, cpioEntry{Name: "TRAILER!!!"}, 1, nil)
}

func (c *cpioWriter) put(b []byte) error {
	n, err := c.w.Write(b)
	c.off += int64(n)
	if err != nil {
		return fmt.Errorf("cpio: write: %w", err)
	}
	return nil
}

func (c *cpioWriter) pad() error {
	if r := c.off % 4; r != 0 {
		return c.put(make([]byte, 4-r))
	}
	return nil
}

func checkCPIOName(name string) error {
	if name == "" || strings.HasPrefix(name, "/") || name == "TRAILER!!!" || strings.Contains(name, "\x00") {
		return fmt.Errorf("cpio: invalid entry name %q", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("cpio: invalid entry name %q", name)
		}
	}
	return nil
}
