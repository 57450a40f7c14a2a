package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Platform administration (platform administrators only, with a user's token): every
// team, user, template and sandbox of the platform. The listings of teams, users and
// sandboxes come in pages, newest first: a page's NextCursor, given back as the
// query's Cursor (Next does it), is the page after it.

// AdminTeam is a team as platform administrators see it.
type AdminTeam struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Slug      string     `json:"slug"`
	BYOC      bool       `json:"is_byoc"`
	CreatedAt time.Time  `json:"created_at"`
	DeletedAt *time.Time `json:"deleted_at"` // nil while the team exists
	Members   int        `json:"members"`
	Sandboxes int        `json:"sandboxes"` // live ones: every one not stopped or error
}

// AdminTeamsQuery asks for a page of teams; Limit 0 is the server's default (50, at
// most 200).
type AdminTeamsQuery struct {
	Limit          int
	Cursor         string
	IncludeDeleted bool
}

// AdminTeamPage is a page of teams, newest first.
type AdminTeamPage struct {
	Teams      []AdminTeam `json:"teams"`
	NextCursor *string     `json:"next_cursor"` // nil on the last page
}

// Next is the query for the page after p, or nil when p is the last.
func (p *AdminTeamPage) Next(q AdminTeamsQuery) *AdminTeamsQuery {
	if p.NextCursor == nil {
		return nil
	}
	q.Cursor = *p.NextCursor
	return &q
}

// AdminTeams returns a page of every team of the platform.
func (c *Client) AdminTeams(ctx context.Context, q AdminTeamsQuery) (*AdminTeamPage, error) {
	v := pageValues(q.Limit, q.Cursor)
	if q.IncludeDeleted {
		v.Set("include_deleted", "true")
	}
	var page AdminTeamPage
	err := c.do(ctx, http.MethodGet, withQuery("/v1/admin/teams", v), nil, &page)
	return &page, err
}

// AdminUser is a user as platform administrators see it.
type AdminUser struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	Admin     bool      `json:"is_admin"`
	CreatedAt time.Time `json:"created_at"`
	Teams     int       `json:"teams"` // teams (not deleted) the user belongs to
}

// AdminUsersQuery asks for a page of users; Email keeps those whose email starts with
// it (literally: % and _ are no wildcards).
type AdminUsersQuery struct {
	Limit  int
	Cursor string
	Email  string
}

// AdminUserPage is a page of users, newest first.
type AdminUserPage struct {
	Users      []AdminUser `json:"users"`
	NextCursor *string     `json:"next_cursor"`
}

// Next is the query for the page after p, or nil when p is the last.
func (p *AdminUserPage) Next(q AdminUsersQuery) *AdminUsersQuery {
	if p.NextCursor == nil {
		return nil
	}
	q.Cursor = *p.NextCursor
	return &q
}

// AdminUsers returns a page of every user of the platform.
func (c *Client) AdminUsers(ctx context.Context, q AdminUsersQuery) (*AdminUserPage, error) {
	v := pageValues(q.Limit, q.Cursor)
	if q.Email != "" {
		v.Set("email", q.Email)
	}
	var page AdminUserPage
	err := c.do(ctx, http.MethodGet, withQuery("/v1/admin/users", v), nil, &page)
	return &page, err
}

// SetTeamBYOC lets a team run on its own hosts only (byoc true), or on the platform's
// again; audited.
func (c *Client) SetTeamBYOC(ctx context.Context, teamID string, byoc bool) error {
	return c.do(ctx, http.MethodPut, "/v1/admin/teams/"+url.PathEscape(teamID)+"/byoc", map[string]bool{"byoc": byoc}, nil)
}

