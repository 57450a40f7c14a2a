package agent

import "testing"

func TestStateMachine(t *testing.T) {
	allowed := [][2]State{
		{Starting, Running}, {Starting, Stopping}, {Running, Stopping}, {Running, Pausing},
		{Pausing, Paused}, {Paused, Resuming}, {Resuming, Running}, {Stopping, Stopped}, {Error, Stopping},
	}
	for _, tr := range allowed {
		if !canMove(tr[0], tr[1]) {
			t.Errorf("%s → %s refused", tr[0], tr[1])
		}
	}
	refused := [][2]State{
		{Stopped, Running}, {Stopped, Starting}, {Running, Starting}, {Paused, Running},
		{Stopping, Running}, {Starting, Paused}, {Error, Running},
	}
	for _, tr := range refused {
		if canMove(tr[0], tr[1]) {
			t.Errorf("%s → %s allowed", tr[0], tr[1])
		}
	}
	sb := &sandbox{id: "sbtest", dir: t.TempDir(), rec: record{State: Stopped}, connsDone: make(chan struct{})}
	if err := sb.moveTo(Running); err == nil {
		t.Error("a stopped sandbox moved to running")
	}
	sb.rec.State = Starting
	if err := sb.moveTo(Running); err != nil {
		t.Fatal(err)
	}
	if r, err := readRecord(sb.dir); err != nil || r.State != Running {
		t.Errorf("persisted state %v %v", r, err)
	}
}
