package core

import (
	"encoding/base64"
	"fmt"
	"strings"
	"time"
)

// Platform administrators' listings (every team, user or sandbox) are keyset pages,
// newest first by (created_at, id): a cursor names the last row of the page before, and
// the next page starts strictly after it. A row inserted while someone pages has a
// later created_at than the first page's start, so it lands before that page, never
// between two pages: paging repeats and skips nothing. created_at alone ties within a
// transaction, so id breaks ties.

// Page sizes of those listings: DefaultPageLimit without a limit, at most MaxPageLimit.
const (
	DefaultPageLimit = 50
	MaxPageLimit     = 200
)

// PageLimit is the rows a page asked for with limit holds: 0 is the default.
func PageLimit(limit int) (int, error) {
	switch {
	case limit == 0:
		return DefaultPageLimit, nil
	case limit < 0 || limit > MaxPageLimit:
		return 0, fmt.Errorf("%w: limit must be 1 to %d, not %d", ErrInvalid, MaxPageLimit, limit)
	}
	return limit, nil
}

// Cursor is where a page ended: its last row's created_at and id.
type Cursor struct {
	At time.Time
	ID string
}

// Encode is the cursor as the API hands it out for one listing (teams, users,
// sandboxes): opaque base64url, so clients pass it back rather than build one. The
// listing's name is inside, so a cursor of one listing is refused by another.
func (c Cursor) Encode(listing string) string {
	raw := listing + "|" + c.At.UTC().Format(time.RFC3339Nano) + "|" + c.ID
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// DecodeCursor reads a cursor that Encode made for listing; "" is none (the first
// page). Anything else is ErrInvalid: the caller's id checks come on top (the id is
// only known to be text here).
func DecodeCursor(listing, s string) (*Cursor, error) {
	if s == "" {
		return nil, nil
	}
	bad := fmt.Errorf("%w: cursor %q is not one this listing gave (pass next_cursor back as it is)", ErrInvalid, s)
	if len(s) > 256 {
		return nil, bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, bad
	}
	parts := strings.Split(string(raw), "|")
	if len(parts) != 3 || parts[0] != listing || parts[2] == "" {
		return nil, bad
	}
	at, err := time.Parse(time.RFC3339Nano, parts[1])
	if err != nil {
		return nil, bad
	}
	return &Cursor{At: at, ID: parts[2]}, nil
}
