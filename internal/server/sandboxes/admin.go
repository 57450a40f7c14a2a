package sandboxes

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/internal/ident"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// Platform administrators' views of every team's sandboxes and of templates: the
// platform's (templates with no team) and each team's snapshots, which they may
// delete. Whether the caller is an administrator is what the database said on this
// request (accounts.FromToken).

// sandboxesListing names the admin sandbox listing's cursors (core/page.go).
const sandboxesListing = "sandboxes"

// AdminSandbox is a sandbox as GET /v1/sandboxes/{id} shows it, with its team.
type AdminSandbox struct {
	*Sandbox
	TeamID string `json:"team_id"`
}

// AdminSandboxQuery asks for a page of every team's sandboxes: States as
// ListFilter's (none: the live ones; "all": every one), of one team and on one host
// when TeamID and HostID are set. Cursor is the previous page's NextCursor.
type AdminSandboxQuery struct {
	States         []string
	TeamID, HostID string
	Limit          int // 0: core.DefaultPageLimit
	Cursor         string
}

// AdminSandboxPage is a page of sandboxes, newest first; NextCursor is set when more
// follow.
type AdminSandboxPage struct {
	Sandboxes  []AdminSandbox `json:"sandboxes"`
	NextCursor *string        `json:"next_cursor"`
}

// AdminSandboxes is a page of every team's sandboxes (platform administrators).
func (s *Service) AdminSandboxes(ctx context.Context, p *core.Principal, q AdminSandboxQuery) (*AdminSandboxPage, error) {
	if err := p.RequireAdmin(); err != nil {
		return nil, err
	}
	f, err := ListFilter{States: q.States}.normalise()
	if err != nil {
		return nil, err
	}
	limit, err := core.PageLimit(q.Limit)
	if err != nil {
		return nil, err
	}
	params := db.AdminListSandboxesParams{Statuses: f.States, MaxRows: int32(limit) + 1}
	if params.Statuses == nil {
		params.Statuses = []string{} // "all": no filter
	}
	if params.TeamID, err = filterID("team_id", q.TeamID); err != nil {
		return nil, err
	}
	if params.HostID, err = filterID("host_id", q.HostID); err != nil {
		return nil, err
	}
	c, err := core.DecodeCursor(sandboxesListing, q.Cursor)
	if err != nil {
		return nil, err
	}
	if c != nil {
		if !ident.ValidSandboxID(c.ID) {
			return nil, fmt.Errorf("%w: cursor %q is not one this listing gave (pass next_cursor back as it is)", core.ErrInvalid, q.Cursor)
		}
		params.CursorAt, params.CursorID = &c.At, c.ID
	}
	rows, err := s.q.AdminListSandboxes(ctx, params)
	if err != nil {
		return nil, fmt.Errorf("list every team's sandboxes: %w", err)
	}
	page := &AdminSandboxPage{Sandboxes: make([]AdminSandbox, 0, min(len(rows), limit))}
	for i, r := range rows {
		if i == limit {
			next := core.Cursor{At: rows[i-1].CreatedAt, ID: rows[i-1].ID}.Encode(sandboxesListing)
			page.NextCursor = &next
			break
		}
		page.Sandboxes = append(page.Sandboxes, AdminSandbox{Sandbox: toSandbox(r), TeamID: core.UUIDString(r.TeamID)})
	}
	return page, nil
}

// filterID parses a listing's filter by id; "" is no filter. A malformed one is a
// 400, as a filter names no resource (unlike an id in a path).
func filterID(name, s string) (pgtype.UUID, error) {
	var u pgtype.UUID
	if s == "" {
		return u, nil
	}
	if err := u.Scan(s); err != nil {
		return u, fmt.Errorf("%w: %s %q is not an id", core.ErrInvalid, name, s)
	}
	return u, nil
}

// AdminTemplate is a template as platform administrators see it: the platform's
// (TeamID nil) or a team's snapshot. A base template has no shape of its own (nil
// BaseTemplate, VCPUs, MemoryMB, DiskMB). Hosts are the hosts recorded as holding its
// files (a base template's are part of every host's install, recorded on none).
type AdminTemplate struct {
	Name         string    `json:"name"`
	TeamID       *string   `json:"team_id"`
	Kind         string    `json:"kind"`
	BaseTemplate *string   `json:"base_template"`
	VCPUs        *int      `json:"vcpus"`
	MemoryMB     *int      `json:"memory_mb"`
	DiskMB       *int      `json:"disk_mb"`
	SizeBytes    int64     `json:"size_bytes"`
	CreatedAt    time.Time `json:"created_at"`
	Hosts        []string  `json:"hosts"`
}

func toAdminTemplate(t db.Template, hosts []pgtype.UUID) AdminTemplate {
	out := AdminTemplate{Name: t.Name, Kind: t.Kind, BaseTemplate: t.BaseTemplate, VCPUs: intOf(t.Vcpus), MemoryMB: intOf(t.MemoryMB),
		DiskMB: intOf(t.DiskMB), SizeBytes: t.SizeBytes, CreatedAt: t.CreatedAt, Hosts: make([]string, len(hosts))}
	if t.TeamID.Valid {
		id := core.UUIDString(t.TeamID)
		out.TeamID = &id
	}
	for i, h := range hosts {
		out.Hosts[i] = core.UUIDString(h)
	}
	return out
}

