// Package cgroup puts each sandbox's VMM process tree in a cgroup of its own with CPU,
// memory, pid and I/O-weight limits, and reads back its usage and out-of-memory kills.
// It works on cgroup v1 (one directory per controller hierarchy) and v2 (one unified
// directory), choosing by what the host mounts.
package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Limits for one sandbox's VMM process tree. A zero field means no limit.
type Limits struct {
	// CPUs is the CFS bandwidth in CPUs: a quota of CPUs × 100 ms per 100 ms period.
	CPUs float64
	// MemoryBytes is the hard memory limit (guest RAM plus VMM overhead). Where the
	// host accounts swap, swap is limited too (v1 memory+swap = MemoryBytes, v2
	// memory.swap.max = 0), so a guest cannot push the host into swap.
	MemoryBytes int64
	// Pids is the most tasks (processes and threads) the tree may have.
	Pids int64
	// IOWeight is the proportional I/O weight, 10..1000; 0 sets the kernel's default,
	// 100, and 100 reads back as 0. Applied reports 0 when the host has no weight
	// file to set.
	IOWeight uint16
}

// Usage is what a group has used, read from the kernel's counters.
type Usage struct {
	MemoryBytes    uint64 // charged memory now
	MemoryMaxBytes uint64 // the most charged at once (0 where the kernel does not keep it)
	CPUNanos       uint64 // CPU time used by all tasks
	Pids           uint64 // tasks now
}

const (
	cfsPeriodUS = 100000 // the CFS period, 100 ms
	minQuotaUS  = 1000   // the kernel refuses a quota below 1 ms
	maxNameLen  = 64
)

var (
	namePattern     = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)
	rootPartPattern = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
)

// ErrNotEmpty is returned by Delete when processes are still in the group.
var ErrNotEmpty = errors.New("cgroup still has processes")

// v1Controllers are the v1 hierarchies a group is made in: the ones with limits or
// counters this package uses, and no others (cpuset would need its cpus and mems
// copied from the parent, and nothing here needs it).
var v1Controllers = []cgroup1.Name{cgroup1.Cpu, cgroup1.Cpuacct, cgroup1.Memory, cgroup1.Pids, cgroup1.Blkio}

// v1Required are the v1 hierarchies without which a group cannot be limited.
var v1Required = []cgroup1.Name{cgroup1.Cpu, cgroup1.Memory, cgroup1.Pids}

// Manager makes and finds the sandbox cgroups under one parent cgroup.
type Manager struct {
	root  string // the parent cgroup's path, e.g. "/wrenn"
	v2    bool
	mount string // the v2 mount point, or the directory holding the v1 hierarchies
}

// New returns a Manager for sandbox cgroups under root, a cgroup path such as
// "/wrenn". It does not create anything yet.
func New(root string) (*Manager, error) {
	if err := validRoot(root); err != nil {
		return nil, err
	}
	m := &Manager{root: root, mount: "/sys/fs/cgroup"}
	switch cgroups.Mode() {
	case cgroups.Unified:
		m.v2 = true
	case cgroups.Legacy, cgroups.Hybrid:
		// Hybrid hosts mount an empty v2 hierarchy beside v1; the controllers are on v1.
	default:
		return nil, errors.New("cgroup manager: no cgroup file system mounted at /sys/fs/cgroup")
	}
	return m, nil
}

// V2 says whether the host uses the unified (v2) hierarchy.
func (m *Manager) V2() bool { return m.v2 }

func validRoot(root string) error {
	if root == "/" || !strings.HasPrefix(root, "/") || filepath.Clean(root) != root {
		return fmt.Errorf("cgroup root %q: want a clean absolute path below /", root)
	}
	for _, part := range strings.Split(root[1:], "/") {
		if part == "." || part == ".." || !rootPartPattern.MatchString(part) {
			return fmt.Errorf("cgroup root %q: bad component %q", root, part)
		}
	}
	return nil
}

func validName(name string) error {
	if len(name) > maxNameLen || !namePattern.MatchString(name) {
		return fmt.Errorf("invalid sandbox cgroup name %q: want [a-z0-9-]{1,%d}", name, maxNameLen)
	}
	return nil
}

