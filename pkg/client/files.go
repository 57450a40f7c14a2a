package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Entry is a file, directory or symlink in a sandbox.
type Entry struct {
	Name string `json:"name"`
	Path string `json:"path"`
	// Type is "file", "dir" or "symlink" (the entry itself, not a symlink's target).
	Type string `json:"type"`
	Size int64  `json:"size"`
	// Mode is the permission bits as chmod takes them (0o644).
	Mode        uint32     `json:"mode"`
	Permissions string     `json:"permissions"`
	Owner       string     `json:"owner"`
	Group       string     `json:"group"`
	ModifiedAt  *time.Time `json:"modified_at,omitempty"`
	// SymlinkTarget is a symlink's resolved absolute target.
	SymlinkTarget string `json:"symlink_target,omitempty"`
}

// Listing is a directory's entries in lexical pre-order (a, a/x, b, …). Truncated:
// there were more than the server keeps (10,000); Entries are the first.
type Listing struct {
	Entries   []Entry `json:"entries"`
	Truncated bool    `json:"truncated"`
}

func filesPath(id, route, path string) string {
	return "/v1/sandboxes/" + url.PathEscape(id) + route + "?path=" + url.QueryEscape(path)
}

// ListDir lists the absolute path in a sandbox, depth levels down (0 = the server's
// default, 1: the directory's own entries; at most 10).
func (c *Client) ListDir(ctx context.Context, id, path string, depth int) (*Listing, error) {
	p := filesPath(id, "/files/list", path)
	if depth > 0 {
		p += "&depth=" + strconv.Itoa(depth)
	}
	var out Listing
	if err := c.do(ctx, http.MethodGet, p, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// MakeDir creates the absolute path and its missing parents in a sandbox. An existing
// directory is an *Error with status 409.
func (c *Client) MakeDir(ctx context.Context, id, path string) (*Entry, error) {
	var out Entry
	if err := c.do(ctx, http.MethodPost, filesPath(id, "/files/mkdir", path), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Remove deletes the absolute path from a sandbox: a file, a symlink, or a directory
// with everything in it. Nothing there is an *Error with status 404 (IsNotFound).
func (c *Client) Remove(ctx context.Context, id, path string) error {
	return c.do(ctx, http.MethodDelete, filesPath(id, "/files", path), nil, nil)
}
