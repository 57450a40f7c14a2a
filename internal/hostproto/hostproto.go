// Package hostproto is the wire between the control plane and host agents beyond the
// Connect API: the JSON messages of the control plane's host-facing endpoints
// (register, refresh, heartbeat) and the agent's port-proxy route. Both programs use
// these definitions; neither imports the other's packages.
package hostproto

import "time"

// Paths of the host-facing endpoints.
const (
	RegisterPath  = "/v1/hosts/register"
	RefreshPath   = "/v1/hosts/auth/refresh"
	HeartbeatPath = "/v1/hosts/heartbeat"
)

// ProxyPrefix is the agent's port-proxy route: ProxyPrefix + "{sandbox}/{port}/…".
const ProxyPrefix = "/proxy/"

// ProxyAuthHeader carries the control plane's credential on proxied requests (not
// Authorization, which belongs to the client and goes through to the guest). The agent
// removes it before the request reaches the guest.
const ProxyAuthHeader = "Wrenn-Agent-Auth"

// Capacity is what a host offers.
type Capacity struct {
	VCPUs    int `json:"vcpus"`
	MemoryMB int `json:"memory_mb"`
}

// RegisterRequest is sent once, with the one-time registration token.
type RegisterRequest struct {
	Token string `json:"token"`
	// Address is where the control plane reaches the agent (host:port).
	Address string `json:"address"`
	// CertFingerprint is the hex SHA-256 of the agent's TLS certificate (pinned).
	CertFingerprint string   `json:"cert_fingerprint"`
	Version         string   `json:"version"`
	Capacity        Capacity `json:"capacity"`
}

// Tokens are a host's credentials towards the control plane.
type Tokens struct {
	Token            string    `json:"token"` // host JWT
	TokenExpiresAt   time.Time `json:"token_expires_at"`
	RefreshToken     string    `json:"refresh_token"`
	RefreshExpiresAt time.Time `json:"refresh_expires_at"`
}

// RegisterResponse carries the host's identity and credentials; HostSecret is what
// the control plane will present to the agent (the agent keeps only its hash).
type RegisterResponse struct {
	HostID     string `json:"host_id"`
	HostSecret string `json:"host_secret"`
	Tokens
}

// RefreshRequest exchanges a refresh token for new tokens.
type RefreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

// HeartbeatRequest reports the host's state (authenticated by the host JWT).
type HeartbeatRequest struct {
	// CertFingerprint is the certificate the agent serves; a mismatch with the pinned
	// one is refused (403).
	CertFingerprint string   `json:"cert_fingerprint"`
	Version         string   `json:"version"`
	Capacity        Capacity `json:"capacity"`
	Sandboxes       int      `json:"sandboxes"`
}

// HeartbeatResponse says how often to come back.
type HeartbeatResponse struct {
	Status      string `json:"status"`
	IntervalSec int    `json:"interval_sec"`
}
