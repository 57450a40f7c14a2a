package lifecycle

import "testing"

func TestTransitions(t *testing.T) {
	allowed := [][2]State{
		{Starting, Running}, {Running, Pausing}, {Pausing, Paused}, {Paused, Resuming},
		{Resuming, Running}, {Running, Stopping}, {Stopping, Stopped}, {Error, Stopping},
		{Pausing, Running}, {Resuming, Paused},
	}
	for _, m := range allowed {
		if !CanMove(m[0], m[1]) {
			t.Errorf("%s → %s refused", m[0], m[1])
		}
	}
	refused := [][2]State{
		{Stopped, Running}, {Running, Starting}, {Paused, Running}, {Error, Running},
		{Stopping, Running}, {Running, Missing}, {Pending, Running},
	}
	for _, m := range refused {
		if CanMove(m[0], m[1]) {
			t.Errorf("%s → %s allowed", m[0], m[1])
		}
	}
}

func TestKnown(t *testing.T) {
	for _, s := range All {
		if !Known(string(s)) {
			t.Errorf("%s unknown", s)
		}
	}
	if Known("runnin") || Known("") {
		t.Error("unknown state accepted")
	}
}
