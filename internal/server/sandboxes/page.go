package sandboxes

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/internal/lifecycle"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// MaxPage bounds one page of PageSandboxes.
const MaxPage = 100

// PageQuery selects a page of a team's started sandboxes in order of start (E2B's
// listing, which pages with a cursor where ListSandboxes returns one list).
type PageQuery struct {
	PageFilter
	Ascending bool     // oldest first; default newest first
	After     *PageKey // the previous page's Next
	Limit     int      // 1..MaxPage
}

// PageFilter is which of a team's started sandboxes a listing covers.
type PageFilter struct {
	States       []lifecycle.State // at least one
	Metadata     map[string]string // every pair must match
	StartedAfter *time.Time        // started at or after
	Template     string            // "" = any
}

// PageKey is where a page ends: the last sandbox's start and id.
type PageKey struct {
	StartedAt time.Time
	ID        string
}

// Page is one page; Next is set when more sandboxes follow.
type Page struct {
	Sandboxes []*Sandbox
	Next      *PageKey
}

// filterParams is f as the page and count queries take it.
func filterParams(p *core.Principal, f PageFilter) (db.CountPageSandboxesParams, error) {
	if len(f.States) == 0 {
		return db.CountPageSandboxesParams{}, fmt.Errorf("%w: no state to list", core.ErrInvalid)
	}
	teamID, err := core.ParseUUID(p.TeamID)
	if err != nil {
		return db.CountPageSandboxesParams{}, err
	}
	meta, err := json.Marshal(orEmpty(f.Metadata))
	if err != nil {
		return db.CountPageSandboxesParams{}, fmt.Errorf("metadata: %w", err)
	}
	statuses := make([]string, len(f.States))
	for i, st := range f.States {
		statuses[i] = string(st)
	}
	var tmpl *string
	if f.Template != "" {
		tmpl = &f.Template
	}
	return db.CountPageSandboxesParams{TeamID: teamID, Statuses: statuses, Metadata: meta, StartedAfter: f.StartedAfter, Template: tmpl}, nil
}

// PageSandboxes returns one page of the principal's team's sandboxes.
func (s *Service) PageSandboxes(ctx context.Context, p *core.Principal, q PageQuery) (*Page, error) {
	if q.Limit < 1 || q.Limit > MaxPage {
		return nil, fmt.Errorf("%w: limit %d out of range 1..%d", core.ErrInvalid, q.Limit, MaxPage)
	}
	f, err := filterParams(p, q.PageFilter)
	if err != nil {
		return nil, err
	}
	params := db.PageSandboxesAscParams{TeamID: f.TeamID, Statuses: f.Statuses, Metadata: f.Metadata, StartedAfter: f.StartedAfter,
		Template: f.Template, MaxRows: int32(q.Limit + 1)}
	if q.After != nil {
		params.CursorAt, params.CursorID = &q.After.StartedAt, q.After.ID
	}
	var rows []db.Sandbox
	if q.Ascending {
		rows, err = s.q.PageSandboxesAsc(ctx, params)
	} else {
		rows, err = s.q.PageSandboxesDesc(ctx, db.PageSandboxesDescParams(params))
	}
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	page := &Page{Sandboxes: make([]*Sandbox, 0, min(len(rows), q.Limit))}
	for i, r := range rows {
		if i == q.Limit {
			last := rows[i-1]
			page.Next = &PageKey{StartedAt: *last.StartedAt, ID: last.ID}
			break
		}
		page.Sandboxes = append(page.Sandboxes, toSandbox(r))
	}
	return page, nil
}

// CountSandboxes is how many sandboxes PageSandboxes lists for f over all its pages.
func (s *Service) CountSandboxes(ctx context.Context, p *core.Principal, f PageFilter) (int, error) {
	params, err := filterParams(p, f)
	if err != nil {
		return 0, err
	}
	n, err := s.q.CountPageSandboxes(ctx, params)
	if err != nil {
		return 0, fmt.Errorf("count sandboxes: %w", err)
	}
	return int(n), nil
}