func validLimits(l Limits) error {
	switch {
	case l.CPUs < 0 || math.IsNaN(l.CPUs) || math.IsInf(l.CPUs, 0):
		return fmt.Errorf("invalid CPUs %v", l.CPUs)
	case l.CPUs > 0 && l.CPUs*cfsPeriodUS < minQuotaUS:
		return fmt.Errorf("invalid CPUs %v: below %v", l.CPUs, float64(minQuotaUS)/cfsPeriodUS)
	case l.MemoryBytes < 0:
		return fmt.Errorf("invalid MemoryBytes %d", l.MemoryBytes)
	case l.Pids < 0:
		return fmt.Errorf("invalid Pids %d", l.Pids)
	case l.IOWeight != 0 && (l.IOWeight < 10 || l.IOWeight > 1000):
		return fmt.Errorf("invalid IOWeight %d: want 10..1000", l.IOWeight)
	}
	return nil
}

// v1Hierarchy lists the mounted v1 hierarchies this package uses.
func v1Hierarchy() ([]cgroup1.Subsystem, error) {
	all, err := cgroup1.Default()
	if err != nil {
		return nil, err
	}
	var out []cgroup1.Subsystem
	for _, s := range all {
		if slices.Contains(v1Controllers, s.Name()) {
			out = append(out, s)
		}
	}
	for _, want := range v1Required {
		if !slices.ContainsFunc(out, func(s cgroup1.Subsystem) bool { return s.Name() == want }) {
			return nil, fmt.Errorf("cgroup v1 controller %s is not mounted", want)
		}
	}
	return out, nil
}

// v1Roots returns the root directory of each used v1 hierarchy, keyed by controller,
// and the distinct roots in a stable order: co-mounted controllers (cpu,cpuacct
// behind symlinks) share one.
func v1Roots(subs []cgroup1.Subsystem) (map[cgroup1.Name]string, []string) {
	byName := map[cgroup1.Name]string{}
	seen := map[string]bool{}
	var unique []string
	for _, n := range v1Controllers {
		for _, s := range subs {
			p, ok := s.(interface{ Path(string) string })
			if s.Name() != n || !ok {
				continue
			}
			root := p.Path("/")
			byName[n] = root
			real, err := filepath.EvalSymlinks(root)
			if err != nil {
				real = root
			}
			if !seen[real] {
				seen[real] = true
				unique = append(unique, root)
			}
		}
	}
	return byName, unique
}

// Create makes the cgroup for sandbox name with limits l, or, if it exists, sets its
// limits to l. If making it fails, what it made is removed.
func (m *Manager) Create(name string, l Limits) (g *Group, err error) {
	if err := validName(name); err != nil {
		return nil, fmt.Errorf("create cgroup: %w", err)
	}
	if err := validLimits(l); err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", name, err)
	}
	g = &Group{name: name, path: m.root + "/" + name}
	made, err := m.makeGroup(g)
	if err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			for _, d := range made { // deepest first
				_ = os.Remove(d)
			}
		}
	}()
	if err := g.apply(l); err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", name, err)
	}
	return g, nil
}

// makeGroup creates g's directories (a no-op for those that exist) and returns the
// directories it created, deepest first.
func (m *Manager) makeGroup(g *Group) ([]string, error) {
	var want []string // candidate directories, parents before children
	if m.v2 {
		want = chain(m.mount, g.path)
	} else {
		subs, err := v1Hierarchy()
		if err != nil {
			return nil, err
		}
		_, roots := v1Roots(subs)
		for _, r := range roots {
			want = append(want, chain(r, g.path)...)
		}
	}
	var made []string
	for _, d := range want {
		if _, err := os.Stat(d); errors.Is(err, fs.ErrNotExist) {
			made = append(made, d)
		}
	}
	slices.Reverse(made)
	undo := func() {
		for _, d := range made {
			_ = os.Remove(d)
		}
	}
	if m.v2 {
		res := &cgroup2.Resources{CPU: &cgroup2.CPU{}, Memory: &cgroup2.Memory{}, Pids: &cgroup2.Pids{}}
		if hasController(m.mount, "io") {
			res.IO = &cgroup2.IO{}
		}
		// With empty resources this only makes the directory and enables the
		// controllers in every ancestor's cgroup.subtree_control.
		mgr, err := cgroup2.NewManager(m.mount, g.path, res)
		if err != nil {
			undo()
			return nil, err
		}
		g.setV2(mgr, filepath.Join(m.mount, g.path))
		return made, nil
	}
	cg, err := cgroup1.New(cgroup1.StaticPath(g.path), &specs.LinuxResources{}, cgroup1.WithHierarchy(v1Hierarchy))
	if err != nil {
		undo()
		return nil, err
	}
	if err := g.setV1(cg); err != nil {
		undo()
		return nil, err
	}
	return made, nil
}

