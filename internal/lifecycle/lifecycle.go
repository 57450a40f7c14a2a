// Package lifecycle defines a sandbox's states — the values the agent, the control
// plane, the database and the API all use — and which moves between them the host
// agent's state machine allows. It is shared, wire-level vocabulary: the one place a
// state's name is spelled.
package lifecycle

import "slices"

// State is where a sandbox is in its life.
type State string

// States a sandbox has on its host (the agent's state machine).
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

// States only the control plane knows.
const (
	// Pending: recorded, not yet placed on a host.
	Pending State = "pending"
	// Missing: its host stopped answering; reversible when the host comes back.
	Missing State = "missing"
)

// All is every state, in the order a sandbox lives through them.
var All = []State{Pending, Starting, Running, Pausing, Paused, Resuming, Stopping, Stopped, Error, Missing}

// Known reports whether s is one of All.
func Known(s string) bool { return slices.Contains(All, State(s)) }

// transitions lists the states each state may move to on a host; anything else is a
// bug in the agent's manager.
var transitions = map[State][]State{
	Starting: {Running, Stopping, Error},
	Running:  {Pausing, Stopping, Error},
	Pausing:  {Paused, Running, Error},
	Paused:   {Resuming, Stopping, Error},
	Resuming: {Running, Paused, Error},
	Stopping: {Stopped, Error},
	Error:    {Stopping},
}

// CanMove reports whether a sandbox in from may move to to on its host.
func CanMove(from, to State) bool { return slices.Contains(transitions[from], to) }
