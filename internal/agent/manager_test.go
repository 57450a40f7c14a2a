package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/internal/agent"
	"github.com/wrennhq/wrenn/internal/agent/agenttest"
	"github.com/wrennhq/wrenn/internal/envdclient"
	"github.com/wrennhq/wrenn/internal/ident"
	"github.com/wrennhq/wrenn/internal/lifecycle"
	"github.com/wrennhq/wrenn/internal/vmm"
)

func create(t *testing.T, a *agenttest.Agent) *agent.Info {
	t.Helper()
	info, _, _, err := a.Manager.Create(context.Background(), agent.Spec{Template: agenttest.Template})
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func TestCreateExecDestroy(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	info := create(t, a)
	if info.State != lifecycle.Running || !ident.ValidSandboxID(info.Spec.ID) {
		t.Fatalf("created sandbox: %+v", info)
	}
	var out bytes.Buffer
	res, err := a.Manager.Exec(context.Background(), info.Spec.ID, envdclient.Command{Cmd: "/bin/echo", Args: []string{"hello"}}, 10*time.Second, nil, &out, &out)
	if err != nil || res.ExitCode != 0 || out.String() != "hello\n" {
		t.Fatalf("exec: %v %+v %q", err, res, out.String())
	}
	if err := a.Manager.Destroy(context.Background(), info.Spec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Manager.Get(info.Spec.ID); !errors.Is(err, agent.ErrNotFound) {
		t.Errorf("destroyed sandbox still there: %v", err)
	}
	if n := a.Slots.InUse(); n != 0 {
		t.Errorf("%d slots still in use after destroy", n)
	}
	assertNoSandboxDirs(t, a)
}

// A failed step undoes the ones before it: no slot, disk, directory or table entry
// remains, and the error says what failed.
func TestFailedCreateLeavesNothing(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	a.Driver.SetHooks(func(context.Context, vmm.Config) error { return errors.New("no vm today") }, nil)
	_, _, _, err := a.Manager.Create(context.Background(), agent.Spec{Template: agenttest.Template})
	if err == nil || !strings.Contains(err.Error(), "no vm today") {
		t.Fatalf("create error = %v", err)
	}
	if n := len(a.Manager.List()); n != 0 {
		t.Errorf("%d sandboxes listed after a failed create", n)
	}
	if n := a.Slots.InUse(); n != 0 {
		t.Errorf("%d slots in use after a failed create", n)
	}
	assertNoSandboxDirs(t, a)
}

func assertNoSandboxDirs(t *testing.T, a *agenttest.Agent) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(a.Dir, "sandboxes"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("sandbox directory %s remains", e.Name())
	}
}

// stuck holds the driver inside a call until released, and says when a call got there.
type stuck struct {
	entered chan struct{}
	release chan struct{}
}

func newStuck() *stuck { return &stuck{entered: make(chan struct{}, 1), release: make(chan struct{})} }

func (s *stuck) hold(ctx context.Context) error {
	s.entered <- struct{}{}
	select {
	case <-s.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// The published view of the sandboxes — Get, List, the ListSandboxes and GetSandbox
// RPCs, and with List the heartbeat and the idle reaper — answers at once while a
// transition is stuck in the VMM driver: here a create stuck in Start and a destroy
// stuck in Stop. (Pause, once it exists, takes the same transition lock.)
func TestPublishedViewDoesNotWaitForTransitions(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	other := create(t, a) // a settled sandbox, listed beside the one in transition
	// Warm the RPC client's connection, so the timings below are of the calls.
	if _, err := a.Client.ListSandboxes(context.Background(), connect.NewRequest(&pb.ListSandboxesRequest{})); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name  string
		setup func(s *stuck) (id string, run func() error)
	}{
		{"create stuck in the driver's start", func(s *stuck) (string, func() error) {
			a.Driver.SetHooks(func(ctx context.Context, _ vmm.Config) error { return s.hold(ctx) }, nil)
			id := ident.NewSandboxID()
			return id, func() error {
				_, _, _, err := a.Manager.Create(context.Background(), agent.Spec{ID: id, Template: agenttest.Template})
				return err
			}
		}},
		{"destroy stuck in the machine's stop", func(s *stuck) (string, func() error) {
			id := create(t, a).Spec.ID
			a.Driver.SetHooks(nil, func(ctx context.Context) error { return s.hold(ctx) })
			return id, func() error { return a.Manager.Destroy(context.Background(), id) }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStuck()
			id, run := tc.setup(s)
			defer a.Driver.SetHooks(nil, nil)
			done := make(chan error, 1)
			go func() { done <- run() }()
			select {
			case <-s.entered:
			case err := <-done:
				t.Fatalf("transition ended before reaching the driver: %v", err)
			}
			checkAnswersAtOnce(t, a, id, other.Spec.ID)
			close(s.release)
			if err := <-done; err != nil {
				t.Fatalf("transition failed once released: %v", err)
			}
		})
	}
}

func checkAnswersAtOnce(t *testing.T, a *agenttest.Agent, busy, settled string) {
	t.Helper()
	const limit = 50 * time.Millisecond
	ctx := context.Background()
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"List", func() error {
			seen := map[string]bool{}
			for _, i := range a.Manager.List() {
				seen[i.Spec.ID] = true
			}
			if !seen[busy] || !seen[settled] {
				return errors.New("want both sandboxes listed")
			}
			return nil
		}},
		{"Get of the sandbox in transition", func() error { _, err := a.Manager.Get(busy); return err }},
		{"Get of another sandbox", func() error { _, err := a.Manager.Get(settled); return err }},
		{"ListSandboxes RPC", func() error {
			_, err := a.Client.ListSandboxes(ctx, connect.NewRequest(&pb.ListSandboxesRequest{}))
			return err
		}},
		{"GetSandbox RPC", func() error {
			_, err := a.Client.GetSandbox(ctx, connect.NewRequest(&pb.GetSandboxRequest{SandboxId: busy}))
			return err
		}},
	} {
		if took, err := answersWithin(limit, c.call); err != nil {
			t.Errorf("%s: %v", c.name, err)
		} else {
			t.Logf("%s answered in %v", c.name, took)
		}
	}
}

