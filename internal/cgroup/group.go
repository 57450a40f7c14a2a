package cgroup

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
)

// deleteGrace is how long Delete waits for processes still in the group to finish
// exiting before it gives up.
const deleteGrace = 2 * time.Second

// Group is one sandbox's cgroup.
type Group struct {
	name string
	path string // the cgroup path, e.g. "/wrenn/sb-1"
	v1   cgroup1.Cgroup
	v2   *cgroup2.Manager
	// ctl is the directory holding each controller's files, keyed by controller
	// name ("cpu", "cpuacct", "memory", "pids", "blkio"); on v2 all are one.
	ctl  map[string]string
	dirs []string // the distinct directories: one per v1 hierarchy, one on v2

	applied     Limits
	swapLimited bool
}

func (g *Group) setV1(cg cgroup1.Cgroup) error {
	byName, roots := v1Roots(cg.Subsystems())
	if len(roots) == 0 {
		return errors.New("no cgroup v1 hierarchy in use")
	}
	g.v1 = cg
	g.ctl = map[string]string{}
	for n, r := range byName {
		g.ctl[string(n)] = filepath.Join(r, g.path)
	}
	g.dirs = nil
	for _, r := range roots {
		g.dirs = append(g.dirs, filepath.Join(r, g.path))
	}
	return nil
}

func (g *Group) setV2(mgr *cgroup2.Manager, dir string) {
	g.v2 = mgr
	g.dirs = []string{dir}
	g.ctl = map[string]string{}
	for _, n := range []string{"cpu", "cpuacct", "memory", "pids", "io"} {
		g.ctl[n] = dir
	}
}

// Name is the sandbox name the group was made for.
func (g *Group) Name() string { return g.name }

// Dirs are the group's absolute directories: one per v1 hierarchy, one on v2.
func (g *Group) Dirs() []string { return slices.Clone(g.dirs) }

// ProcsFiles are the absolute paths of the cgroup.procs files a process must be
// written to (see Join) to be in the group: one per v1 hierarchy, one on v2.
func (g *Group) ProcsFiles() []string {
	out := make([]string, len(g.dirs))
	for i, d := range g.dirs {
		out[i] = filepath.Join(d, "cgroup.procs")
	}
	return out
}

// Add moves process pid (with its threads) into the group.
func (g *Group) Add(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("add pid %d to cgroup %s: invalid pid", pid, g.name)
	}
	var err error
	if g.v2 != nil {
		err = g.v2.AddProc(uint64(pid))
	} else {
		err = g.v1.AddProc(uint64(pid))
	}
	if err != nil {
		return fmt.Errorf("add pid %d to cgroup %s: %w", pid, g.name, err)
	}
	return nil
}

// Applied returns the limits in force as set by Create (or read back by Load): a
// field the host could not set (IOWeight without a weight file) is 0.
func (g *Group) Applied() Limits { return g.applied }

// SwapLimited says whether swap is limited too (v1 memory.memsw, v2
// memory.swap.max); false where the kernel does not account swap, or without a
// memory limit.
func (g *Group) SwapLimited() bool { return g.swapLimited }

// OOMKills returns how many processes the kernel's OOM killer has killed in the
// group because of its memory limit.
func (g *Group) OOMKills() (uint64, error) {
	dir, ok := g.ctl["memory"]
	if !ok {
		return 0, fmt.Errorf("read OOM kills of cgroup %s: no memory controller", g.name)
	}
	file, key := "memory.oom_control", "oom_kill" // v1, kernel ≥ 4.13
	if g.v2 != nil {
		file = "memory.events"
	}
	n, found, err := readKey(filepath.Join(dir, file), key)
	if err != nil {
		return 0, fmt.Errorf("read OOM kills of cgroup %s: %w", g.name, err)
	}
	if !found {
		return 0, fmt.Errorf("read OOM kills of cgroup %s: no %s in %s (kernel too old)", g.name, key, file)
	}
	return n, nil
}

// Usage reads the group's memory, CPU and task counters.
func (g *Group) Usage() (Usage, error) {
	var u Usage
	var err error
	wrap := func(err error) (Usage, error) {
		return Usage{}, fmt.Errorf("read usage of cgroup %s: %w", g.name, err)
	}
	mem, pids := g.ctl["memory"], g.ctl["pids"]
	if g.v2 != nil {
		if u.MemoryBytes, err = readUint(filepath.Join(mem, "memory.current")); err != nil {
			return wrap(err)
		}
		// memory.peak is new in Linux 5.19; 0 before.
		if u.MemoryMaxBytes, err = readUint(filepath.Join(mem, "memory.peak")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return wrap(err)
		}
		usec, _, err := readKey(filepath.Join(g.ctl["cpu"], "cpu.stat"), "usage_usec")
		if err != nil {
			return wrap(err)
		}
		u.CPUNanos = usec * 1000
	} else {
		if u.MemoryBytes, err = readUint(filepath.Join(mem, "memory.usage_in_bytes")); err != nil {
			return wrap(err)
		}
		if u.MemoryMaxBytes, err = readUint(filepath.Join(mem, "memory.max_usage_in_bytes")); err != nil {
			return wrap(err)
		}
		if acct, ok := g.ctl["cpuacct"]; ok {
			if u.CPUNanos, err = readUint(filepath.Join(acct, "cpuacct.usage")); err != nil {
				return wrap(err)
			}
		}
	}
	if u.Pids, err = readUint(filepath.Join(pids, "pids.current")); err != nil {
		return wrap(err)
	}
	return u, nil
}

// Delete removes the group from every hierarchy. It kills nothing: if processes are
// still in it, it waits a little for them to finish exiting (bounded by ctx), then
// fails with an error wrapping ErrNotEmpty. Deleting a group that is gone is not an
// error.
func (g *Group) Delete(ctx context.Context) error {
	deadline := time.NewTimer(deleteGrace)
	defer deadline.Stop()
	for {
		pids, err := g.pids()
		if err != nil {
			return fmt.Errorf("delete cgroup %s: %w", g.name, err)
		}
		if len(pids) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("delete cgroup %s: %w (pids %v): %w", g.name, ErrNotEmpty, pids, ctx.Err())
		case <-deadline.C:
			return fmt.Errorf("delete cgroup %s: %w (pids %v)", g.name, ErrNotEmpty, pids)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if !g.exists() {
		return nil
	}
	var err error
	if g.v2 != nil {
		err = g.v2.Delete()
	} else {
		err = g.v1.Delete()
	}
	if err != nil && g.exists() {
		return fmt.Errorf("delete cgroup %s: %w", g.name, err)
	}
	return nil
}

// exists says whether any of the group's directories is still there.
func (g *Group) exists() bool {
	for _, d := range g.dirs {
		if _, err := os.Stat(d); err == nil {
			return true
		}
	}
	return false
}

// pids lists the processes in the group or below it, in any hierarchy.
func (g *Group) pids() ([]int, error) {
	var out []int
	for _, d := range g.dirs {
		err := filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if !e.IsDir() {
				return nil
			}
			b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			for _, f := range strings.Fields(string(b)) {
				pid, err := strconv.Atoi(f)
				if err != nil {
					return fmt.Errorf("%s: bad pid %q", p, f)
				}
				if !slices.Contains(out, pid) {
					out = append(out, pid)
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readUint reads a file holding one unsigned number.
func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// readKey reads the number after key in a file of "key value" lines.
func readKey(path, key string) (n uint64, found bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok || k != key {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("%s: %s: %w", path, key, err)
		}
		return n, true, nil
	}
	return 0, false, sc.Err()
}
