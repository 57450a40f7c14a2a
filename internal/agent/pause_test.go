package agent_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/agent"
	"github.com/wrennhq/wrenn/internal/agent/agenttest"
	"github.com/wrennhq/wrenn/internal/envdclient"
	"github.com/wrennhq/wrenn/internal/lifecycle"
)

// These run the manager's pause and resume on the fake driver, whose snapshots keep a
// sandbox's files but not its processes (see agenttest/snapshot.go); what a real VM
// keeps across a pause is test/e2e's to show.

func run(t *testing.T, a *agenttest.Agent, id, script string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	res, err := a.Manager.Exec(context.Background(), id, envdclient.Command{Cmd: "/bin/sh", Args: []string{"-c", script}}, 10*time.Second, nil, &out, &out)
	if err == nil && res.ExitCode != 0 {
		t.Fatalf("%q exited %d: %s", script, res.ExitCode, out.String())
	}
	return out.String(), err
}

func TestPauseResume(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	ctx := context.Background()
	info := create(t, a)
	id := info.Spec.ID
	if _, err := run(t, a, id, "echo kept > \"$HOME/f\""); err != nil {
		t.Fatal(err)
	}

	paused, stats, err := a.Manager.Pause(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if paused.State != lifecycle.Paused || paused.HostIP.IsValid() || stats.Duration <= 0 {
		t.Errorf("paused sandbox: %+v, %+v", paused, stats)
	}
	if n := a.Slots.InUse(); n != 0 {
		t.Errorf("a paused sandbox holds %d network slots", n)
	}
	if _, err := os.Stat(filepath.Join(a.Dir, "sandboxes", id, "snapshot", "snapshot.json")); err != nil {
		t.Errorf("no complete snapshot: %v", err)
	}
	var stateErr *agent.ErrState
	if _, err := run(t, a, id, "true"); !errors.As(err, &stateErr) {
		t.Errorf("exec in a paused sandbox: %v, want a state error", err)
	}
	if _, _, err := a.Manager.Pause(ctx, id); !errors.As(err, &stateErr) {
		t.Errorf("pause of a paused sandbox: %v, want a state error", err)
	}

	resumed, token, took, err := a.Manager.Resume(ctx, id, 600)
	if err != nil {
		t.Fatal(err)
	}
	if resumed.State != lifecycle.Running || !resumed.HostIP.IsValid() || token == "" || took <= 0 || resumed.Spec.TimeoutSec != 600 {
		t.Errorf("resumed sandbox: %+v, token %q, took %v", resumed, token, took)
	}
	if out, err := run(t, a, id, "cat \"$HOME/f\""); err != nil || out != "kept\n" {
		t.Errorf("file after resume: %q, %v", out, err)
	}
	if _, err := os.Stat(filepath.Join(a.Dir, "sandboxes", id, "snapshot")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the spent snapshot remains after a resume: %v", err)
	}
	if _, _, _, err := a.Manager.Resume(ctx, id, 0); !errors.As(err, &stateErr) {
		t.Errorf("resume of a running sandbox: %v, want a state error", err)
	}
	// Many cycles leak nothing.
	for range 5 {
		if _, _, err := a.Manager.Pause(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := a.Manager.Resume(ctx, id, 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := a.Slots.InUse(); n != 1 {
		t.Errorf("%d slots in use after pause/resume cycles of one sandbox", n)
	}
	if err := a.Manager.Destroy(ctx, id); err != nil {
		t.Fatal(err)
	}
	assertNoSandboxDirs(t, a)
}

// A resume that fails before the guest runs leaves the sandbox paused with its
// snapshot, holding nothing, and a retry succeeds.
func TestFailedResumeStaysPaused(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	ctx := context.Background()
	id := create(t, a).Spec.ID
	if _, _, err := a.Manager.Pause(ctx, id); err != nil {
		t.Fatal(err)
	}
	a.Driver.FailNextStart(errors.New("host out of memory"))
	if _, _, _, err := a.Manager.Resume(ctx, id, 0); err == nil || !strings.Contains(err.Error(), "host out of memory") {
		t.Fatalf("failed resume: %v", err)
	}
	if info, _ := a.Manager.Get(id); info == nil || info.State != lifecycle.Paused {
		t.Fatalf("after a failed resume: %+v, want paused", info)
	}
	if n := a.Slots.InUse(); n != 0 {
		t.Errorf("a failed resume left %d network slots held", n)
	}
	if _, _, _, err := a.Manager.Resume(ctx, id, 0); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if _, err := run(t, a, id, "true"); err != nil {
		t.Errorf("exec after the retried resume: %v", err)
	}
}

// A sandbox idle past its timeout is paused, not destroyed, and resumes on demand.
func TestIdleSandboxIsPaused(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	ctx := context.Background()
	info, _, _, err := a.Manager.Create(ctx, agent.Spec{Template: agenttest.Template, TimeoutSec: 1})
	if err != nil {
		t.Fatal(err)
	}
	id := info.Spec.ID
	if _, err := run(t, a, id, "echo x > \"$HOME/idle\""); err != nil {
		t.Fatal(err)
	}
	a.Manager.StartReaper(50 * time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := a.Manager.Get(id)
		if err != nil {
			t.Fatalf("the idle sandbox is gone (destroyed instead of paused?): %v", err)
		}
		if info.State == lifecycle.Paused {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("idle sandbox still %s after 10 s with a 1 s timeout", info.State)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, _, _, err := a.Manager.Resume(ctx, id, 3600); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, a, id, "cat \"$HOME/idle\""); err != nil || out != "x\n" {
		t.Errorf("file after resuming an idle-paused sandbox: %q, %v", out, err)
	}
}

// An agent restart keeps a paused sandbox paused and resumable, and one caught with a
// complete snapshot mid-pause becomes paused.
func TestRestartKeepsPausedSandboxes(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	ctx := context.Background()
	id := create(t, a).Spec.ID
	if _, _, err := a.Manager.Pause(ctx, id); err != nil {
		t.Fatal(err)
	}
	// A second sandbox "caught mid-pause": its record says pausing, its snapshot is
	// complete (the crash came after the snapshot, before the record said paused).
	other := create(t, a).Spec.ID
	if _, _, err := a.Manager.Pause(ctx, other); err != nil {
		t.Fatal(err)
	}
	recPath := filepath.Join(a.Dir, "sandboxes", other, "sandbox.json")
	raw, err := os.ReadFile(recPath)
	if err != nil {
		t.Fatal(err)
	}
	pausing := bytes.Replace(raw, []byte(`"state": "paused"`), []byte(`"state": "pausing"`), 1)
	if bytes.Equal(pausing, raw) {
		t.Fatalf("record has no paused state to rewrite: %s", raw)
	}
	if err := os.WriteFile(recPath, pausing, 0o600); err != nil {
		t.Fatal(err)
	}

	m, err := agent.New(agent.Config{Dir: a.Dir, Driver: a.Driver, Slots: a.Slots, Disks: agenttest.Disks{}, RecordKey: a.RecordKey})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	for _, sid := range []string{id, other} {
		info, err := m.Get(sid)
		if err != nil || info.State != lifecycle.Paused {
			t.Fatalf("after a restart: %+v %v, want paused", info, err)
		}
		if _, _, _, err := m.Resume(ctx, sid, 0); err != nil {
			t.Fatalf("resume after a restart: %v", err)
		}
	}
}
