package sandboxes

import (
	"errors"
	"testing"

	"connectrpc.com/connect"
	"github.com/wrennhq/wrenn/internal/lifecycle"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// A failed pause or resume maps to the answer a caller can act on: a host without
// snapshots is not implemented there (501; no retry helps), a refusal for the state
// names the state the host reported (409), the rest as any agent error. The fake
// agent of the API tests always snapshots, so the 501 is tested here.
func TestTransitionError(t *testing.T) {
	const id = "sb0123456789abcdefgh"
	unsupported := connect.NewError(connect.CodeUnimplemented, errors.New("not supported on this host: the qemu driver cannot snapshot a vm"))
	err := transitionError(id, "pause", "", unsupported)
	if want := "not implemented: sandbox " + id + " cannot pause: its host cannot snapshot VMs (the qemu driver cannot snapshot a vm)"; !errors.Is(err, core.ErrNotImplemented) || err.Error() != want {
		t.Errorf("unsupported: %v\nwant %s", err, want)
	}
	// An agent from before pause existed answers unimplemented for the procedure too.
	if err := transitionError(id, "resume", "", connect.NewError(connect.CodeUnimplemented, errors.New("404 Not Found"))); !errors.Is(err, core.ErrNotImplemented) {
		t.Errorf("old agent: %v", err)
	}
	state := connect.NewError(connect.CodeFailedPrecondition, errors.New("sandbox "+id+" is paused: cannot pause"))
	if err := transitionError(id, "pause", lifecycle.Paused, state); !errors.Is(err, core.ErrConflict) || err.Error() != "conflict: sandbox "+id+" is paused: cannot pause" {
		t.Errorf("state: %v", err)
	}
	// The host did not say what it is now: its own message.
	if err := transitionError(id, "pause", "", state); !errors.Is(err, core.ErrConflict) || err.Error() != "pause sandbox "+id+": conflict: sandbox "+id+" is paused: cannot pause" {
		t.Errorf("state, host silent: %v", err)
	}
	if err := transitionError(id, "resume", lifecycle.Paused, connect.NewError(connect.CodeInternal, errors.New("restore vm: boom"))); errors.Is(err, core.ErrConflict) || errors.Is(err, core.ErrNotImplemented) {
		t.Errorf("internal: %v", err)
	}
}

func TestPausedConflict(t *testing.T) {
	const id = "sb0123456789abcdefgh"
	for st, want := range map[lifecycle.State]string{
		lifecycle.Paused:   "conflict: sandbox " + id + " is paused; resume it first",
		lifecycle.Pausing:  "conflict: sandbox " + id + " is pausing; resume it once it is paused",
		lifecycle.Resuming: "conflict: sandbox " + id + " is resuming; try again once it runs",
	} {
		if err := pausedConflict(id, st); !errors.Is(err, core.ErrConflict) || err.Error() != want {
			t.Errorf("%s: %v", st, err)
		}
	}
	for _, st := range []lifecycle.State{lifecycle.Running, lifecycle.Starting, lifecycle.Stopped, lifecycle.Error, lifecycle.Missing} {
		if err := pausedConflict(id, st); err != nil {
			t.Errorf("%s: %v", st, err)
		}
	}
	if err := stateConflict(id, lifecycle.Missing, "resume"); err.Error() != "conflict: sandbox "+id+" is missing (its host does not answer): cannot resume" {
		t.Errorf("missing: %v", err)
	}
}
