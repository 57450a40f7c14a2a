// Package envdapi holds the JSON types of envd's plain-HTTP endpoints that both envd and
// its clients (the host agent) use, so the two cannot drift apart.
package envdapi

import "time"

// InitRequest is the body of POST /init. Fields after Timestamp are Wrenn's extension
// for clones of one snapshot, which have no metadata service to tell them apart.
type InitRequest struct {
	EnvVars        map[string]string `json:"envVars"`
	AccessToken    *string           `json:"accessToken,omitempty"`
	DefaultUser    string            `json:"defaultUser,omitempty"`
	DefaultWorkdir string            `json:"defaultWorkdir,omitempty"`
	Timestamp      *time.Time        `json:"timestamp,omitempty"`

	SandboxID  string `json:"sandboxID,omitempty"`
	TemplateID string `json:"templateID,omitempty"`
	Hostname   string `json:"hostname,omitempty"`
	// RandomSeed is credited to the guest kernel's entropy pool and its CRNG is reseeded
	// from it before /init answers, so clones of one memory snapshot stop producing the
	// same random numbers. Send fresh bytes from a CSPRNG with every /init (32 are
	// plenty): envd credits them as entropy.
	RandomSeed []byte `json:"randomSeed,omitempty"`
}

// Metrics is the body of GET /metrics: the guest's own view of its CPU, memory and
// root filesystem. The host agent samples it alongside what it sees of the VM from
// outside.
type Metrics struct {
	Timestamp int64 `json:"ts"` // Unix seconds
	CPUCount  int   `json:"cpu_count"`
	// CPUUsedPct is the guest's CPU use since the previous request (over a short
	// sample on the first), over all its CPUs, with 2 decimals.
	CPUUsedPct  float64 `json:"cpu_used_pct"`
	MemTotal    uint64  `json:"mem_total"`
	MemUsed     uint64  `json:"mem_used"`
	MemCache    uint64  `json:"mem_cache"`
	MemTotalMiB uint64  `json:"mem_total_mib"` // deprecated, kept for E2B's clients
	MemUsedMiB  uint64  `json:"mem_used_mib"`  // deprecated, kept for E2B's clients
	DiskUsed    uint64  `json:"disk_used"`     // of /: total − available
	DiskTotal   uint64  `json:"disk_total"`
}

// Port is where envd listens inside every guest.
const Port = 49983

// Version is the E2B envd protocol version Wrenn's envd implements (X-Envd-Version,
// and E2B's envdVersion): the SDKs switch features on by it, so it moves only with
// what envd does.
const Version = "0.6.13"
