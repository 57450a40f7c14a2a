package envd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The real implementations of Config.SetClock and Config.Reseed: the only two places where
// /init changes the kernel's state. Both need root (CAP_SYS_TIME, CAP_SYS_ADMIN), which
// envd has inside a guest, and both are only called when Config.InVM is set.

func setSystemClock(t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
}

// maxCreditBits caps the entropy credited for one seed. Kernels since 5.18 cap a credit at
// their 256-bit pool anyway; older ones had a 4096-bit input pool. The cap also keeps the
// count far from overflowing the ioctl's int.
const maxCreditBits = 4096

// reseedCRNG makes the kernel's CRNG depend on seed before it returns.
//
// Why not just write the seed to /dev/urandom: a write mixes the bytes into the input pool
// but does not reseed the CRNG that getrandom(2) and /dev/urandom read from; the kernel
// only reseeds it periodically (every minute, at first). Two clones restored from one
// memory snapshot share that CRNG state, so until the next periodic reseed they would
// hand out the same "random" bytes — the same TLS keys, UUIDs, temp file names.
// RNDADDENTROPY mixes the seed in and credits it as entropy (the host drew it from its
// own CSPRNG, so the credit is honest; it also makes a not-yet-ready CRNG ready), and
// RNDRESEEDCRNG then rebuilds the CRNG from the pool immediately. A reseed also advances
// the kernel's generation counter, which invalidates the per-CPU CRNGs and the vDSO
// getrandom state of every process already running in the clone.
//
// When RNDADDENTROPY is refused (not CAP_SYS_ADMIN, a kernel that does not know it) the
// seed is still written to /dev/urandom, which at least feeds the next reseed. The
// returned error says which step failed; the caller logs it and carries on.
func reseedCRNG(seed []byte) error {
	fd, err := unix.Open("/dev/urandom", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/urandom: %w", err)
	}
	defer unix.Close(fd)

	var errs []error
	if err := addEntropy(fd, seed); err != nil {
		errs = append(errs, err)
		if err := writeAll(fd, seed); err != nil {
			errs = append(errs, fmt.Errorf("fallback write to /dev/urandom: %w", err))
		}
	}
	// The reseed is tried even after a failed credit: the fallback write put the seed in
	// the input pool, and reseeding from there is what makes it count now.
	if _, err := unix.IoctlRetInt(fd, unix.RNDRESEEDCRNG); err != nil {
		errs = append(errs, fmt.Errorf("ioctl RNDRESEEDCRNG: %w", err))
	}
	return errors.Join(errs...)
}

// addEntropy issues RNDADDENTROPY, whose argument is a struct rand_pool_info:
//
//	struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; };
//
// entropy_count is in bits, buf_size in bytes, and buf is a flexible array member that
// follows the two ints directly (offset 8, no padding). The struct is laid out in one
// byte slice in the kernel's (native) byte order; the slice's backing array starts
// 8-byte aligned, like any Go heap allocation of that size.
func addEntropy(fd int, seed []byte) error {
	bits := min(len(seed)*8, maxCreditBits)
	info := make([]byte, 8+len(seed))
	binary.NativeEndian.PutUint32(info[0:4], uint32(bits))
	binary.NativeEndian.PutUint32(info[4:8], uint32(len(seed)))
	copy(info[8:], seed)
	// The uintptr conversion sits in the call expression itself (unsafe.Pointer rule 4);
	// KeepAlive states outright that info must outlive the syscall.
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(unix.RNDADDENTROPY), uintptr(unsafe.Pointer(&info[0])))
	runtime.KeepAlive(info)
	if errno != 0 {
		return fmt.Errorf("ioctl RNDADDENTROPY: %w", errno)
	}
	return nil
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
