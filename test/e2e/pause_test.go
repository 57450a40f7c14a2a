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
	"github.com/wrennhq/wrenn/internal/testutil"
)

func pause(t *testing.T, c hostagentv1connect.HostAgentServiceClient, id string) *pb.PauseSandboxResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := c.PauseSandbox(ctx, connect.NewRequest(&pb.PauseSandboxRequest{SandboxId: id}))
	if err != nil {
		t.Fatalf("pause %s: %v", id, err)
	}
	if s := resp.Msg.GetSandbox(); s.GetState() != pb.SandboxState_SANDBOX_STATE_PAUSED || s.GetHostIp() != "" {
		t.Fatalf("paused sandbox: %v", s)
	}
	return resp.Msg
}

func resume(t *testing.T, c hostagentv1connect.HostAgentServiceClient, id string) *pb.ResumeSandboxResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := c.ResumeSandbox(ctx, connect.NewRequest(&pb.ResumeSandboxRequest{SandboxId: id}))
	if err != nil {
		t.Fatalf("resume %s: %v", id, err)
	}
	if s := resp.Msg.GetSandbox(); s.GetState() != pb.SandboxState_SANDBOX_STATE_RUNNING {
		t.Fatalf("resumed sandbox: %v", s)
	}
	return resp.Msg
}

// A 1 MiB random file and a running process's in-memory counter survive 20 pause and
// resume cycles: the file's bytes are the same and the counter goes on from where it
// was (a cold boot would start it again from 0, or not at all), and the 20th pause
// writes about as little as the first.
func TestPauseResumeCycles(t *testing.T) {
	needVM(t)
	a := startAgent(t, freeAddr(t))
	id := create(t, a.client, &pb.CreateSandboxRequest{}).GetSandbox().GetId()
	sum := strings.TrimSpace(string(execIn(t, a.client, id,
		"head -c 1048576 /dev/urandom > /home/user/random && sha256sum < /home/user/random").GetStdout()))
	// The counter lives in the shell's memory; the file only reports it.
	execIn(t, a.client, id, "setsid sh -c 'i=0; while :; do i=$((i+1)); echo $i > /dev/shm/counter.new; mv /dev/shm/counter.new /dev/shm/counter; sleep 0.05; done' >/dev/null 2>&1 < /dev/null &")
	counter := func() int {
		out := strings.TrimSpace(string(execIn(t, a.client, id, "sleep 0.2; cat /dev/shm/counter").GetStdout()))
		n, err := strconv.Atoi(out)
		if err != nil {
			t.Fatalf("counter %q: %v", out, err)
		}
		return n
	}
	last := counter()
	var written []int64
	var pauseTook, resumeTook []time.Duration
	for cycle := 1; cycle <= 20; cycle++ {
		p := pause(t, a.client, id)
		written = append(written, p.GetWrittenBytes())
		pauseTook = append(pauseTook, time.Duration(p.GetDurationUs())*time.Microsecond)
		r := resume(t, a.client, id)
		resumeTook = append(resumeTook, time.Duration(r.GetDurationUs())*time.Microsecond)
		n := counter()
		if n <= last {
			t.Fatalf("cycle %d: the counter is %d, it was %d before the pause: the process did not go on", cycle, n, last)
		}
		last = n
	}
	if got := strings.TrimSpace(string(execIn(t, a.client, id, "sha256sum < /home/user/random").GetStdout())); got != sum {
		t.Errorf("the random file changed across 20 pauses: %s, was %s", got, sum)
	}
	t.Logf("pause wrote %d bytes the 1st time (the memory the boot touched), %d the 2nd, %d the 20th; pause took %v then %v, resume %v then %v",
		written[0], written[1], written[19], pauseTook[0], pauseTook[19], resumeTook[0], resumeTook[19])
	// After the first, a pause writes what the guest changed since the last one: here a
	// counter, far under 15 % of the guest's 512 MiB, and no more by the 20th.
	const ram = 512 << 20
	for i, w := range written[1:] {
		if w <= 0 || w > ram*15/100 {
			t.Errorf("pause %d wrote %d bytes, want some and at most 15 %% of the guest's RAM", i+2, w)
		}
	}
	if written[19] > 2*written[1]+1<<20 {
		t.Errorf("the 20th pause wrote %d bytes, the 2nd %d: pauses grow", written[19], written[1])
	}
}

// After a 30 s pause the guest's clock is within a second of the host's: it stood
// still while paused and the resume set it.
func TestClockAfterPause(t *testing.T) {
	needVM(t)
	a := startAgent(t, freeAddr(t))
	id := create(t, a.client, &pb.CreateSandboxRequest{}).GetSandbox().GetId()
	pause(t, a.client, id)
	time.Sleep(30 * time.Second)
	resume(t, a.client, id)
	before := time.Now()
	out := strings.TrimSpace(string(execIn(t, a.client, id, "date +%s.%N").GetStdout()))
	after := time.Now()
	secs, err := strconv.ParseFloat(out, 64)
	if err != nil {
		t.Fatalf("guest date %q: %v", out, err)
	}
	guest := time.Unix(0, int64(secs*1e9))
	if guest.Before(before.Add(-time.Second)) || guest.After(after.Add(time.Second)) {
		t.Errorf("guest clock %v after a 30 s pause, host between %v and %v", guest, before, after)
	}
}

// An idle sandbox is paused, not destroyed, and resumes with its files and processes.
func TestIdleSandboxPausesAndResumes(t *testing.T) {
	needVM(t)
	a := startAgent(t, freeAddr(t))
	id := create(t, a.client, &pb.CreateSandboxRequest{TimeoutSec: 5}).GetSandbox().GetId()
	execIn(t, a.client, id, "echo kept > /home/user/idle; setsid sleep 100000 >/dev/null 2>&1 < /dev/null &")
	testutil.WaitFor(t, 60*time.Second, "the idle sandbox to be paused", func() bool {
		got, err := a.client.GetSandbox(context.Background(), connect.NewRequest(&pb.GetSandboxRequest{SandboxId: id}))
		if err != nil {
			t.Fatalf("the idle sandbox is gone: %v", err)
		}
		return got.Msg.GetSandbox().GetState() == pb.SandboxState_SANDBOX_STATE_PAUSED
	})
	resume(t, a.client, id)
	out := string(execIn(t, a.client, id, "cat /home/user/idle; pgrep -x sleep >/dev/null && echo sleeping").GetStdout())
	if out != "kept\nsleeping\n" {
		t.Errorf("after resuming the idle-paused sandbox: %q", out)
	}
}
