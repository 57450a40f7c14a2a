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

// Port is where envd listens inside every guest.
const Port = 49983

// Version is the E2B envd protocol version Wrenn's envd implements (X-Envd-Version,
// and E2B's envdVersion): the SDKs switch features on by it, so it moves only with
// what envd does.
const Version = "0.6.13"
