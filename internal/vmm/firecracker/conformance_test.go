package firecracker

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/vmm"
	"github.com/wrennhq/wrenn/internal/vmm/firecracker/fcstandin"
	"github.com/wrennhq/wrenn/internal/vmm/vmmtest"
)

// TestConformanceStandin runs the vmm seam's conformance suite on the driver with the
// spec-checking stand-in as its Firecracker: every lifecycle, adoption, snapshot and
// restore case, with each request checked against Firecracker's published API. (No
// guest runs: the cases that need one are for the real-Firecracker run on a KVM host.)
func TestConformanceStandin(t *testing.T) {
	r := newRig(t)
	n := 0
	vmmtest.Run(t, vmmtest.Harness{
		New: func(t *testing.T) vmm.Driver {
			d, err := Open(vmm.Options{Binary: r.d.bin, StartTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			return d
		},
		Config: func(t *testing.T) vmm.Config {
			n++
			return r.config(fmt.Sprint("conf-", n))
		},
		FailingConfig: func(t *testing.T) vmm.Config {
			n++
			return r.config(fmt.Sprint(fcstandin.FailIDPrefix, n))
		},
		Timeout:   10 * time.Second,
		Processes: processesIn,
	})
}

// processesIn lists the processes running in dir (Firecracker runs in its VM's Dir
// and names its files relative to it, so its command line does not mention it).
func processesIn(dir string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd")); err == nil && cwd == dir {
			pids = append(pids, pid)
		}
	}
	return pids
}
