package client

import (
	"context"
	"net/http"
	"net/url"
)

// QuotaLimit is one limit of a team's quota.
type QuotaLimit struct {
	Limit    int  `json:"limit"`    // in force; 0: no limit
	Used     int  `json:"used"`     // what the team holds now
	Override *int `json:"override"` // the team's own limit; nil: the server's default
}

// TeamQuota is what a team may hold at once and what it holds.
type TeamQuota struct {
	TeamID    string     `json:"team_id"`
	Sandboxes QuotaLimit `json:"sandboxes"`
	VCPUs     QuotaLimit `json:"vcpus"`
	MemoryMB  QuotaLimit `json:"memory_mb"`
	APIKeys   QuotaLimit `json:"api_keys"`
}

// TeamQuota returns a team's quota (its members and platform administrators).
func (c *Client) TeamQuota(ctx context.Context, teamID string) (*TeamQuota, error) {
	var q TeamQuota
	err := c.do(ctx, http.MethodGet, "/v1/teams/"+url.PathEscape(teamID)+"/quotas", nil, &q)
	return &q, err
}

// SetTeamQuota overrides limits of a team's quota (platform administrators): keys are
// "sandboxes", "vcpus", "memory_mb" and "api_keys"; a nil value returns that limit to
// the server's default, 0 lifts it; limits not named keep their override.
func (c *Client) SetTeamQuota(ctx context.Context, teamID string, limits map[string]*int) (*TeamQuota, error) {
	var q TeamQuota
	err := c.do(ctx, http.MethodPatch, "/v1/teams/"+url.PathEscape(teamID)+"/quotas", limits, &q)
	return &q, err
}
