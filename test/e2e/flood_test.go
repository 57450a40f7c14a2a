package e2e

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
	"github.com/wrennhq/wrenn/internal/cgroup"
	"github.com/wrennhq/wrenn/internal/rootfs"
)

// A guest that floods its envd's port, fills its disk, allocates all its RAM and
// forks without end leaves its neighbour answering and the agent serving: the
// neighbour's exec round trip is measured during each flood against a baseline taken
// first (the ratios are logged; each call must succeed within its deadline). The
// flooding sandbox is destroyed at the end however wedged it is.
func TestGuestFloodsLeaveNeighboursResponsive(t *testing.T) {
	needVM(t)
	a := startAgent(t, freeAddr(t))
	ctx := context.Background()
	victim := create(t, a.client, &pb.CreateSandboxRequest{MemoryMb: 256}).GetSandbox().GetId()
	neighbour := create(t, a.client, &pb.CreateSandboxRequest{MemoryMb: 256}).GetSandbox().GetId()

	base := sampleExec(t, a.client, neighbour, 5)
	t.Logf("baseline: neighbour exec p50 %v max %v", base.p50, base.max)

	disk := filepath.Join(env.dir, "sandboxes", victim, rootfs.DiskName)
	diskBefore := allocated(t, disk)
	// tookHold, where a flood has one, says when it runs in earnest (dd's speed under
	// emulation varies): the measurement waits for it rather than for a fixed time.
	diskFilling := func() bool { return allocated(t, disk)-diskBefore >= 64<<20 }
	floods := []struct {
		name, script string
		tookHold     func() bool
	}{
		// Hundreds of held connections to envd plus four loops of requests.
		{"envd port flood", `for i in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/49983 && sleep 60) & done;
			for j in 1 2 3 4; do (while :; do exec 4<>/dev/tcp/127.0.0.1/49983 && printf 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n' >&4; exec 4>&-; done) & done`, nil},
		{"disk fill", `dd if=/dev/zero of=/home/user/fill bs=1M status=none; sync`, diskFilling},
		{"ram exhaustion", `for i in 1 2 3; do (head -c 1G /dev/zero | tail > /dev/null) & done`, nil},
		{"fork bomb", `f() { f | f & }; f`, nil},
	}
	for _, f := range floods {
		execIn(t, a.client, victim, "setsid bash -c '"+strings.ReplaceAll(f.script, "'", `'\''`)+"' > /dev/null 2>&1 < /dev/null &")
		time.Sleep(3 * time.Second) // let it take hold
		for deadline := time.Now().Add(2 * time.Minute); f.tookHold != nil && !f.tookHold(); time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the %s did not take hold in 2 minutes", f.name)
			}
		}
		cpu0, at := cpuUsage(t, victim), time.Now()
		s := sampleExec(t, a.client, neighbour, 5)
		victimCPU := float64(cpuUsage(t, victim)-cpu0) / float64(time.Since(at))
		list := time.Now()
		if _, err := a.client.ListSandboxes(ctx, connect.NewRequest(&pb.ListSandboxesRequest{})); err != nil {
			t.Errorf("during the %s: the agent's list: %v", f.name, err)
		}
		t.Logf("during the %s: the victim's VMM uses %.2f CPUs; neighbour exec p50 %v (%.1fx baseline) max %v; agent list %v",
			f.name, victimCPU, s.p50, float64(s.p50)/float64(base.p50), s.max, time.Since(list).Round(time.Millisecond))
		if victimCPU > 1.2 {
			t.Errorf("the victim's VMM used %.2f CPUs, over its 1-vCPU quota", victimCPU)
		}
	}
	t.Logf("the disk fill wrote %d MiB into the victim's disk", (allocated(t, disk)-diskBefore)>>20)
	dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := a.client.DestroySandbox(dctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: victim})); err != nil {
		t.Errorf("destroy the flooded sandbox: %v", err)
	}
	if out := string(execIn(t, a.client, neighbour, "echo fine").GetStdout()); out != "fine\n" {
		t.Errorf("the neighbour after its neighbour's floods: %q", out)
	}
	if _, err := a.client.DestroySandbox(ctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: neighbour})); err != nil {
		t.Error(err)
	}
}

type latencies struct{ p50, max time.Duration }

// sampleExec runs `true` in a sandbox n times, each within 20 s, and returns the
// round trips' median and maximum.
func sampleExec(t *testing.T, c hostagentv1connect.HostAgentServiceClient, id string, n int) latencies {
	t.Helper()
	var ds []time.Duration
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		start := time.Now()
		_, err := c.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: id, Cmd: "/bin/true", TimeoutSec: 15}))
		cancel()
		if err != nil {
			t.Fatalf("exec in %s: %v", id, err)
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	return latencies{p50: ds[len(ds)/2].Round(time.Millisecond), max: ds[len(ds)-1].Round(time.Millisecond)}
}

// cpuUsage is the CPU time the sandbox's cgroup (under the agent's default parent) has used.
func cpuUsage(t *testing.T, id string) time.Duration {
	t.Helper()
	cg, err := cgroup.New("/wrenn")
	if err != nil {
		t.Fatal(err)
	}
	g, err := cg.Load(id)
	if err != nil {
		t.Fatalf("cgroup of %s: %v", id, err)
	}
	u, err := g.Usage()
	if err != nil {
		t.Fatalf("cgroup usage of %s: %v", id, err)
	}
	return time.Duration(u.CPUNanos)
}

// allocated is the bytes of disk a file takes.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}
