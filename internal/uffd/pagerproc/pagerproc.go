// Package pagerproc runs a uffd.Handler over a snapshot's memfile in a process of its
// own, so that a lazily restored VM keeps its memory server when the host agent that
// started it exits or restarts (the agent adopts running VMs; a VM whose page faults
// nobody serves would hang). The process serves until its VMM goes away, answers
// questions about what it served on a control socket, and kills its VMM if serving
// fails.
//
// As with package jail, the process is the running binary started again
// (/proc/self/exe) with argv[0] set to HelperName; this package's init function turns
// such a process into the page server before the rest of the program runs, so any
// binary that links it — the agent, and the tests — serves with nothing to install.
package pagerproc

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wrennhq/wrenn/internal/memfile"
	"github.com/wrennhq/wrenn/internal/uffd"
)

// handshakeTimeout is how long a page server waits for its VMM to connect: the VMM
// connects during its snapshot load, right after the server starts; a server whose
// VMM never came (its restore failed, its agent crashed) then exits.
const handshakeTimeout = 2 * time.Minute

// HelperName is argv[0] of a page server process.
const HelperName = "wrenn-uffd"

// Spec says what one page server serves. The uffd socket's listener is its fd 3 and
// the control socket's its fd 4.
type Spec struct {
	// MemDir holds the memory (memfile.Open).
	MemDir string `json:"mem_dir"`
	// PrefetchFile is a JSON list of memory-file offsets to prefetch ("" = none).
	PrefetchFile string `json:"prefetch_file,omitempty"`
	FaultAround  int    `json:"fault_around,omitempty"`
	// CgroupProcs are cgroup.procs files the server joins first, so that its memory
	// and CPU count against its sandbox, not the agent.
	CgroupProcs []string `json:"cgroup_procs,omitempty"`
}

// Report is what the control socket answers to "status".
type Report struct {
	Ready bool `json:"ready"`
	uffd.Stats
	PeerPID int `json:"peer_pid,omitempty"`
}

func init() {
	if len(os.Args) != 2 || os.Args[0] != HelperName || !strings.HasPrefix(os.Args[1], "{") {
		return
	}
	if err := serve(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "wrenn-uffd:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func serve(encoded string) error {
	var s Spec
	if err := json.Unmarshal([]byte(encoded), &s); err != nil {
		return fmt.Errorf("decode spec: %w", err)
	}
	for _, p := range s.CgroupProcs {
		if filepath.Base(p) != "cgroup.procs" {
			return fmt.Errorf("%q is not a cgroup.procs file", p)
		}
		if err := os.WriteFile(p, []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
			return fmt.Errorf("join cgroup: %w", err)
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	uffdLn, err := listenerFrom(3, "uffd")
	if err != nil {
		return err
	}
	ctlLn, err := listenerFrom(4, "control")
	if err != nil {
		return err
	}
	mem, err := memfile.Open(s.MemDir)
	if err != nil {
		return err
	}
	defer mem.Close()
	var prefetch []int64
	if s.PrefetchFile != "" {
		if b, err := os.ReadFile(s.PrefetchFile); err == nil {
			json.Unmarshal(b, &prefetch)
		}
	}
	h, err := uffd.Serve(uffdLn, mem, uffd.Options{Logger: log, Prefetch: prefetch, FaultAround: s.FaultAround,
		HandshakeTimeout: handshakeTimeout})
	if err != nil {
		return err
	}
	go answer(ctlLn, h)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-h.Done():
	case sig := <-sigs:
		// Its VMM may still run: stopping would hand it zero pages, so it is killed.
		h.Abort(fmt.Errorf("page server got %v", sig))
		ctlLn.Close()
		return nil
	}
	ctlLn.Close()
	return h.Err()
}

func listenerFrom(fd uintptr, what string) (*net.UnixListener, error) {
	f := os.NewFile(fd, what)
	defer f.Close()
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("%s socket (fd %d): %w", what, fd, err)
	}
	u, ok := ln.(*net.UnixListener)
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("%s socket (fd %d) is not a unix socket", what, fd)
	}
	u.SetUnlinkOnClose(true)
	return u, nil
}

// answer serves the control socket: one request line ("status" or "touched") and one
// JSON answer per connection.
func answer(ln *net.UnixListener, h *uffd.Handler) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				return
			}
			var v any
			switch strings.TrimSpace(line) {
			case "status":
				st := Report{Stats: h.Stats()}
				select {
				case <-h.Ready():
					st.Ready, st.PeerPID = true, h.PeerPID()
				default:
				}
				v = st
			case "touched":
				v = h.Touched()
			default:
				v = map[string]string{"error": "unknown request"}
			}
			json.NewEncoder(c).Encode(v)
		}()
	}
}
