package client

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Snapshot is a named snapshot as the API shows it: a sandbox's memory and disk frozen
// into a template of the team's, so that new sandboxes start where it was (create one
// with CreateSandboxRequest.Template set to Name).
type Snapshot struct {
	Name      string    `json:"name"`
	SandboxID string    `json:"sandbox_id"` // the sandbox it was taken from
	Template  string    `json:"template"`   // that sandbox's base template
	VCPUs     int       `json:"vcpus"`      // sandboxes created from it have these
	MemoryMB  int       `json:"memory_mb"`  // and this memory
	DiskMB    int       `json:"disk_mb"`
	SizeBytes int64     `json:"size_bytes"` // the disk space its files take
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"` // an overwrite moves it
}

// CreateSnapshot freezes a running or paused sandbox into the team's snapshot name (a
// running one runs on afterwards). A name the team already has is a 409 *Error unless
// overwrite replaces it; so is a sandbox in another state. A host that cannot snapshot
// is a 501.
func (c *Client) CreateSnapshot(ctx context.Context, sandboxID, name string, overwrite bool) (*Snapshot, error) {
	path := "/v1/snapshots"
	if overwrite {
		path += "?overwrite=true"
	}
	var s Snapshot
	err := c.do(ctx, http.MethodPost, path, map[string]string{"sandbox_id": sandboxID, "name": name}, &s)
	return &s, err
}

// ListSnapshots lists the team's snapshots by name.
func (c *Client) ListSnapshots(ctx context.Context) ([]Snapshot, error) {
	var out struct {
		Snapshots []Snapshot `json:"snapshots"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/snapshots", nil, &out)
	return out.Snapshots, err
}

// GetSnapshot returns one of the team's snapshots.
func (c *Client) GetSnapshot(ctx context.Context, name string) (*Snapshot, error) {
	var s Snapshot
	err := c.do(ctx, http.MethodGet, "/v1/snapshots/"+url.PathEscape(name), nil, &s)
	return &s, err
}

// DeleteSnapshot removes one of the team's snapshots; sandboxes already created from
// it are not affected.
func (c *Client) DeleteSnapshot(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/snapshots/"+url.PathEscape(name), nil, nil)
}
