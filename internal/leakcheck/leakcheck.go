// Package leakcheck lists what a sandbox can leave behind on a host — network
// namespaces, network links, nftables tables, VMM and guest-agent processes, mounts,
// cgroups and files — so a test can prove that an operation, or a fault in the middle
// of one, left nothing: take a Snapshot before, and ask for the Leftovers after.
package leakcheck

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

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
)

// Options say where to look beyond the host-wide kinds.
type Options struct {
	// Dirs are directories whose every entry (recursively) is a file a sandbox may
	// own: a sandbox's disk, sockets and snapshot files.
	Dirs []string
	// Processes are the names (/proc/PID/comm, which the kernel cuts to 15 bytes) of
	// the programs a sandbox runs on the host. Default: DefaultProcesses.
	Processes []string
	// NetnsDir is where named network namespaces are mounted (default /run/netns).
	NetnsDir string
	// CgroupRoot is the cgroup file system's mount (default /sys/fs/cgroup); its
	// directories whose name contains "wrenn" are listed.
	CgroupRoot string
}

// DefaultProcesses are the host processes a sandbox owns.
var DefaultProcesses = []string{"qemu-system-x86", "firecracker", "envd"}

// Snapshot is the set of things found at one moment, each a line "kind: name".
type Snapshot struct {
	items map[string]bool
}

// Take lists everything now.
func Take(o Options) (*Snapshot, error) {
	if o.NetnsDir == "" {
		o.NetnsDir = "/run/netns"
	}
	if o.CgroupRoot == "" {
		o.CgroupRoot = "/sys/fs/cgroup"
	}
	if o.Processes == nil {
		o.Processes = DefaultProcesses
	}
	s := &Snapshot{items: map[string]bool{}}
	for _, list := range []func(Options, func(string)) error{netnsList, links, nftTables, processes, mounts, cgroups, files} {
		if err := list(o, func(item string) { s.items[item] = true }); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Leftovers lists, sorted, what after has and s had not.
func (s *Snapshot) Leftovers(after *Snapshot) []string {
	var out []string
	for item := range after.items {
		if !s.items[item] {
			out = append(out, item)
		}
	}
	slices.Sort(out)
	return out
}

// Wait takes snapshots until nothing is left over compared with before, or ctx ends:
// teardown is asynchronous in places (a VMM exits after its socket closes), so one
// look right after an operation would report what is about to go. It returns what
// was still left at the end.
func Wait(ctx context.Context, before *Snapshot, o Options) ([]string, error) {
	for {
		now, err := Take(o)
		if err != nil {
			return nil, err
		}
		left := before.Leftovers(now)
		if len(left) == 0 {
			return nil, nil
		}
		select {
		case <-ctx.Done():
			return left, nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func netnsList(o Options, add func(string)) error {
	entries, err := os.ReadDir(o.NetnsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list network namespaces: %w", err)
	}
	for _, e := range entries {
		add("netns: " + e.Name())
	}
	return nil
}

// links lists the host namespace's links; a slot's veth end shows up here.
func links(_ Options, add func(string)) error {
	ls, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	for _, l := range ls {
		add("link: " + l.Attrs().Name + " (" + l.Type() + ")")
	}
	return nil
}

// nftTables lists the host namespace's nftables tables.
func nftTables(_ Options, add func(string)) error {
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	tables, err := conn.ListTables()
	if err != nil {
		return fmt.Errorf("list nftables tables: %w", err)
	}
	for _, t := range tables {
		add(fmt.Sprintf("nft table: %s %s", family(t.Family), t.Name))
	}
	return nil
}

func family(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyBridge:
		return "bridge"
	default:
		return strconv.Itoa(int(f))
	}
}

// processes lists the live processes with one of o.Processes' names, by pid.
func processes(o Options, add func(string)) error {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return fmt.Errorf("list processes: %w", err)
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil {
			continue // it ended meanwhile
		}
		name := strings.TrimSpace(string(comm))
		if !slices.Contains(o.Processes, name) {
			continue
		}
		if zombie(e.Name()) {
			continue // ended, waiting for its parent to reap it
		}
		add("process: " + e.Name() + " " + name)
	}
	return nil
}

func zombie(pid string) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return true
	}
	// The state follows the parenthesised name, which may itself hold ") ".
	i := strings.LastIndexByte(string(stat), ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' || stat[i+2] == 'X'
}

// mounts lists this mount namespace's mount points, except the network namespace
// directory itself: `ip netns` and the agent bind-mount it onto itself the first
// time a namespace is made after boot, and it stays for good.
func mounts(o Options, add func(string)) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("list mounts: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// mount ID, parent ID, major:minor, root, mount point, ...
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && fields[4] != filepath.Clean(o.NetnsDir) {
			add("mount: " + fields[4])
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read mounts: %w", err)
	}
	return nil
}

// cgroups lists the cgroup directories with "wrenn" in their path, at any depth up
// to four below each hierarchy's root — every sandbox's cgroup, under the agent's
// parent — except a parent named exactly "wrenn" (the agent's default), which stays
// for good like /run/netns.
func cgroups(o Options, add func(string)) error {
	root := filepath.Clean(o.CgroupRoot)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return nil // a cgroup removed during the walk
		}
		if !d.IsDir() {
			return nil
		}
		if rel := strings.TrimPrefix(p, root); strings.Contains(rel, "wrenn") && d.Name() != "wrenn" {
			add("cgroup: " + p)
		}
		if strings.Count(strings.TrimPrefix(p, root), "/") >= 4 {
			return fs.SkipDir
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list cgroups: %w", err)
	}
	return nil
}

func files(o Options, add func(string)) error {
	for _, dir := range o.Dirs {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if p == dir && errors.Is(err, fs.ErrNotExist) {
					return fs.SkipAll
				}
				if errors.Is(err, fs.ErrNotExist) {
					return nil // removed during the walk
				}
				return err
			}
			if p != dir {
				add("file: " + p)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("list files under %s: %w", dir, err)
		}
	}
	return nil
}
