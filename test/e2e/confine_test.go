package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
)

// Each sandbox's QEMU runs jailed under its own uid in a cgroup with the sandbox's
// limits, which the agent reports; it cannot see its neighbour's files. One that the
// kernel kills for going over its memory limit puts its sandbox in the error state,
// saying so, while the neighbour keeps answering.
func TestVMMConfinedAndOOM(t *testing.T) {
	needVM(t)
	a := startAgent(t, freeAddr(t))
	ctx := context.Background()
	victim := create(t, a.client, &pb.CreateSandboxRequest{MemoryMb: 256}).GetSandbox().GetId()
	neighbour := create(t, a.client, &pb.CreateSandboxRequest{MemoryMb: 256}).GetSandbox().GetId()

	get := func(id string) *pb.Sandbox {
		t.Helper()
		r, err := a.client.GetSandbox(ctx, connect.NewRequest(&pb.GetSandboxRequest{SandboxId: id}))
		if err != nil {
			t.Fatal(err)
		}
		return r.Msg.GetSandbox()
	}
	lim := get(victim).GetLimits()
	if lim.GetCpus() != 1 || lim.GetMemoryBytes() != (256+256)<<20 || lim.GetPids() != 512 || lim.GetJailUid() <= 1000000000 {
		t.Errorf("reported limits %v, want 1 CPU, 512 MiB (256 RAM + 256 overhead), 512 pids, a jail uid above the base", lim)
	}
	if other := get(neighbour).GetLimits().GetJailUid(); other == lim.GetJailUid() {
		t.Errorf("both sandboxes' VMMs run as uid %d", other)
	}

	pid := cgroupPID(t, victim)
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	uid := strconv.Itoa(int(lim.GetJailUid()))
	for _, want := range []string{"\nUid:\t" + uid + "\t" + uid + "\t" + uid + "\t" + uid + "\n", "\nNoNewPrivs:\t1\n", "\nCapEff:\t0000000000000000\n"} {
		if !strings.Contains(string(status), want) {
			t.Errorf("the victim's qemu (pid %d) status lacks %q", pid, strings.TrimSpace(want))
		}
	}
	root := "/proc/" + strconv.Itoa(pid) + "/root"
	for _, hidden := range []string{filepath.Join(env.dir, "sandboxes", neighbour), filepath.Join(env.dir, "sandboxes", victim, "sandbox.json"), "/etc/shadow", "/proc/1"} {
		if _, err := os.Stat(root + hidden); err == nil {
			t.Errorf("%s is visible to the victim's qemu", hidden)
		}
	}

	// Leave the VMM less memory than it has: what the guest does next (new code to
	// translate, new pages) cannot be reclaimed, and the kernel kills QEMU.
	memDir := "/sys/fs/cgroup/memory/wrenn/" + victim
	if _, err := os.Stat(memDir); err != nil {
		t.Skipf("no v1 memory cgroup at %s (this test squeezes a v1 memory limit): %v", memDir, err)
	}
	// The kernel refuses (EBUSY) a limit it cannot reclaim down to: the guest's dirty
	// RAM pages must be written back first, so sync and leave a growing margin.
	var squeezed error
	for margin := int64(1 << 20); margin <= 64<<20; margin *= 2 {
		syscall.Sync()
		limit := memStat(t, memDir, "total_rss") + margin
		if squeezed = os.WriteFile(filepath.Join(memDir, "memory.limit_in_bytes"), []byte(strconv.FormatInt(limit, 10)), 0); squeezed == nil {
			t.Logf("the victim's memory limit squeezed to %d MiB", limit>>20)
			break
		}
	}
	if squeezed != nil {
		t.Fatalf("squeeze the victim's memory limit: %v", squeezed)
	}
	go a.client.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: victim, Cmd: "/bin/bash", TimeoutSec: 60,
		Args: []string{"-c", "python3 -c 'import json, email.parser, http.client, xml.dom.minidom, decimal, asyncio, sqlite3' ; find / -xdev | wc -l; head -c 200M /dev/urandom | sha256sum"}}))
	deadline := time.Now().Add(90 * time.Second)
	for {
		s := get(victim)
		if s.GetState() == pb.SandboxState_SANDBOX_STATE_ERROR {
			if !strings.Contains(s.GetError(), "out of memory") || !strings.Contains(s.GetError(), "512 MiB limit") {
				t.Errorf("error state's reason %q does not say out of memory", s.GetError())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the squeezed sandbox is %v after 90 s, want error (out of memory)", s.GetState())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out := string(execIn(t, a.client, neighbour, "echo still here").GetStdout()); out != "still here\n" {
		t.Errorf("the neighbour after the victim's OOM kill: %q", out)
	}
	for _, id := range []string{victim, neighbour} {
		if _, err := a.client.DestroySandbox(ctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: id})); err != nil {
			t.Errorf("destroy %s: %v", id, err)
		}
	}
	if _, err := os.Stat(memDir); err == nil {
		t.Errorf("the victim's cgroup %s outlived its sandbox", memDir)
	}
}

// cgroupPID is the one process in the sandbox's cgroup: its jailed QEMU.
func cgroupPID(t *testing.T, id string) int {
	t.Helper()
	for _, base := range []string{"/sys/fs/cgroup/pids/wrenn/", "/sys/fs/cgroup/wrenn/"} {
		b, err := os.ReadFile(base + id + "/cgroup.procs")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) != 1 {
			t.Fatalf("cgroup of %s holds %q, want its qemu alone", id, f)
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil {
			t.Fatal(err)
		}
		return pid
	}
	t.Fatalf("no cgroup for sandbox %s", id)
	return 0
}

func memStat(t *testing.T, dir, key string) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "memory.stat"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("%s/memory.stat has no %s", dir, key)
	return 0
}

// The disk rate limit holds the guest to it, for direct and buffered writes alike
// (QEMU's block throttling, below the guest's page cache), and shows in the sandbox's
// limits.
func TestDiskRateLimit(t *testing.T) {
	needVM(t)
	a := startAgent(t, freeAddr(t), "WRENN_AGENT_DISK_MIB_PER_SEC=4", "WRENN_AGENT_DISK_IOPS=500")
	ctx := context.Background()
	sb := create(t, a.client, &pb.CreateSandboxRequest{}).GetSandbox()
	if l := sb.GetLimits(); l.GetDiskBytesPerSec() != 4<<20 || l.GetDiskOpsPerSec() != 500 {
		t.Errorf("limits %v, want 4 MiB/s and 500 IOPS", l)
	}
	for _, c := range []struct{ name, script string }{
		{"direct", "dd if=/dev/zero of=/home/user/direct bs=1M count=16 oflag=direct 2>&1"},
		{"buffered", "dd if=/dev/zero of=/home/user/buffered bs=1M count=16 conv=fsync 2>&1"},
	} {
		start := time.Now()
		out := execIn(t, a.client, sb.GetId(), c.script)
		took := time.Since(start)
		t.Logf("16 MiB %s at 4 MiB/s: %v (%s)", c.name, took.Round(time.Millisecond), strings.TrimSpace(string(out.GetStdout())))
		// 4 s at the limit; QEMU lets a burst of a tenth of a second's worth through.
		if took < 3*time.Second {
			t.Errorf("16 MiB %s took %v: faster than 4 MiB/s allows", c.name, took)
		}
	}
	if _, err := a.client.DestroySandbox(ctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: sb.GetId()})); err != nil {
		t.Fatal(err)
	}
}
