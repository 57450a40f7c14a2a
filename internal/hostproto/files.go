package hostproto

// Bounds of a directory listing (hostagent.v1 ListDir), shared by the agent that
// enforces them and the control plane that checks requests first. A deeper or longer
// listing is an answer nobody reads that costs the guest, the agent and the control
// plane memory: past MaxListEntries the listing is cut and says so (truncated).
const (
	MaxListDepth   = 10
	MaxListEntries = 10000
)
