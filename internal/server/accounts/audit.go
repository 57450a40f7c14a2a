package accounts

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// Audit log pages: at most MaxAuditPage entries, DefaultAuditPage without a limit.
const (
	DefaultAuditPage = 50
	MaxAuditPage     = 200
	// maxAuditFilter bounds each filter's values (a URL's worth, not a bulk export).
	maxAuditFilter = 50
)

// ActorSystem is the actor filter for entries no user or key made (expiry, host
// registration, operators' commands).
const ActorSystem = "system"

// AuditQuery is what a page of the audit log is asked for with.
type AuditQuery struct {
	// Before and BeforeID are the last entry of the previous page (both or neither).
	Before   *time.Time
	BeforeID *int64
	Limit    int // 0: DefaultAuditPage
	// Actions and ResourceTypes are exact names (sandbox.create; sandbox); Actors are
	// user ids, API key ids or ActorSystem; Teams (platform administrators' listing
	// only) are team ids. Each filter matches any of its values; none: no filter.
	Actions, ResourceTypes, Actors, Teams []string
}

// AuditActor is who made an entry: Type is "user" (ID, Email), "api_key" (ID,
// Prefix, Name) or "system" (none of them). A user or key deleted since shows as
// system: the log forgets who an actor was, never what happened.
type AuditActor struct {
	Type   string `json:"type"`
	ID     string `json:"id,omitempty"`
	Email  string `json:"email,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	Name   string `json:"name,omitempty"`
}

// AuditEntry is one entry of the audit log.
type AuditEntry struct {
	ID           int64           `json:"id"`
	TeamID       *string         `json:"team_id"` // nil: the team was deleted since
	Action       string          `json:"action"`
	ResourceType string          `json:"resource_type"`
	ResourceID   string          `json:"resource_id"`
	Metadata     json.RawMessage `json:"metadata"`
	CreatedAt    time.Time       `json:"created_at"`
	Actor        AuditActor      `json:"actor"`
}

// AuditPage is a page of entries, newest first; NextBefore and NextBeforeID are set
// when older entries exist (pass them as Before and BeforeID).
type AuditPage struct {
	Entries      []AuditEntry `json:"audit_logs"`
	NextBefore   *time.Time   `json:"next_before,omitempty"`
	NextBeforeID *int64       `json:"next_before_id,omitempty"`
}

// ListAuditLogs is a page of the principal's team's audit log: owners and admins see
// the team's entries, members only their own. Users only (the route takes no key).
func (s *Service) ListAuditLogs(ctx context.Context, p *core.Principal, q AuditQuery) (*AuditPage, error) {
	if p.UserID == "" {
		return nil, fmt.Errorf("%w: the audit log needs a user's token", core.ErrForbidden)
	}
	if len(q.Teams) > 0 {
		return nil, fmt.Errorf("%w: team_id filters only the platform administrators' listing (/v1/admin/audit-logs)", core.ErrInvalid)
	}
	params, err := auditParams(q)
	if err != nil {
		return nil, err
	}
	if params.TeamID, err = core.ParseUUID(p.TeamID); err != nil {
		return nil, err
	}
	if !p.CanManage() {
		params.ActorUserID, _ = core.ParseUUID(p.UserID)
	}
	return s.auditPage(ctx, params)
}

// ListAllAuditLogs is a page of every team's audit log (platform administrators).
func (s *Service) ListAllAuditLogs(ctx context.Context, p *core.Principal, q AuditQuery) (*AuditPage, error) {
	if p.UserID == "" || !p.Admin {
		return nil, fmt.Errorf("%w: platform administrators only", core.ErrForbidden)
	}
	params, err := auditParams(q)
	if err != nil {
		return nil, err
	}
	if params.TeamIds, err = uuids("team_id", q.Teams); err != nil {
		return nil, err
	}
	return s.auditPage(ctx, params)
}

var auditName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// auditParams checks q and makes the query's filters (all but the team).
func auditParams(q AuditQuery) (db.ListAuditLogsParams, error) {
	params := db.ListAuditLogsParams{Actions: []string{}, ResourceTypes: []string{}, ActorIds: []pgtype.UUID{}, TeamIds: []pgtype.UUID{}}
	invalid := func(format string, a ...any) (db.ListAuditLogsParams, error) {
		return params, fmt.Errorf("%w: "+format, append([]any{core.ErrInvalid}, a...)...)
	}
	switch {
	case q.Limit < 0 || q.Limit > MaxAuditPage:
		return invalid("limit must be 1 to %d", MaxAuditPage)
	case (q.Before == nil) != (q.BeforeID == nil):
		return invalid("before and before_id go together (the last entry seen: its created_at and id)")
	case q.BeforeID != nil && *q.BeforeID < 1:
		return invalid("before_id must be a positive entry id")
	}
	limit := q.Limit
	if limit == 0 {
		limit = DefaultAuditPage
	}
	params.MaxRows = int32(limit) + 1 // one more tells whether another page exists
	params.Before, params.BeforeID = q.Before, q.BeforeID
	for _, f := range []struct {
		name string
		in   []string
		out  *[]string
	}{{"action", q.Actions, &params.Actions}, {"resource_type", q.ResourceTypes, &params.ResourceTypes}} {
		if len(f.in) > maxAuditFilter {
			return invalid("at most %d values of %s", maxAuditFilter, f.name)
		}
		for _, v := range f.in {
			if !auditName.MatchString(v) {
				return invalid("%s %q is not a name like sandbox.create (lowercase letters, digits, '_', '.', '-')", f.name, v)
			}
			*f.out = append(*f.out, v)
		}
	}
	var ids []string
	for _, a := range q.Actors {
		if a == ActorSystem {
			params.ActorSystem = true
		} else {
			ids = append(ids, a)
		}
	}
	var err error
	if params.ActorIds, err = uuids("actor", ids); err != nil {
		return params, fmt.Errorf("%w (or %q)", err, ActorSystem)
	}
	return params, nil
}

// uuids parses a filter's ids; a malformed one is a 400 (a filter, not a resource).
func uuids(name string, in []string) ([]pgtype.UUID, error) {
	if len(in) > maxAuditFilter {
		return nil, fmt.Errorf("%w: at most %d values of %s", core.ErrInvalid, maxAuditFilter, name)
	}
	out := make([]pgtype.UUID, 0, len(in))
	for _, v := range in {
		var u pgtype.UUID
		if err := u.Scan(v); err != nil {
			return nil, fmt.Errorf("%w: %s %q is not an id", core.ErrInvalid, name, v)
		}
		out = append(out, u)
	}
	return out, nil
}

func (s *Service) auditPage(ctx context.Context, params db.ListAuditLogsParams) (*AuditPage, error) {
	rows, err := s.q.ListAuditLogs(ctx, params)
	if err != nil {
		return nil, fmt.Errorf("list audit logs: %w", err)
	}
	page := &AuditPage{Entries: make([]AuditEntry, 0, len(rows))}
	if len(rows) == int(params.MaxRows) {
		rows = rows[:len(rows)-1]
		last := rows[len(rows)-1]
		at, id := last.CreatedAt.UTC(), last.ID
		page.NextBefore, page.NextBeforeID = &at, &id
	}
	for _, r := range rows {
		e := AuditEntry{ID: r.ID, Action: r.Action, ResourceType: r.ResourceType, ResourceID: r.ResourceID,
			Metadata: json.RawMessage(r.Metadata), CreatedAt: r.CreatedAt.UTC(), Actor: AuditActor{Type: ActorSystem}}
		if r.TeamID.Valid {
			id := core.UUIDString(r.TeamID)
			e.TeamID = &id
		}
		switch {
		case r.ActorAPIKeyID.Valid:
			e.Actor = AuditActor{Type: "api_key", ID: core.UUIDString(r.ActorAPIKeyID), Prefix: deref(r.ActorKeyPrefix), Name: deref(r.ActorKeyName)}
		case r.ActorUserID.Valid:
			e.Actor = AuditActor{Type: "user", ID: core.UUIDString(r.ActorUserID), Email: deref(r.ActorEmail)}
		}
		page.Entries = append(page.Entries, e)
	}
	return page, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
