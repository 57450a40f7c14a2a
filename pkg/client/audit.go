package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// AuditActor is who made an audit entry: Type "user" (ID, Email), "api_key" (ID,
// Prefix, Name) or "system" (no user or key: expiry, operators' commands, or an actor
// deleted since).
type AuditActor struct {
	Type   string `json:"type"`
	ID     string `json:"id,omitempty"`
	Email  string `json:"email,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	Name   string `json:"name,omitempty"`
}

// AuditLog is one entry of the audit log.
type AuditLog struct {
	ID           int64           `json:"id"`
	TeamID       *string         `json:"team_id"` // nil: the team was deleted since
	Action       string          `json:"action"`
	ResourceType string          `json:"resource_type"`
	ResourceID   string          `json:"resource_id"`
	Metadata     json.RawMessage `json:"metadata"`
	CreatedAt    time.Time       `json:"created_at"`
	Actor        AuditActor      `json:"actor"`
}

// AuditLogQuery asks for a page of the audit log. Before and BeforeID (both or
// neither) are the previous page's NextBefore and NextBeforeID; Limit 0 is the
// server's default (50, at most 200). Each filter matches any of its values: actions
// (sandbox.create), resource types (sandbox), actors (a user's or API key's id, or
// "system") and, for AdminAuditLogs only, team ids.
type AuditLogQuery struct {
	Before        *time.Time
	BeforeID      *int64
	Limit         int
	Actions       []string
	ResourceTypes []string
	Actors        []string
	Teams         []string
}

// AuditLogPage is a page of entries, newest first; NextBefore and NextBeforeID are
// set when older entries exist.
type AuditLogPage struct {
	AuditLogs    []AuditLog `json:"audit_logs"`
	NextBefore   *time.Time `json:"next_before"`
	NextBeforeID *int64     `json:"next_before_id"`
}

// Next is the query for the page after p, or nil when p is the last.
func (p *AuditLogPage) Next(q AuditLogQuery) *AuditLogQuery {
	if p.NextBefore == nil || p.NextBeforeID == nil {
		return nil
	}
	q.Before, q.BeforeID = p.NextBefore, p.NextBeforeID
	return &q
}

// AuditLogs returns a page of the current team's audit log (a user's token only):
// owners and admins see the team's entries, members their own.
func (c *Client) AuditLogs(ctx context.Context, q AuditLogQuery) (*AuditLogPage, error) {
	return c.auditLogs(ctx, "/v1/audit-logs", q)
}

// AdminAuditLogs returns a page of every team's audit log (platform administrators).
func (c *Client) AdminAuditLogs(ctx context.Context, q AuditLogQuery) (*AuditLogPage, error) {
	return c.auditLogs(ctx, "/v1/admin/audit-logs", q)
}

func (c *Client) auditLogs(ctx context.Context, path string, q AuditLogQuery) (*AuditLogPage, error) {
	v := url.Values{}
	if q.Before != nil {
		v.Set("before", q.Before.Format(time.RFC3339Nano))
	}
	if q.BeforeID != nil {
		v.Set("before_id", strconv.FormatInt(*q.BeforeID, 10))
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	for name, vals := range map[string][]string{"action": q.Actions, "resource_type": q.ResourceTypes, "actor": q.Actors, "team_id": q.Teams} {
		for _, s := range vals {
			v.Add(name, s)
		}
	}
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var page AuditLogPage
	err := c.do(ctx, http.MethodGet, path, nil, &page)
	return &page, err
}
