package cgroup

// The limit files are written here rather than through containerd's resource
// structs: its v1 memory update swaps the wrong pair of settings when raising a limit
// (memory+swap must be raised before memory), it fails when memory.memsw files are
// absent, it cannot set pids back to "max" on v1 or memory back to "max" on v2, and
// it knows neither blkio.bfq.weight nor io.weight. containerd still makes the groups,
// enables the v2 controllers, adds processes and removes the groups.

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// unlimitedV1 is at or below what a v1 limit file reads when there is no limit
// (PAGE_COUNTER_MAX pages, 9223372036854771712 bytes with 4 KiB pages).
const unlimitedV1 = 1 << 62

// defaultIOWeight is the kernel's weight for a group none was set for.
const defaultIOWeight = 100

// apply sets the group's limits to l and records what was applied.
func (g *Group) apply(l Limits) error {
	if g.v2 != nil {
		return g.applyV2(l)
	}
	return g.applyV1(l)
}

func (g *Group) applyV1(l Limits) error {
	applied := Limits{CPUs: l.CPUs, MemoryBytes: l.MemoryBytes, Pids: l.Pids}
	cpu := g.ctl["cpu"]
	if err := writeFile(cpu, "cpu.cfs_period_us", strconv.Itoa(cfsPeriodUS)); err != nil {
		return err
	}
	if err := writeFile(cpu, "cpu.cfs_quota_us", quotaOr(l.CPUs, "-1")); err != nil {
		return err
	}
	swap, err := setMemoryV1(g.ctl["memory"], l.MemoryBytes)
	if err != nil {
		return err
	}
	if err := writeFile(g.ctl["pids"], "pids.max", numberOr(l.Pids, "max")); err != nil {
		return err
	}
	if blkio, ok := g.ctl["blkio"]; ok {
		// blkio.bfq.weight with the BFQ scheduler; blkio.weight with CFQ (Linux < 5.0).
		for _, f := range []string{"blkio.bfq.weight", "blkio.weight"} {
			ok, err := setWeight(blkio, f, "", l.IOWeight)
			if err != nil {
				return err
			}
			if ok {
				applied.IOWeight = normalWeight(l.IOWeight)
				break
			}
		}
	}
	g.applied, g.swapLimited = applied, swap
	return nil
}

// setMemoryV1 sets memory.limit_in_bytes to limit (0: none) and, where the kernel
// accounts swap, memory.memsw.limit_in_bytes to the same, so the group cannot swap.
// The kernel refuses memsw below memory at every step, so a limit that goes up sets
// memsw first and one that goes down sets memory first. It reports whether swap is
// limited.
func setMemoryV1(dir string, limit int64) (swapLimited bool, err error) {
	const mem, memsw = "memory.limit_in_bytes", "memory.memsw.limit_in_bytes"
	value := numberOr(limit, "-1")
	if _, err := os.Stat(filepath.Join(dir, memsw)); errors.Is(err, fs.ErrNotExist) {
		// No swap accounting (swapaccount=0 or no CONFIG_MEMCG_SWAP): memory only.
		return false, writeFile(dir, mem, value)
	}
	current, err := readUint(filepath.Join(dir, mem))
	if err != nil {
		return false, err
	}
	want := uint64(math.MaxUint64)
	if limit > 0 {
		want = uint64(limit)
	}
	order := []string{mem, memsw}
	if want > current {
		order = []string{memsw, mem}
	}
	for _, f := range order {
		if err := writeFile(dir, f, value); err != nil {
			return false, err
		}
	}
	return limit > 0, nil
}

func (g *Group) applyV2(l Limits) error {
	applied := Limits{CPUs: l.CPUs, MemoryBytes: l.MemoryBytes, Pids: l.Pids}
	dir := g.dirs[0]
	if err := writeFile(dir, "cpu.max", quotaOr(l.CPUs, "max")+" "+strconv.Itoa(cfsPeriodUS)); err != nil {
		return err
	}
	if err := writeFile(dir, "memory.max", numberOr(l.MemoryBytes, "max")); err != nil {
		return err
	}
	// v2 limits swap on its own: none at all when memory is limited.
	swap := false
	if _, err := os.Stat(filepath.Join(dir, "memory.swap.max")); err == nil {
		v := "max"
		if l.MemoryBytes > 0 {
			v, swap = "0", true
		}
		if err := writeFile(dir, "memory.swap.max", v); err != nil {
			return err
		}
	}
	if err := writeFile(dir, "pids.max", numberOr(l.Pids, "max")); err != nil {
		return err
	}
	// io.weight with the iocost controller, io.bfq.weight with the BFQ scheduler.
	for _, f := range []string{"io.weight", "io.bfq.weight"} {
		prefix := ""
		if f == "io.weight" {
			prefix = "default "
		}
		ok, err := setWeight(dir, f, prefix, l.IOWeight)
		if err != nil {
			return err
		}
		if ok {
			applied.IOWeight = normalWeight(l.IOWeight)
			break
		}
	}
	g.applied, g.swapLimited = applied, swap
	return nil
}

