package uffd

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Linux userfaultfd UAPI (include/uapi/linux/userfaultfd.h), x86_64 and arm64 alike:
// golang.org/x/sys does not carry these.
const (
	uffdAPI = 0xAA

	ioctlAPI        = 0xC018AA3F // _IOWR(0xAA, 0x3F, struct uffdio_api)
	ioctlRegister   = 0xC020AA00 // _IOWR(0xAA, 0x00, struct uffdio_register)
	ioctlUnregister = 0x8010AA01 // _IOR(0xAA, 0x01, struct uffdio_range)
	ioctlWake       = 0x8010AA02 // _IOR(0xAA, 0x02, struct uffdio_range)
	ioctlCopy       = 0xC028AA03 // _IOWR(0xAA, 0x03, struct uffdio_copy)
	ioctlZeropage   = 0xC020AA04 // _IOWR(0xAA, 0x04, struct uffdio_zeropage)

	registerModeMissing = 1 << 0
	featureEventRemove  = 1 << 3

	eventPagefault = 0x12
	eventRemove    = 0x15

	msgSize = 32 // sizeof(struct uffd_msg)
)

type uffdioAPI struct {
	API, Features, Ioctls uint64
}

type uffdioRange struct {
	Start, Len uint64
}

type uffdioRegister struct {
	Range  uffdioRange
	Mode   uint64
	Ioctls uint64
}

type uffdioCopy struct {
	Dst, Src, Len, Mode uint64
	Copy                int64
}

type uffdioZeropage struct {
	Range    uffdioRange
	Mode     uint64
	Zeropage int64
}

// message is a decoded struct uffd_msg: for a page fault A is the flags and B the
// address; for a remove, [A, B) is the range.
type message struct {
	Event uint8
	A, B  uint64
}

func decodeMessage(b []byte) message {
	return message{
		Event: b[0],
		A:     *(*uint64)(unsafe.Pointer(&b[8])),
		B:     *(*uint64)(unsafe.Pointer(&b[16])),
	}
}

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
	if errno != 0 {
		return errno
	}
	return nil
}

// open creates a userfaultfd (non-blocking, close-on-exec) and negotiates the API with
// the REMOVE event, as Firecracker does.
func open() (int, error) {
	fd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK, 0, 0)
	if errno != 0 {
		return -1, fmt.Errorf("userfaultfd: %w", errno)
	}
	api := uffdioAPI{API: uffdAPI, Features: featureEventRemove}
	if err := ioctl(int(fd), ioctlAPI, unsafe.Pointer(&api)); err != nil {
		unix.Close(int(fd))
		return -1, fmt.Errorf("UFFDIO_API: %w", err)
	}
	return int(fd), nil
}
