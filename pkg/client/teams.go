package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Team is one of the signed-in user's teams. Role is the user's role in it (owner,
// admin or member); Members counts its members.
type Team struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Slug      string    `json:"slug"`
	Role      string    `json:"role"`
	IsDefault bool      `json:"is_default"` // the team the user's login is for
	IsBYOC    bool      `json:"is_byoc"`    // its owners and admins may add hosts of their own
	CreatedAt time.Time `json:"created_at"`
	Members   int       `json:"members"`
}

// Member is a user's membership of a team.
type Member struct {
	UserID   string    `json:"user_id"`
	Email    string    `json:"email"`
	Name     string    `json:"name"`
	Role     string    `json:"role"`
	JoinedAt time.Time `json:"joined_at"`
}

// UserMatch is a user found by SearchUsers: enough to add them to a team.
type UserMatch struct {
	ID    string `json:"id"`
	Email string `json:"email"`
	Name  string `json:"name"`
}

// The team and member routes take a user's token only (WithToken); an API key, which
// belongs to one team, is refused with a 403 *Error. A team the user is not a member
// of is a 404 *Error, as one that does not exist.

// Teams lists the user's teams, the default one first.
func (c *Client) Teams(ctx context.Context) ([]Team, error) {
	var out struct {
		Teams []Team `json:"teams"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/teams", nil, &out); err != nil {
		return nil, err
	}
	return out.Teams, nil
}

// CreateTeam makes a team with the user as its owner. The token still acts for the
// team it did; SwitchTeam gives one for the new team.
func (c *Client) CreateTeam(ctx context.Context, name string) (*Team, error) {
	return c.team(ctx, http.MethodPost, "/v1/teams", map[string]string{"name": name})
}

// Team reads one of the user's teams.
func (c *Client) Team(ctx context.Context, id string) (*Team, error) {
	p, err := teamPath(id, "")
	if err != nil {
		return nil, err
	}
	return c.team(ctx, http.MethodGet, p, nil)
}

// RenameTeam renames a team (its owners and admins); its id and slug stay.
func (c *Client) RenameTeam(ctx context.Context, id, name string) (*Team, error) {
	p, err := teamPath(id, "")
	if err != nil {
		return nil, err
	}
	return c.team(ctx, http.MethodPatch, p, map[string]string{"name": name})
}

// DeleteTeam deletes a team (its owners): its sandboxes and snapshots are destroyed
// and its API keys revoked. Tokens acting for it stop working, this one too if it did.
func (c *Client) DeleteTeam(ctx context.Context, id string) error {
	p, err := teamPath(id, "")
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, p, nil, nil)
}

// Members lists a team's members: owners first, then admins, then members, each by
// when they joined.
func (c *Client) Members(ctx context.Context, teamID string) ([]Member, error) {
	p, err := teamPath(teamID, "/members")
	if err != nil {
		return nil, err
	}
	var out struct {
		Members []Member `json:"members"`
	}
	if err := c.do(ctx, http.MethodGet, p, nil, &out); err != nil {
		return nil, err
	}
	return out.Members, nil
}

// AddMember adds the user with this email to a team with role (owner, admin or
// member; "" is the server's default, member).
func (c *Client) AddMember(ctx context.Context, teamID, email, role string) (*Member, error) {
	p, err := teamPath(teamID, "/members")
	if err != nil {
		return nil, err
	}
	body := map[string]string{"email": email}
	if role != "" {
		body["role"] = role
	}
	return c.member(ctx, http.MethodPost, p, body)
}

// SetMemberRole changes a member's role in a team.
func (c *Client) SetMemberRole(ctx context.Context, teamID, userID, role string) (*Member, error) {
	p, err := memberPath(teamID, userID)
	if err != nil {
		return nil, err
	}
	return c.member(ctx, http.MethodPatch, p, map[string]string{"role": role})
}

// RemoveMember removes a user from a team; their tokens acting for it stop working.
func (c *Client) RemoveMember(ctx context.Context, teamID, userID string) error {
	p, err := memberPath(teamID, userID)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, p, nil, nil)
}

// LeaveTeam takes the user out of a team. A token acting for that team, this one too,
// stops working: take one for another team (SwitchTeam) first.
func (c *Client) LeaveTeam(ctx context.Context, teamID string) error {
	p, err := teamPath(teamID, "/leave")
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, p, nil, nil)
}

// SearchUsers finds users whose email starts with emailPrefix (at least 3
// characters; at most 10 answers), to pick one to add to a team.
func (c *Client) SearchUsers(ctx context.Context, emailPrefix string) ([]UserMatch, error) {
	var out struct {
		Users []UserMatch `json:"users"`
	}
	q := url.Values{"email": {emailPrefix}}
	if err := c.do(ctx, http.MethodGet, "/v1/users/search?"+q.Encode(), nil, &out); err != nil {
		return nil, err
	}
	return out.Users, nil
}

func (c *Client) team(ctx context.Context, method, path string, in any) (*Team, error) {
	var t Team
	if err := c.do(ctx, method, path, in, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

func (c *Client) member(ctx context.Context, method, path string, in any) (*Member, error) {
	var m Member
	if err := c.do(ctx, method, path, in, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// teamPath is /v1/teams/{id} followed by rest.
func teamPath(id, rest string) (string, error) {
	seg, err := pathSegment("team id", id)
	if err != nil {
		return "", err
	}
	return "/v1/teams/" + seg + rest, nil
}

// memberPath is /v1/teams/{id}/members/{user_id}.
func memberPath(teamID, userID string) (string, error) {
	p, err := teamPath(teamID, "/members/")
	if err != nil {
		return "", err
	}
	seg, err := pathSegment("user id", userID)
	if err != nil {
		return "", err
	}
	return p + seg, nil
}

// pathSegment escapes an id as one path segment. "", "." and ".." stay what they are
// when escaped and would name another route (the list, the parent) instead of a
// resource, so they are refused before any request.
func pathSegment(what, id string) (string, error) {
	if id == "" || id == "." || id == ".." {
		return "", fmt.Errorf("wrenn: %s %q is not an id", what, id)
	}
	return url.PathEscape(id), nil
}
