package sampling

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// atClkTck is AT_CLKTCK, the auxiliary vector entry in which the kernel passes every
// process the unit of /proc's CPU times (USER_HZ): what sysconf(_SC_CLK_TCK) returns,
// read here without cgo.
const atClkTck = 17

// ClockTicks is the number of /proc CPU-time ticks per second: from the auxiliary
// vector, else 100, which USER_HZ is on every Linux architecture Wrenn runs on.
func ClockTicks() float64 {
	if auxv, err := unix.Auxv(); err == nil {
		for _, kv := range auxv {
			if kv[0] == atClkTck && kv[1] > 0 {
				return float64(kv[1])
			}
		}
	}
	return 100
}

// procReader reads small /proc files into one reused buffer: the sampler reads two per
// sandbox twice a second, and allocating for each would be most of its cost.
type procReader struct {
	buf  [1024]byte
	path []byte
}

// read returns /proc/{pid}/{name}'s content, valid until the next read.
func (r *procReader) read(pid int, name string) ([]byte, error) {
	r.path = append(strconv.AppendInt(append(r.path[:0], "/proc/"...), int64(pid), 10), '/')
	r.path = append(r.path, name...)
	path := string(r.path)
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(fd)
	n, err := unix.Read(fd, r.buf[:])
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if n == len(r.buf) {
		return nil, fmt.Errorf("read %s: longer than %d bytes", path, len(r.buf))
	}
	return r.buf[:n], nil
}

// cpuTicks is the CPU time process pid has used, user and system, all its threads
// (a VMM's vCPU threads included), in clock ticks (/proc/{pid}/stat fields 14 and 15).
func (r *procReader) cpuTicks(pid int) (uint64, error) {
	b, err := r.read(pid, "stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces and
	// parentheses itself: fields are counted from after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	var utime, stime uint64
	field := 2
	for rest := b[i+1:]; len(rest) > 0 && field < 15; {
		rest = bytes.TrimLeft(rest, " ")
		end := bytes.IndexByte(rest, ' ')
		if end < 0 {
			end = len(rest)
		}
		field++
		switch field {
		case 14:
			utime, err = parseUint(rest[:end])
		case 15:
			stime, err = parseUint(rest[:end])
		}
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat field %d: %w", pid, field, err)
		}
		rest = rest[end:]
	}
	if field < 15 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields, want at least 15", pid, field)
	}
	return utime + stime, nil
}

// residentBytes is process pid's resident memory: /proc/{pid}/statm's second field
// (pages) times the page size, the same count as VmRSS in /proc/{pid}/status (anon,
// file and shmem pages; for QEMU that includes guest RAM it has touched, which is
// a shared file mapping), from a file the kernel formats far more cheaply.
func (r *procReader) residentBytes(pid int) (int64, error) {
	b, err := r.read(pid, "statm")
	if err != nil {
		return 0, err
	}
	_, rest, _ := bytes.Cut(b, []byte{' '})
	resident, _, _ := bytes.Cut(rest, []byte{' '})
	pages, err := parseUint(resident)
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/statm: %w", pid, err)
	}
	return int64(pages) * int64(unix.Getpagesize()), nil
}

func parseUint(b []byte) (uint64, error) {
	if len(b) == 0 {
		return 0, errors.New("empty number")
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("not a number: %q", b)
		}
		n = n*10 + uint64(c-'0')
	}
	return n, nil
}