// chain lists base+p and the directories between base and it, parents first.
func chain(base, p string) []string {
	var out []string
	for q := p; q != "/" && q != "."; q = filepath.Dir(q) {
		out = append(out, filepath.Join(base, q))
	}
	slices.Reverse(out)
	return out
}

func hasController(dir, name string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	return err == nil && slices.Contains(strings.Fields(string(b)), name)
}

// Load finds the existing cgroup of sandbox name, as an agent restarting beside a
// running sandbox does. Its error wraps fs.ErrNotExist when there is none.
func (m *Manager) Load(name string) (*Group, error) {
	if err := validName(name); err != nil {
		return nil, fmt.Errorf("load cgroup: %w", err)
	}
	g := &Group{name: name, path: m.root + "/" + name}
	if m.v2 {
		dir := filepath.Join(m.mount, g.path)
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("load cgroup %s: %w", name, err)
		}
		mgr, err := cgroup2.Load(g.path, cgroup2.WithMountpoint(m.mount))
		if err != nil {
			return nil, fmt.Errorf("load cgroup %s: %w", name, err)
		}
		g.setV2(mgr, dir)
	} else {
		cg, err := cgroup1.Load(cgroup1.StaticPath(g.path), cgroup1.WithHierarchy(v1Hierarchy))
		if errors.Is(err, cgroup1.ErrCgroupDeleted) {
			return nil, fmt.Errorf("load cgroup %s: %w", name, fs.ErrNotExist)
		}
		if err != nil {
			return nil, fmt.Errorf("load cgroup %s: %w", name, err)
		}
		if err := g.setV1(cg); err != nil {
			return nil, fmt.Errorf("load cgroup %s: %w", name, err)
		}
	}
	l, err := g.readLimits()
	if err != nil {
		return nil, fmt.Errorf("load cgroup %s: %w", name, err)
	}
	g.applied = l
	return g, nil
}

// List returns the names of the sandbox cgroups that exist under the root, in any
// hierarchy, sorted: after a crash, the ones no sandbox owns are to be deleted.
func (m *Manager) List() ([]string, error) {
	var parents []string
	if m.v2 {
		parents = []string{filepath.Join(m.mount, m.root)}
	} else {
		subs, err := v1Hierarchy()
		if err != nil {
			return nil, fmt.Errorf("list cgroups: %w", err)
		}
		_, roots := v1Roots(subs)
		for _, r := range roots {
			parents = append(parents, filepath.Join(r, m.root))
		}
	}
	var names []string
	for _, p := range parents {
		entries, err := os.ReadDir(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list cgroups: %w", err)
		}
		for _, e := range entries {
			if e.IsDir() && validName(e.Name()) == nil && !slices.Contains(names, e.Name()) {
				names = append(names, e.Name())
			}
		}
	}
	slices.Sort(names)
	return names, nil
}

// Join writes pid to each cgroup.procs file, moving the process into the group in
// every hierarchy. A jail helper calls it with its own pid before exec'ing the VMM,
// so that the VMM is limited from its first instruction.
func Join(procsFiles []string, pid int) error {
	if pid <= 0 {
		return fmt.Errorf("join cgroup: invalid pid %d", pid)
	}
	for _, f := range procsFiles {
		if filepath.Base(f) != "cgroup.procs" {
			return fmt.Errorf("join cgroup: %s is not a cgroup.procs file", f)
		}
		// O_WRONLY without O_CREATE: a missing group is an error, not a new file.
		file, err := os.OpenFile(f, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("join cgroup: %w", err)
		}
		_, err = file.WriteString(strconv.Itoa(pid))
		if cerr := file.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("join cgroup: write pid %d to %s: %w", pid, f, err)
		}
	}
	return nil
}
