package e2e

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
)

func snapshot(t *testing.T, c hostagentv1connect.HostAgentServiceClient, id, name string, overwrite bool) *pb.CreateSnapshotResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	resp, err := c.CreateSnapshot(ctx, connect.NewRequest(&pb.CreateSnapshotRequest{SandboxId: id, Name: name, Overwrite: overwrite}))
	if err != nil {
		t.Fatalf("snapshot %s as %s: %v", id, name, err)
	}
	return resp.Msg
}

// A prepared sandbox frozen under a name becomes a template: three sandboxes created
// from it start with its files and its running process (the counter goes on from
// where the snapshot caught it), each with its own identity, and what one writes the
// others never see. The source runs on; a snapshot of it paused works too; deleting
// the snapshot leaves its sandboxes running.
func TestSnapshotClones(t *testing.T) {
	needVM(t)
	a := startAgent(t, freeAddr(t))
	ctx := context.Background()
	const name = "e2e-prepared"
	_, _ = a.client.DeleteSnapshot(ctx, connect.NewRequest(&pb.DeleteSnapshotRequest{Name: name})) // an earlier failed run's
	t.Cleanup(func() { _, _ = a.client.DeleteSnapshot(ctx, connect.NewRequest(&pb.DeleteSnapshotRequest{Name: name})) })

	src := create(t, a.client, &pb.CreateSandboxRequest{MemoryMb: 384}).GetSandbox().GetId()
	execIn(t, a.client, src, "echo prepared > /home/user/setup && setsid sh -c 'i=0; while :; do i=$((i+1)); echo $i > /dev/shm/counter.new; mv /dev/shm/counter.new /dev/shm/counter; sleep 0.05; done' >/dev/null 2>&1 < /dev/null &")
	counter := func(id string) int {
		out := strings.TrimSpace(string(execIn(t, a.client, id, "sleep 0.2; cat /dev/shm/counter").GetStdout()))
		n, err := strconv.Atoi(out)
		if err != nil {
			t.Fatalf("counter in %s: %q: %v", id, out, err)
		}
		return n
	}
	before := counter(src)
	snap := snapshot(t, a.client, src, name, false)
	info := snap.GetSnapshot()
	if info.GetVcpus() != 1 || info.GetMemoryMb() != 384 || info.GetSandboxId() != src || info.GetSizeBytes() <= 0 {
		t.Errorf("snapshot: %v", info)
	}
	t.Logf("snapshot of a running sandbox: %v, %d MiB on disk", time.Duration(snap.GetDurationUs())*time.Microsecond, info.GetSizeBytes()>>20)
	if n := counter(src); n <= before {
		t.Errorf("the source's counter is %d after its snapshot, was %d: it did not run on", n, before)
	}

	ids := make([]string, 3)
	seen := map[string]string{}
	for i := range ids {
		resp := create(t, a.client, &pb.CreateSandboxRequest{Snapshot: name})
		id := resp.GetSandbox().GetId()
		ids[i] = id
		if !resp.GetTimings().GetRestored() || resp.GetSandbox().GetMemoryMb() != 384 || resp.GetSandbox().GetSnapshot() != name {
			t.Errorf("sandbox from the snapshot: %v %v", resp.GetSandbox(), resp.GetTimings())
		}
		t.Logf("create from the snapshot: %v", time.Duration(resp.GetTimings().GetTotalUs())*time.Microsecond)
		out := strings.Fields(string(execIn(t, a.client, id, "od -An -tx1 -N16 /dev/urandom | tr -d ' \\n'; echo; hostname; cat /home/user/setup").GetStdout()))
		if len(out) != 3 || out[1] != id || out[2] != "prepared" {
			t.Fatalf("sandbox %s: random, hostname, file: %q", id, out)
		}
		if other, dup := seen[out[0]]; dup {
			t.Errorf("sandboxes %s and %s read the same random bytes", other, id)
		}
		seen[out[0]] = id
		if n := counter(id); n < before {
			t.Errorf("sandbox %s: counter %d, below the %d it had before the snapshot: its process did not come with it", id, n, before)
		}
	}
	execIn(t, a.client, ids[0], "echo mine > /home/user/only-here")
	for _, id := range append(ids[1:], src) {
		if out := string(execIn(t, a.client, id, "cat /home/user/only-here 2>/dev/null || echo absent").GetStdout()); out != "absent\n" {
			t.Errorf("a file written in %s shows in %s: %q", ids[0], id, out)
		}
	}

	// From the source paused: it stays paused and resumes as it was.
	pause(t, a.client, src)
	snapshot(t, a.client, src, name, true)
	resume(t, a.client, src)
	if got := strings.TrimSpace(string(execIn(t, a.client, src, "cat /home/user/setup").GetStdout())); got != "prepared" {
		t.Errorf("the source after a snapshot while paused: %q", got)
	}
	id := create(t, a.client, &pb.CreateSandboxRequest{Snapshot: name}).GetSandbox().GetId()
	if out := string(execIn(t, a.client, id, "cat /home/user/setup").GetStdout()); out != "prepared\n" {
		t.Errorf("sandbox from the overwritten snapshot: %q", out)
	}

	if _, err := a.client.DeleteSnapshot(ctx, connect.NewRequest(&pb.DeleteSnapshotRequest{Name: name})); err != nil {
		t.Fatal(err)
	}
	for _, id := range append(ids, id) {
		execIn(t, a.client, id, "true")
	}
	_, err := a.client.CreateSandbox(ctx, connect.NewRequest(&pb.CreateSandboxRequest{Snapshot: name}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("create from a deleted snapshot: %v, want invalid_argument", err)
	}
}
