package fcstandin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wrennhq/wrenn/internal/uffd"
)

// PageSize is the guest page size the stand-in simulates (Firecracker's default 4 KiB).
const PageSize = 4096

// stateFormat marks the stand-in's snapshot state files; it is not Firecracker's format.
const stateFormat = "wrenn-fcstandin-snapshot/1"

// guestMemory is the simulated guest RAM: anonymous memory, or memory registered with
// a userfaultfd that the driver's handler serves. It remembers which pages were written
// since the last snapshot, boot or load.
type guestMemory struct {
	b     []byte
	u     *uffd.Memory // nil unless restored through a userfaultfd
	dirty []bool
	gen   uint64 // how many times the simulated guest has run
}

func newAnonMemory(size int) (*guestMemory, error) {
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("map %d bytes of simulated guest memory: %w", size, err)
	}
	return &guestMemory{b: b, dirty: make([]bool, size/PageSize)}, nil
}

func (m *guestMemory) close() error {
	if m == nil {
		return nil
	}
	if m.u != nil {
		return m.u.Close()
	}
	return unix.Munmap(m.b)
}

// run simulates the guest running for a while: it writes the generation and the page
// index at the start and end of every page i with (i+gen)%5 == 0, except pages with
// i%4 == 3, which stay zero forever (so memory files have holes).
func (m *guestMemory) run() {
	m.gen++
	for i := range m.dirty {
		if (uint64(i)+m.gen)%5 != 0 || i%4 == 3 {
			continue
		}
		p := m.b[i*PageSize : (i+1)*PageSize]
		binary.LittleEndian.PutUint64(p[0:], m.gen)
		binary.LittleEndian.PutUint64(p[8:], uint64(i))
		binary.LittleEndian.PutUint64(p[PageSize-8:], m.gen^uint64(i))
		m.dirty[i] = true
	}
}

func (m *guestMemory) clean() { clear(m.dirty) }

func (m *guestMemory) sum() string {
	h := sha256.Sum256(m.b)
	return hex.EncodeToString(h[:])
}

var zeroPage = make([]byte, PageSize)

// writeFile writes the memory file of a snapshot: for Full every non-zero page (zero
// pages stay holes) of a truncated file; for Diff the pages written since the last
// snapshot into a file of the memory's size, which is not truncated, so that pointing
// a Diff at its base file merges it in place as Firecracker (since v1.6) does.
func (m *guestMemory) writeFile(path string, diff bool) error {
	flags := os.O_WRONLY | os.O_CREATE
	if !diff {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		return err
	}
	if err := f.Truncate(int64(len(m.b))); err != nil {
		f.Close()
		return err
	}
	for i := range m.dirty {
		p := m.b[i*PageSize : (i+1)*PageSize]
		if diff && !m.dirty[i] || !diff && bytes.Equal(p, zeroPage) {
			continue
		}
		if _, err := f.WriteAt(p, int64(i)*PageSize); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// snapshotState is what the stand-in writes to snapshot_path: enough to check a
// restore (the memory's size and hash) and to restore the device configuration.
type snapshotState struct {
	Format            string          `json:"format"`
	SnapshotType      string          `json:"snapshot_type"`
	MemSizeMiB        int             `json:"mem_size_mib"`
	VcpuCount         int             `json:"vcpu_count"`
	MemorySHA256      string          `json:"memory_sha256"`
	Generation        uint64          `json:"generation"`
	Drives            []string        `json:"drives,omitempty"`
	NetworkInterfaces []string        `json:"network_interfaces,omitempty"`
	MmdsConfig        json.RawMessage `json:"mmds_config,omitempty"`
	Vsock             bool            `json:"vsock,omitempty"`
	Balloon           *balloonState   `json:"balloon,omitempty"`
}

func readState(path string) (*snapshotState, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the snapshot state file: %w", err)
	}
	var st snapshotState
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("the snapshot state file %s is corrupt: %v", path, err)
	}
	if st.Format != stateFormat || st.MemSizeMiB <= 0 || st.VcpuCount <= 0 || len(st.MemorySHA256) != 64 {
		return nil, fmt.Errorf("the snapshot state file %s is corrupt or not a stand-in snapshot", path)
	}
	return &st, nil
}

// loadFromFile fills a new anonymous memory of size bytes from a memory file, which
// must be exactly that long (Firecracker maps it MAP_PRIVATE).
func loadFromFile(path string, size int) (*guestMemory, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot open the memory file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() != int64(size) {
		return nil, fmt.Errorf("the memory file %s has %d bytes, the snapshot's memory has %d", path, fi.Size(), size)
	}
	m, err := newAnonMemory(size)
	if err != nil {
		return nil, err
	}
	if _, err := f.ReadAt(m.b, 0); err != nil {
		m.close()
		return nil, fmt.Errorf("read the memory file: %w", err)
	}
	return m, nil
}

// errUffdTimeout means the driver's handler did not serve every page in time.
var errUffdTimeout = errors.New("the page-fault handler did not serve the guest memory in time")

// loadThroughUffd does Firecracker's side of a UFFD restore: it registers size bytes
// with a new userfaultfd, connects to the handler's socket, sends the regions with the
// fd, then reads every page (each read of a missing page is a fault the handler must
// serve) and returns the memory, its hash and the connection, which stays open.
func loadThroughUffd(socket string, size int, timeout time.Duration) (*guestMemory, string, *net.UnixConn, error) {
	um, err := uffd.NewRegisteredMemory(size)
	if err != nil {
		return nil, "", nil, fmt.Errorf("cannot create the userfaultfd: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		um.Close()
		return nil, "", nil, fmt.Errorf("cannot connect to the UFFD handler socket: %w", err)
	}
	conn := c.(*net.UnixConn)
	if err := uffd.SendHandshake(conn, um.Regions(), um.FD); err != nil {
		conn.Close()
		um.Close()
		return nil, "", nil, err
	}
	m := &guestMemory{b: um.Mem, u: um, dirty: make([]bool, size/PageSize)}
	done := make(chan error, 1)
	go func() { done <- touch(um.Mem) }()
	select {
	case err := <-done:
		if err != nil {
			conn.Close()
			m.close()
			return nil, "", nil, err
		}
		return m, m.sum(), conn, nil
	case <-time.After(timeout):
	}
	// The reader is stuck in a fault nobody serves, and a Go thread stuck in a fault
	// stalls every stop-the-world pause of this process. Unregistering the range wakes
	// it (it then reads zero pages); only then can the memory go.
	if um.Unregister() == nil {
		select {
		case <-done:
			um.Close()
		case <-time.After(5 * time.Second):
		}
	}
	conn.Close()
	return nil, "", nil, errUffdTimeout
}

// touch reads every page of mem the way the kernel does for a VMM: through write(2)
// into a memfd, so each missing page is a fault the handler must serve while this
// thread sits in a system call. A Go thread blocked in a fault taken in user mode
// would stall this process's garbage collector until the fault is served (forever,
// with a broken handler); one blocked in a system call does not.
func touch(mem []byte) error {
	fd, err := unix.MemfdCreate("fcstandin-touch", unix.MFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("memfd_create: %w", err)
	}
	defer unix.Close(fd)
	const chunk = 1 << 20
	for off := 0; off < len(mem); off += chunk {
		end := min(off+chunk, len(mem))
		for done := off; done < end; {
			n, err := unix.Pwrite(fd, mem[done:end], 0)
			if err != nil {
				return fmt.Errorf("read the guest memory: %w", err)
			}
			done += n
		}
	}
	return nil
}