// setWeight writes weight (0: the default) to file if the host has it, and says
// whether it did.
func setWeight(dir, file, prefix string, weight uint16) (bool, error) {
	if _, err := os.Stat(filepath.Join(dir, file)); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if weight == 0 {
		weight = defaultIOWeight
	}
	return true, writeFile(dir, file, prefix+strconv.Itoa(int(weight)))
}

// normalWeight reports the default weight as 0, as Limits spells "no weight set".
func normalWeight(w uint16) uint16 {
	if w == defaultIOWeight {
		return 0
	}
	return w
}

func quotaOr(cpus float64, none string) string {
	if cpus <= 0 {
		return none
	}
	return strconv.FormatInt(int64(math.Round(cpus*cfsPeriodUS)), 10)
}

func numberOr(n int64, none string) string {
	if n <= 0 {
		return none
	}
	return strconv.FormatInt(n, 10)
}

// writeFile writes value to an existing cgroup file; it never creates one.
func writeFile(dir, file, value string) error {
	p := filepath.Join(dir, file)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("set %s: %w", file, err)
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("set %s to %s: %w", file, value, err)
	}
	return nil
}

// readLimits reads the limits in force back from the files, for Load. A file that
// is missing (a hierarchy the group is not in, a leftover half made) reads as no
// limit.
func (g *Group) readLimits() (Limits, error) {
	var l Limits
	read := func(ctl, file string) (string, bool, error) {
		dir, ok := g.ctl[ctl]
		if !ok {
			return "", false, nil
		}
		b, err := os.ReadFile(filepath.Join(dir, file))
		if errors.Is(err, fs.ErrNotExist) {
			return "", false, nil
		}
		if err != nil {
			return "", false, err
		}
		return strings.TrimSpace(string(b)), true, nil
	}
	num := func(s string) (int64, error) {
		if s == "max" || s == "-1" {
			return 0, nil
		}
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse %q: %w", s, err)
		}
		if n >= unlimitedV1 {
			return 0, nil
		}
		return int64(n), nil
	}
	var quota, period, mem, swap, pids, weight string
	var err error
	type item struct {
		ctl, file string
		to        *string
	}
	items := []item{
		{"cpu", "cpu.cfs_quota_us", &quota}, {"cpu", "cpu.cfs_period_us", &period},
		{"memory", "memory.limit_in_bytes", &mem}, {"memory", "memory.memsw.limit_in_bytes", &swap},
		{"pids", "pids.max", &pids},
		{"blkio", "blkio.bfq.weight", &weight}, {"blkio", "blkio.weight", &weight},
	}
	if g.v2 != nil {
		items = []item{
			{"cpu", "cpu.max", &quota},
			{"memory", "memory.max", &mem}, {"memory", "memory.swap.max", &swap},
			{"pids", "pids.max", &pids},
			{"io", "io.weight", &weight}, {"io", "io.bfq.weight", &weight},
		}
	}
	for _, it := range items {
		if *it.to != "" {
			continue // the first of two weight files wins
		}
		if *it.to, _, err = read(it.ctl, it.file); err != nil {
			return Limits{}, err
		}
	}
	if g.v2 != nil {
		quota, period, _ = strings.Cut(quota, " ")
	}
	q, err := num(quota)
	if err != nil {
		return Limits{}, err
	}
	p, err := num(period)
	if err != nil {
		return Limits{}, err
	}
	if q > 0 && p > 0 {
		l.CPUs = float64(q) / float64(p)
	}
	if l.MemoryBytes, err = num(mem); err != nil {
		return Limits{}, err
	}
	if l.Pids, err = num(pids); err != nil {
		return Limits{}, err
	}
	if weight != "" {
		// "100", or "default 100" followed by per-device lines.
		first, _, _ := strings.Cut(weight, "\n")
		w, err := strconv.ParseUint(strings.TrimPrefix(first, "default "), 10, 16)
		if err != nil {
			return Limits{}, fmt.Errorf("parse I/O weight %q: %w", weight, err)
		}
		l.IOWeight = normalWeight(uint16(w))
	}
	if l.MemoryBytes > 0 && swap != "" {
		if g.v2 != nil {
			g.swapLimited = swap == "0"
		} else {
			s, err := num(swap)
			if err != nil {
				return Limits{}, err
			}
			g.swapLimited = s == l.MemoryBytes
		}
	}
	return l, nil
}
