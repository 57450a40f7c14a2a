package hostproto

import "time"

// DefaultExecTimeout bounds a command whose request sets no timeout_sec; the control
// plane derives its deadline for an Exec call from it.
const DefaultExecTimeout = 60 * time.Second

// Output limits of the unary Exec (hostagent.v1 ExecRequest.max_output_bytes, the
// REST exec's max_output_bytes). The unary exec answers with the whole output in one
// message and one JSON body, so what it keeps is what one request makes the agent and
// the control plane hold; commands with more output use the exec stream, which keeps
// nothing. 1 MiB per stream covers what people read in one answer (a script's result,
// a test run's log); 16 MiB per stream keeps even a request that asks for the most
// under 100 MiB of control-plane memory (see README, "Exec output").
const (
	DefaultExecOutputBytes = 1 << 20
	MaxExecOutputBytes     = 16 << 20
)

// AgentReadMaxBytes bounds one message the control plane reads from an agent. The
// largest one an agent sends it is an Exec answer with both streams at
// MaxExecOutputBytes; 1 MiB more holds the answer's other fields, and a ListSandboxes
// answer of a full host (65,534 sandboxes of ~150 bytes) is well below it. A bigger
// message is refused before it is buffered, whatever the agent sends.
const AgentReadMaxBytes = 2*MaxExecOutputBytes + 1<<20
