package uffd

import (
	"encoding/json"
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Region is one guest memory region as a VMM announces it in the handshake
// (Firecracker's GuestRegionUffdMapping): where it is mapped in the VMM's address
// space, how long it is, and where its contents start in the memory file.
type Region struct {
	BaseHostVirtAddr uint64 `json:"base_host_virt_addr"`
	Size             uint64 `json:"size"`
	Offset           uint64 `json:"offset"`
	// PageSize is in bytes. PageSizeKiB is its deprecated duplicate, also in bytes
	// despite the name, sent by Firecracker 1.7–1.x; read PageSize first.
	PageSize    uint64 `json:"page_size"`
	PageSizeKiB uint64 `json:"page_size_kib"`
}

func (r Region) pageSize() uint64 {
	if r.PageSize != 0 {
		return r.PageSize
	}
	return r.PageSizeKiB
}

// Memory is anonymous memory registered with a userfaultfd for missing-page faults:
// the VMM's side of a lazy restore. Firecracker makes its own; Wrenn makes one in
// tests and in the Firecracker stand-in, to drive a Handler with real faults.
type Memory struct {
	Mem []byte
	FD  int
}

// NewRegisteredMemory maps size bytes (a multiple of the page size) and registers
// them with a new userfaultfd that reports REMOVE events. Until a handler serves it,
// touching Mem blocks.
func NewRegisteredMemory(size int) (*Memory, error) {
	if size <= 0 || size%unix.Getpagesize() != 0 {
		return nil, fmt.Errorf("uffd memory: size %d is not a positive multiple of the page size", size)
	}
	fd, err := open()
	if err != nil {
		return nil, err
	}
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("uffd memory: mmap %d bytes: %w", size, err)
	}
	reg := uffdioRegister{Range: uffdioRange{Start: uint64(uintptr(unsafe.Pointer(&mem[0]))), Len: uint64(size)}, Mode: registerModeMissing}
	if err := ioctl(fd, ioctlRegister, unsafe.Pointer(&reg)); err != nil {
		unix.Munmap(mem)
		unix.Close(fd)
		return nil, fmt.Errorf("uffd memory: UFFDIO_REGISTER: %w", err)
	}
	return &Memory{Mem: mem, FD: fd}, nil
}

// Available says whether this process may use userfaultfd for kernel faults (root, or
// vm.unprivileged_userfaultfd=1): nil, or why not, for tests to skip with.
func Available() error {
	m, err := NewRegisteredMemory(unix.Getpagesize())
	if err != nil {
		return err
	}
	return m.Close()
}

// Regions describes m as one region at file offset 0 with the host's page size.
func (m *Memory) Regions() []Region {
	ps := uint64(unix.Getpagesize())
	return []Region{{BaseHostVirtAddr: uint64(uintptr(unsafe.Pointer(&m.Mem[0]))), Size: uint64(len(m.Mem)), PageSize: ps, PageSizeKiB: ps}}
}

// Unregister ends missing-page handling of the memory: a thread waiting on a fault
// nobody serves is woken, and unserved pages then read as zeros.
func (m *Memory) Unregister() error {
	rg := uffdioRange{Start: uint64(uintptr(unsafe.Pointer(&m.Mem[0]))), Len: uint64(len(m.Mem))}
	if err := ioctl(m.FD, ioctlUnregister, unsafe.Pointer(&rg)); err != nil {
		return fmt.Errorf("UFFDIO_UNREGISTER: %w", err)
	}
	return nil
}

// Close unmaps the memory and closes the userfaultfd.
func (m *Memory) Close() error {
	err := unix.Munmap(m.Mem)
	if cerr := unix.Close(m.FD); err == nil {
		err = cerr
	}
	return err
}

// SendHandshake sends Firecracker's one handshake message on conn: the JSON array of
// regions as payload (no framing) and the userfaultfd as SCM_RIGHTS.
func SendHandshake(conn *net.UnixConn, regions []Region, fd int) error {
	b, err := json.Marshal(regions)
	if err != nil {
		return fmt.Errorf("uffd handshake: %w", err)
	}
	n, oobn, err := conn.WriteMsgUnix(b, unix.UnixRights(fd), nil)
	if err != nil {
		return fmt.Errorf("uffd handshake: send: %w", err)
	}
	if n != len(b) || oobn == 0 {
		return fmt.Errorf("uffd handshake: sent %d of %d bytes", n, len(b))
	}
	return nil
}
