package accounts

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/internal/ident"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// Platform administrators' views of every team and user (GET /v1/admin/teams and
// /v1/admin/users): keyset pages, newest first (core/page.go). Whether the caller is
// an administrator is what the database said on this request (FromToken), so a
// demoted administrator is refused at once.

// Cursor listings' names: a cursor of one is refused by the other.
const (
	teamsListing = "teams"
	usersListing = "users"
)

// AdminTeam is a team as platform administrators see it.
type AdminTeam struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Slug      string     `json:"slug"`
	BYOC      bool       `json:"is_byoc"`
	CreatedAt time.Time  `json:"created_at"`
	DeletedAt *time.Time `json:"deleted_at"`
	Members   int        `json:"members"`
	// Sandboxes are the live ones: every one but stopped and error, as quotas count.
	Sandboxes int `json:"sandboxes"`
}

// AdminTeamQuery asks for a page of teams; Cursor is the previous page's NextCursor.
type AdminTeamQuery struct {
	Limit          int // 0: core.DefaultPageLimit
	Cursor         string
	IncludeDeleted bool
}

// AdminTeamPage is a page of teams, newest first; NextCursor is set when more follow.
type AdminTeamPage struct {
	Teams      []AdminTeam `json:"teams"`
	NextCursor *string     `json:"next_cursor"`
}

// AdminTeams is a page of every team (platform administrators).
func (s *Service) AdminTeams(ctx context.Context, p *core.Principal, q AdminTeamQuery) (*AdminTeamPage, error) {
	if err := p.RequireAdmin(); err != nil {
		return nil, err
	}
	limit, at, id, err := pageParams(teamsListing, q.Limit, q.Cursor)
	if err != nil {
		return nil, err
	}
	rows, err := s.q.AdminListTeams(ctx, db.AdminListTeamsParams{IncludeDeleted: q.IncludeDeleted, CursorAt: at, CursorID: id, MaxRows: int32(limit) + 1})
	if err != nil {
		return nil, fmt.Errorf("list teams: %w", err)
	}
	page := &AdminTeamPage{Teams: make([]AdminTeam, 0, min(len(rows), limit))}
	for i, r := range rows {
		if i == limit {
			page.NextCursor = nextCursor(teamsListing, rows[i-1].CreatedAt, rows[i-1].ID)
			break
		}
		page.Teams = append(page.Teams, AdminTeam{ID: core.UUIDString(r.ID), Name: r.Name, Slug: r.Slug, BYOC: r.IsBYOC,
			CreatedAt: r.CreatedAt, DeletedAt: r.DeletedAt, Members: int(r.Members), Sandboxes: int(r.Sandboxes)})
	}
	return page, nil
}

// AdminUser is a user as platform administrators see it.
type AdminUser struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	Admin     bool      `json:"is_admin"`
	CreatedAt time.Time `json:"created_at"`
	Teams     int       `json:"teams"` // teams not deleted they belong to
}

// AdminUserQuery asks for a page of users; Cursor is the previous page's NextCursor,
// EmailPrefix ("" for every user) matches the start of the email, case-insensitively.
type AdminUserQuery struct {
	Limit       int
	Cursor      string
	EmailPrefix string
}

// AdminUserPage is a page of users, newest first; NextCursor is set when more follow.
type AdminUserPage struct {
	Users      []AdminUser `json:"users"`
	NextCursor *string     `json:"next_cursor"`
}

// AdminUsers is a page of every user (platform administrators).
func (s *Service) AdminUsers(ctx context.Context, p *core.Principal, q AdminUserQuery) (*AdminUserPage, error) {
	if err := p.RequireAdmin(); err != nil {
		return nil, err
	}
	limit, at, id, err := pageParams(usersListing, q.Limit, q.Cursor)
	if err != nil {
		return nil, err
	}
	params := db.AdminListUsersParams{CursorAt: at, CursorID: id, MaxRows: int32(limit) + 1}
	if prefix := strings.ToLower(strings.TrimSpace(q.EmailPrefix)); prefix != "" {
		if err := ident.CheckText("email", prefix, 254); err != nil {
			return nil, fmt.Errorf("%w: %v", core.ErrInvalid, err)
		}
		pattern := likePrefix(prefix)
		params.EmailLike = &pattern
	}
	rows, err := s.q.AdminListUsers(ctx, params)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	page := &AdminUserPage{Users: make([]AdminUser, 0, min(len(rows), limit))}
	for i, r := range rows {
		if i == limit {
			page.NextCursor = nextCursor(usersListing, rows[i-1].CreatedAt, rows[i-1].ID)
			break
		}
		page.Users = append(page.Users, AdminUser{ID: core.UUIDString(r.ID), Email: r.Email, Name: r.Name, Admin: r.IsAdmin,
			CreatedAt: r.CreatedAt, Teams: int(r.Teams)})
	}
	return page, nil
}

// likeEscaper escapes LIKE's wildcards (and its escape character, '\' as the query
// declares), so that a search for "a_b" matches "a_b…" only, not "axb…".
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// likePrefix is the LIKE pattern of emails starting with prefix.
func likePrefix(prefix string) string { return likeEscaper.Replace(prefix) + "%" }

// pageParams checks a page's limit and cursor (of listing, keyed by a uuid); a nil
// time is the first page.
func pageParams(listing string, limit int, cursor string) (int, *time.Time, pgtype.UUID, error) {
	var id pgtype.UUID
	n, err := core.PageLimit(limit)
	if err != nil {
		return 0, nil, id, err
	}
	c, err := core.DecodeCursor(listing, cursor)
	if err != nil || c == nil {
		return n, nil, id, err
	}
	if err := id.Scan(c.ID); err != nil {
		return 0, nil, id, fmt.Errorf("%w: cursor %q is not one this listing gave (pass next_cursor back as it is)", core.ErrInvalid, cursor)
	}
	return n, &c.At, id, nil
}

// nextCursor is the cursor of the page after one ending with the row (at, id).
func nextCursor(listing string, at time.Time, id pgtype.UUID) *string {
	c := core.Cursor{At: at, ID: core.UUIDString(id)}.Encode(listing)
	return &c
}
