package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/pgtest"
	"github.com/wrennhq/wrenn/internal/redistest"
	"github.com/wrennhq/wrenn/internal/server/sandboxes"
	"github.com/wrennhq/wrenn/internal/testutil"
	"github.com/wrennhq/wrenn/pkg/client"
)

// serverFaults says how a sandbox must end when, at each of sandboxes.FaultPoints,
// `wrenn server` is killed (-9) and a new one starts on the same databases, or
// PostgreSQL or Redis stops under it while the operation goes on and then comes
// back: the host monitor makes the record what the host runs.
//   - kill at create/placed: recorded starting, never asked of the host: error
//     (lost), once past the create grace; at create/booted the host runs it:
//     running, once past the grace;
//   - kill at pause/begun or resume/done: the host runs it: running; at pause/done or
//     resume/begun, the host holds it paused: paused;
//   - kill at destroy/done: the host no longer has it: error (lost), which holds
//     nothing, and which a destroy then records stopped;
//   - PostgreSQL stopped: the host does what it was asked, the server cannot record
//     it, and the monitor records it once PostgreSQL is back (destroy: lost);
//   - Redis stopped (a cache, leases and limits): every operation ends as it would
//     have.
//
// A named snapshot the host made but the server could not record (killed, or
// PostgreSQL away at snapshot/done) does not exist for the API, and its files are
// removed from the host: by the failed create itself, or by the monitor once past the
// grace. The sandbox runs on in every case.
var serverFaults = map[string]map[string]string{
	"kill": {
		"create/placed": "error", "create/booted": "running",
		"pause/begun": "running", "pause/done": "paused",
		"resume/begun": "paused", "resume/done": "running",
		"destroy/done": "error", "snapshot/done": "running",
	},
	"postgres": {
		"create/placed": "running", "create/booted": "running",
		"pause/begun": "paused", "pause/done": "paused",
		"resume/begun": "running", "resume/done": "running",
		"destroy/done": "error", "snapshot/done": "running",
	},
	"redis": {
		"create/placed": "running", "create/booted": "running",
		"pause/begun": "paused", "pause/done": "paused",
		"resume/begun": "running", "resume/done": "running",
		"destroy/done": "stopped", "snapshot/done": "running",
	},
}

// The fault matrix for the control plane: at every point between the database's
// record and the host's action (both orders) the server is killed and restarted on
// the same PostgreSQL and Redis, or one of them stops and comes back; the sandbox's
// record must come to what its host runs, with what was written to the sandbox
// before intact, the sandbox usable when it runs or is paused, and nothing left on
// the host once it is destroyed.
func TestControlPlaneFaultsAtEveryPoint(t *testing.T) {
	needVM(t)
	for _, fault := range []string{"kill", "postgres", "redis"} {
		if len(serverFaults[fault]) != len(sandboxes.FaultPoints) {
			t.Fatalf("serverFaults[%s] covers %d points, sandboxes.FaultPoints has %d", fault, len(serverFaults[fault]), len(sandboxes.FaultPoints))
		}
		for _, point := range sandboxes.FaultPoints {
			t.Run(fault+"-"+strings.ReplaceAll(point, "/", "-"), func(t *testing.T) {
				serverFaultAt(t, fault, point, serverFaults[fault][point])
			})
		}
	}
}