// AdminTemplate is a template: the platform's (TeamID nil), which every team may use,
// or a team's snapshot. A base template has no shape of its own (nil BaseTemplate,
// VCPUs, MemoryMB, DiskMB); Hosts are the hosts recorded as holding its files.
type AdminTemplate struct {
	Name         string    `json:"name"`
	TeamID       *string   `json:"team_id"`
	Kind         string    `json:"kind"` // base or snapshot
	BaseTemplate *string   `json:"base_template"`
	VCPUs        *int      `json:"vcpus"`
	MemoryMB     *int      `json:"memory_mb"`
	DiskMB       *int      `json:"disk_mb"`
	SizeBytes    int64     `json:"size_bytes"`
	CreatedAt    time.Time `json:"created_at"`
	Hosts        []string  `json:"hosts"`
}

// AdminTemplates lists a team's templates by name, or the platform's when teamID is "".
func (c *Client) AdminTemplates(ctx context.Context, teamID string) ([]AdminTemplate, error) {
	var out struct {
		Templates []AdminTemplate `json:"templates"`
	}
	err := c.do(ctx, http.MethodGet, withQuery("/v1/admin/templates", teamValues(teamID)), nil, &out)
	return out.Templates, err
}

// AdminTemplate returns one template of a team, or of the platform when teamID is "".
func (c *Client) AdminTemplate(ctx context.Context, name, teamID string) (*AdminTemplate, error) {
	var t AdminTemplate
	err := c.do(ctx, http.MethodGet, withQuery("/v1/admin/templates/"+url.PathEscape(name), teamValues(teamID)), nil, &t)
	return &t, err
}

// DeleteAdminTemplate removes a template of a team, or of the platform when teamID is
// "": its files from every host, then its record. Sandboxes made from it run on.
func (c *Client) DeleteAdminTemplate(ctx context.Context, name, teamID string) error {
	return c.do(ctx, http.MethodDelete, withQuery("/v1/admin/templates/"+url.PathEscape(name), teamValues(teamID)), nil, nil)
}

// AdminSandbox is a sandbox of any team, with its team.
type AdminSandbox struct {
	Sandbox
	TeamID string `json:"team_id"`
}

// AdminSandboxesQuery asks for a page of every team's sandboxes: States as
// ListSandboxes takes them (none: the live ones; "all": every one), of one team and on
// one host when TeamID and HostID are set.
type AdminSandboxesQuery struct {
	States         []string
	TeamID, HostID string
	Limit          int
	Cursor         string
}

// AdminSandboxPage is a page of sandboxes, newest first.
type AdminSandboxPage struct {
	Sandboxes  []AdminSandbox `json:"sandboxes"`
	NextCursor *string        `json:"next_cursor"`
}

// Next is the query for the page after p, or nil when p is the last.
func (p *AdminSandboxPage) Next(q AdminSandboxesQuery) *AdminSandboxesQuery {
	if p.NextCursor == nil {
		return nil
	}
	q.Cursor = *p.NextCursor
	return &q
}

// AdminSandboxes returns a page of every team's sandboxes.
func (c *Client) AdminSandboxes(ctx context.Context, q AdminSandboxesQuery) (*AdminSandboxPage, error) {
	v := pageValues(q.Limit, q.Cursor)
	if len(q.States) > 0 {
		v.Set("state", strings.Join(q.States, ","))
	}
	for name, s := range map[string]string{"team_id": q.TeamID, "host_id": q.HostID} {
		if s != "" {
			v.Set(name, s)
		}
	}
	var page AdminSandboxPage
	err := c.do(ctx, http.MethodGet, withQuery("/v1/admin/sandboxes", v), nil, &page)
	return &page, err
}

// pageValues are a listing's limit (0: the server's default) and cursor ("": the
// first page).
func pageValues(limit int, cursor string) url.Values {
	v := url.Values{}
	if limit != 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	if cursor != "" {
		v.Set("cursor", cursor)
	}
	return v
}

// teamValues address a team's template with team_id; none: the platform's.
func teamValues(teamID string) url.Values {
	v := url.Values{}
	if teamID != "" {
		v.Set("team_id", teamID)
	}
	return v
}

func withQuery(path string, v url.Values) string {
	if len(v) == 0 {
		return path
	}
	return path + "?" + v.Encode()
}