// Recover keeps sandboxes that are not running (paused ones; ones whose VM died while
// no agent watched, in the error state with the reason) and cleans only those caught
// half-way through a create or destroy.
func TestRecoverKeepsSandboxesThatAreNotRunning(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	write := func(state lifecycle.State, slot int) string {
		id := ident.NewSandboxID()
		dir := filepath.Join(a.Dir, "sandboxes", id)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		rec := `{"spec":{"id":"` + id + `","template":"base"},"state":"` + string(state) + `","slot":` + strconv.Itoa(slot) + `,"vmm":"fake","created_at":"2026-01-02T03:04:05Z"}`
		if err := os.WriteFile(filepath.Join(dir, "sandbox.json"), []byte(rec), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := (agenttest.Disks{}).Create(context.Background(), "", dir, 0); err != nil {
			t.Fatal(err)
		}
		return id
	}
	paused := write(lifecycle.Paused, 0)
	died := write(lifecycle.Running, 3) // its VM is gone: the fake driver adopts nothing
	starting := write(lifecycle.Starting, 4)
	otherAgents := write(lifecycle.Running, 999)

	m, err := agent.New(agent.Config{Dir: a.Dir, Driver: a.Driver, Slots: a.Slots, Disks: agenttest.Disks{}, RecordKey: a.RecordKey})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := m.Recover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rep.Cleaned, ","); got != starting {
		t.Errorf("cleaned %q, want only the sandbox caught starting %s", got, starting)
	}
	if len(rep.Skipped) != 1 || rep.Skipped[0] != otherAgents {
		t.Errorf("skipped %v, want the sandbox outside the slot range %s", rep.Skipped, otherAgents)
	}
	for id, want := range map[string]lifecycle.State{paused: lifecycle.Paused, died: lifecycle.Error} {
		info, err := m.Get(id)
		if err != nil {
			t.Fatalf("%s was not kept: %v", want, err)
		}
		if info.State != want {
			t.Errorf("sandbox recovered as %s, want %s", info.State, want)
		}
		if _, err := os.Stat(filepath.Join(a.Dir, "sandboxes", id, "rootfs.ext4")); err != nil {
			t.Errorf("%s sandbox lost its disk: %v", want, err)
		}
	}
	if info, _ := m.Get(died); info != nil && !strings.Contains(info.Error, "lost while the agent was away") {
		t.Errorf("error state does not say why: %q", info.Error)
	}
	if _, err := os.Stat(filepath.Join(a.Dir, "sandboxes", starting)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("half-made sandbox's directory remains: %v", err)
	}
	if n := a.Slots.InUse(); n != 0 {
		t.Errorf("%d slots held after recovery; no sandbox runs", n)
	}
	// The kept sandboxes can still be destroyed.
	for _, id := range []string{paused, died} {
		if err := m.Destroy(context.Background(), id); err != nil {
			t.Errorf("destroy recovered sandbox: %v", err)
		}
	}
}

// answersWithin runs call until one run answers within limit, at most three times. A
// call that waits for the transition never answers while it is stuck, so it fails all
// three; one slowed by a busy machine (CI runs packages side by side) passes on a retry.
func answersWithin(limit time.Duration, call func() error) (time.Duration, error) {
	for range 3 {
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- call() }()
		select {
		case err := <-done:
			return time.Since(start), err
		case <-time.After(limit):
		}
	}
	return 0, fmt.Errorf("did not answer within %v (three tries) while a transition was in the driver", limit)
}