func serverFaultAt(t *testing.T, fault, point, want string) {
	ctx := context.Background()
	op, _, _ := strings.Cut(point, "/")
	dsn, redisURL, listen := pgtest.NewDB(t), redistest.NewURL(t), freeAddr(t)
	// The monitor runs every second, and settles creates past a 3 s grace.
	fast := []string{"WRENN_HOST_MONITOR_INTERVAL=1s", "WRENN_CREATE_GRACE=3s"}
	cp := startServerWith(t, listen, dsn, redisURL, append(fast, "WRENN_SERVER_FAULT_POINT="+point)...)
	// Creates restore the template's warm snapshot: seconds instead of a cold boot.
	ag := cp.addAgent(t, cp.admin(t), agentOpts{extraArgs: []string{"--warm-start=true"}})
	sess, err := client.New(cp.base).Signup(ctx, "fault@example.com", "Fault", "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	api := client.New(cp.base, client.WithToken(sess.Token))
	var sbID string
	sh := func(script string) string {
		t.Helper()
		res, err := api.Exec(ctx, sbID, "/bin/sh", []string{"-c", script}, time.Minute)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("exec %q: %v %+v", script, err, res)
		}
		return string(res.Stdout)
	}
	if op != "create" {
		sb, err := api.CreateSandbox(ctx, client.CreateSandboxRequest{})
		if err != nil {
			t.Fatal(err)
		}
		sbID = sb.ID
		sh("echo disk > /home/user/kept && sync && echo memory > /dev/shm/kept")
		if op == "resume" {
			if _, err := api.Pause(ctx, sbID); err != nil {
				t.Fatal(err)
			}
		}
	}

	done := make(chan error, 1)
	go func() {
		var err error
		switch op {
		case "create":
			_, err = api.CreateSandbox(ctx, client.CreateSandboxRequest{})
		case "pause":
			_, err = api.Pause(ctx, sbID)
		case "resume":
			_, err = api.Resume(ctx, sbID, 0)
		case "destroy":
			err = api.DestroySandbox(ctx, sbID)
		case "snapshot":
			_, err = api.CreateSnapshot(ctx, sbID, "fault", false)
		}
		done <- err
	}()
	testutil.WaitFor(t, 3*time.Minute, "the server to reach "+point, func() bool {
		select {
		case err := <-done:
			t.Fatalf("the %s ended (%v) without reaching its fault point", op, err)
		default:
		}
		return strings.Contains(cp.logs.String(), "fault point reached")
	})
	var opErr error
	switch fault {
	case "kill":
		if err := cp.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = cp.cmd.Wait()
		if opErr = <-done; opErr == nil {
			t.Fatalf("the %s succeeded although its server was killed", op)
		}
		cp = startServerWith(t, listen, dsn, redisURL, fast...)
		api = client.New(cp.base, client.WithToken(sess.Token))
	case "postgres", "redis":
		restore := pgtest.Outage
		if fault == "redis" {
			restore = redistest.Outage
		}
		back := restore(t)
		if err := cp.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		opErr = <-done
		back()
	}
	t.Logf("%s at %s: the %s returned %v", fault, point, op, opErr)
	if fault == "redis" && opErr != nil {
		t.Errorf("the %s failed while Redis was away: %v", op, opErr)
	}
	// PostgreSQL away: what the host did is a 500 "unrecorded", never to be repeated
	// (the monitor records it); a snapshot whose record failed is removed, so it is a
	// 503 to try again.
	if fault == "postgres" {
		want := "500 unrecorded"
		if op == "snapshot" {
			want = "503 unavailable"
		}
		if opErr == nil || !strings.Contains(opErr.Error(), want) {
			t.Errorf("the %s while PostgreSQL was away returned %v, want %s", op, opErr, want)
		}
	}
	sbID = id(t, api)
	var now *client.Sandbox
	testutil.WaitFor(t, time.Minute, "the server to settle the sandbox as "+want, func() bool {
		now, err = api.GetSandbox(ctx, sbID)
		return err == nil && now.Status == want
	})
	t.Logf("%s at %s: the sandbox is %s %s", fault, point, now.Status, now.Error)
	onHost := hostOf(sbID, ag) != nil && vmRunning(sbID)
	switch want {
	case "running":
		if !onHost {
			t.Fatal("recorded running, but its host runs no VM for it")
		}
		if op == "snapshot" {
			checkServerSnapshot(t, api, ag, fault == "redis")
		}
		if got := sh("cat /home/user/kept /dev/shm/kept 2>/dev/null || echo new"); op != "create" && got != "disk\nmemory\n" || op == "create" && got != "new\n" {
			t.Errorf("what was written before the fault: %q", got)
		}
	case "paused":
		if vmRunning(sbID) {
			t.Error("recorded paused, but its VM runs")
		}
		if _, err := api.Resume(ctx, sbID, 0); err != nil {
			t.Fatal(err)
		}
		if got := sh("cat /home/user/kept /dev/shm/kept"); got != "disk\nmemory\n" {
			t.Errorf("what was written before the fault: %q", got)
		}
	case "error":
		if onHost {
			t.Error("recorded failed, but its host still runs it")
		}
		if !strings.Contains(now.Error, "lost") {
			t.Errorf("the failed sandbox says %q, want why (lost)", now.Error)
		}
	case "stopped":
		if onHost {
			t.Error("recorded stopped, but its host still runs it")
		}
	}
	if want != "stopped" {
		if err := api.DestroySandbox(ctx, sbID); err != nil {
			t.Fatal(err)
		}
	}
	if now, err := api.GetSandbox(ctx, sbID); err != nil || now.Status != "stopped" {
		t.Errorf("after the destroy: %+v %v", now, err)
	}
	ag.stop(t)
	assertGone(t, filepath.Join(ag.opts.dir, "sandboxes", sbID), "")
}

// checkServerSnapshot checks that the snapshot "fault" exists for the API with its
// files on the host, or neither (the host's files removed by the failed create or the
// monitor), and removes it.
func checkServerSnapshot(t *testing.T, api *client.Client, ag *hostAgent, want bool) {
	t.Helper()
	ctx := context.Background()
	_, err := api.GetSnapshot(ctx, "fault")
	if got := err == nil; got != want {
		t.Fatalf("snapshot fault exists for the API: %v (%v), want %v", got, err, want)
	}
	onHost := func() []string {
		files, _ := filepath.Glob(filepath.Join(ag.opts.dir, "snapshots", "snap-*"))
		return files
	}
	if want {
		if len(onHost()) != 1 {
			t.Errorf("the host holds %v, want the snapshot's one version", onHost())
		}
		if err := api.DeleteSnapshot(ctx, "fault"); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, time.Minute, "the host to hold no snapshot files", func() bool { return len(onHost()) == 0 })
}

// id is the id of the one sandbox the test's team has made.
func id(t *testing.T, api *client.Client) string {
	t.Helper()
	list, err := api.ListSandboxes(context.Background(), "starting", "running", "pausing", "paused", "resuming", "error", "stopped")
	if err != nil || len(list) != 1 {
		t.Fatalf("the team's sandboxes: %+v %v", list, err)
	}
	return list[0].ID
}
