package client

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Host is a host (a machine running `wrenn agent`) as the API shows it.
type Host struct {
	ID              string     `json:"id"`
	TeamID          string     `json:"team_id"` // empty: a platform host
	Name            string     `json:"name"`
	Status          string     `json:"status"` // pending, online, unreachable, …
	Address         string     `json:"address"`
	CertFingerprint string     `json:"cert_fingerprint"`
	AgentVersion    string     `json:"agent_version"`
	VCPUs           int        `json:"vcpus"`
	MemoryMB        int        `json:"memory_mb"`
	Sandboxes       int        `json:"sandboxes"`
	Tags            []string   `json:"tags"`
	CreatedAt       time.Time  `json:"created_at"`
	RegisteredAt    *time.Time `json:"registered_at"`
	LastHeartbeatAt *time.Time `json:"last_heartbeat_at"`
}

// NewHost is a created host and the one-time token its agent registers with.
type NewHost struct {
	Host
	RegistrationToken string    `json:"registration_token"`
	TokenExpiresAt    time.Time `json:"registration_token_expires_at"`
}

// CreateHost adds a host: a platform host (platform admins) or one of the current
// team's own hosts (BYOC teams' owners and admins).
func (c *Client) CreateHost(ctx context.Context, name string, platform bool) (*NewHost, error) {
	var h NewHost
	err := c.do(ctx, http.MethodPost, "/v1/hosts", map[string]any{"name": name, "platform": platform}, &h)
	return &h, err
}

// ListHosts lists the hosts the caller may see.
func (c *Client) ListHosts(ctx context.Context) ([]Host, error) {
	var out struct {
		Hosts []Host `json:"hosts"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/hosts", nil, &out)
	return out.Hosts, err
}

// GetHost returns one host.
func (c *Client) GetHost(ctx context.Context, id string) (*Host, error) {
	var h Host
	err := c.do(ctx, http.MethodGet, "/v1/hosts/"+url.PathEscape(id), nil, &h)
	return &h, err
}

// DeleteHost removes a host; without force it fails (409) while sandboxes run there.
func (c *Client) DeleteHost(ctx context.Context, id string, force bool) error {
	path := "/v1/hosts/" + url.PathEscape(id)
	if force {
		path += "?force=true"
	}
	return c.do(ctx, http.MethodDelete, path, nil, nil)
}

// TagHost adds a tag to a host; UntagHost removes it.
func (c *Client) TagHost(ctx context.Context, id, tag string) error {
	return c.do(ctx, http.MethodPut, "/v1/hosts/"+url.PathEscape(id)+"/tags/"+url.PathEscape(tag), nil, nil)
}

// UntagHost removes a tag from a host.
func (c *Client) UntagHost(ctx context.Context, id, tag string) error {
	return c.do(ctx, http.MethodDelete, "/v1/hosts/"+url.PathEscape(id)+"/tags/"+url.PathEscape(tag), nil, nil)
}
