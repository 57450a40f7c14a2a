package agent

import "fmt"

// State is where a sandbox is in its life on this host.
type State string

const (
	Starting State = "starting"
	Running  State = "running"
	Pausing  State = "pausing"
	Paused   State = "paused"
	Resuming State = "resuming"
	Stopping State = "stopping"
	Stopped  State = "stopped"
	Error    State = "error"
)

// transitions lists the states each state may move to; anything else is a bug in the
// manager, caught by transition().
var transitions = map[State][]State{
	Starting: {Running, Stopping, Error},
	Running:  {Pausing, Stopping, Error},
	Pausing:  {Paused, Running, Error},
	Paused:   {Resuming, Stopping, Error},
	Resuming: {Running, Paused, Error},
	Stopping: {Stopped, Error},
	Error:    {Stopping},
}

// canMove reports whether a sandbox in from may move to to.
func canMove(from, to State) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// ErrState is returned when an operation does not fit the sandbox's state.
type ErrState struct {
	ID    string
	State State
	Op    string
}

func (e *ErrState) Error() string {
	return fmt.Sprintf("sandbox %s is %s: cannot %s", e.ID, e.State, e.Op)
}