func intOf(v *int32) *int {
	if v == nil {
		return nil
	}
	n := int(*v)
	return &n
}

// AdminTemplates lists one owner's templates by name: team teamID's, or the
// platform's when teamID is "" (platform administrators). A malformed teamID is a
// 400, as a filter; a team without templates has none.
func (s *Service) AdminTemplates(ctx context.Context, p *core.Principal, teamID string) ([]AdminTemplate, error) {
	if err := p.RequireAdmin(); err != nil {
		return nil, err
	}
	owner, err := filterID("team_id", teamID)
	if err != nil {
		return nil, err
	}
	rows, err := s.q.AdminListTemplates(ctx, owner)
	if err != nil {
		return nil, fmt.Errorf("list templates: %w", err)
	}
	out := make([]AdminTemplate, len(rows))
	for i, r := range rows {
		out[i] = toAdminTemplate(r.Template, r.Hosts)
	}
	return out, nil
}

// templateKey is the owner and name of one template as a get or delete addresses
// it; a malformed team id or name is no such template (404).
func templateKey(name, teamID string) (pgtype.UUID, error) {
	var owner pgtype.UUID
	if teamID != "" {
		var err error
		if owner, err = core.ParseUUID(teamID); err != nil {
			return owner, err
		}
	}
	if ident.CheckTemplate(name) != nil {
		return owner, noTemplate(name, teamID)
	}
	return owner, nil
}

func noTemplate(name, teamID string) error {
	if teamID == "" {
		return fmt.Errorf("%w: the platform has no template %q (a team's snapshot is addressed with team_id)", core.ErrNotFound, name)
	}
	return fmt.Errorf("%w: team %s has no template %q", core.ErrNotFound, teamID, name)
}

// AdminTemplate returns one template: team teamID's, or the platform's when teamID is
// "" (platform administrators).
func (s *Service) AdminTemplate(ctx context.Context, p *core.Principal, name, teamID string) (*AdminTemplate, error) {
	if err := p.RequireAdmin(); err != nil {
		return nil, err
	}
	owner, err := templateKey(name, teamID)
	if err != nil {
		return nil, err
	}
	r, err := s.q.AdminGetTemplate(ctx, db.AdminGetTemplateParams{TeamID: owner, Name: name})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, noTemplate(name, teamID)
	}
	if err != nil {
		return nil, fmt.Errorf("get template %s: %w", name, err)
	}
	t := toAdminTemplate(r.Template, r.Hosts)
	return &t, nil
}

// DeleteAdminTemplate removes a template, the platform's (teamID "") or a team's
// snapshot, as a team's snapshot delete does (removeTemplate): its files from every
// host holding them, then its record; a host that cannot fails the delete and the
// template stays. Sandboxes created from it run on (they have their own disks); the
// audit entry (template.delete, the administrator as actor) counts them.
func (s *Service) DeleteAdminTemplate(ctx context.Context, p *core.Principal, name, teamID string) error {
	if err := p.RequireAdmin(); err != nil {
		return err
	}
	owner, err := templateKey(name, teamID)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, deleteSnapshotTimeout)
	defer cancel()
	var live int32
	var removed []pgtype.UUID
	err = s.st.Tx(ctx, func(q *db.Queries) error {
		cur, err := q.LockTemplate(ctx, db.LockTemplateParams{TeamID: owner, Name: name})
		if errors.Is(err, pgx.ErrNoRows) {
			return noTemplate(name, teamID)
		}
		if err != nil {
			return fmt.Errorf("delete template %s: %w", name, err)
		}
		if live, err = q.CountLiveSandboxesOfTemplate(ctx, db.CountLiveSandboxesOfTemplateParams{Name: name, TeamID: owner}); err != nil {
			return fmt.Errorf("delete template %s: count its sandboxes: %w", name, err)
		}
		if removed, err = s.removeTemplate(ctx, q, cur); err != nil {
			return fmt.Errorf("delete template %s: %w", name, err)
		}
		hosts := make([]string, len(removed))
		for i, h := range removed {
			hosts[i] = core.UUIDString(h)
		}
		var team any // JSON null: the platform's
		actor := p
		if teamID != "" {
			// A team's snapshot: the entry is in that team's log, so its owners see it.
			team, actor = teamID, p.In(teamID)
		}
		return core.Audit(ctx, q, actor, "template.delete", "template", name, map[string]any{
			"team_id": team, "kind": cur.Kind, "hosts": hosts, "live_sandboxes": live,
		})
	})
	if err != nil {
		return err
	}
	s.log.Info("template deleted by a platform administrator", "template", name, "team", teamID, "by", p.UserID, "hosts", len(removed), "live_sandboxes", live)
	return nil
}
