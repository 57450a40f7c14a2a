// Package core is what the control plane's services (accounts, hosts, sandboxes)
// share and nothing else: who a request acts as (Principal, resolved from the
// database by accounts), the errors the REST layer maps to HTTP statuses, uuid
// helpers, and access to PostgreSQL and Redis (Store) with the audit log's writer,
// which every change appends to inside its own transaction.
//
// It stays small on purpose: a feature goes into the service it belongs to; only what
// two or more services need to agree on lands here.
package core

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/jackc/pgx/v5/pgtype"
)

// Errors the REST layer maps to HTTP statuses; services wrap them with what was being
// done and a message a user can act on.
var (
	ErrInvalid      = errors.New("invalid request")   // 400
	ErrUnauthorized = errors.New("unauthorized")      // 401
	ErrForbidden    = errors.New("forbidden")         // 403
	ErrNotFound     = errors.New("not found")         // 404
	ErrConflict     = errors.New("conflict")          // 409
	ErrTooMany      = errors.New("too many requests") // 429
	// ErrQuota: the team holds what its quota allows (quota.go); 429 like E2B's
	// concurrent-sandbox limit, with a code of its own, as waiting alone does not help.
	ErrQuota       = errors.New("team quota exceeded") // 429
	ErrUnavailable = errors.New("unavailable")         // 503
	// ErrNoSpace: the sandbox's disk is full (envd's 507 Insufficient Storage).
	ErrNoSpace = errors.New("insufficient storage") // 507
	// ErrNotImplemented: the sandbox's host cannot do this at all (its VM driver lacks
	// the capability, as a driver without snapshots cannot pause); unlike a conflict,
	// no change of state or wait makes it possible.
	ErrNotImplemented = errors.New("not implemented") // 501
	// ErrUnrecorded: a host did what was asked, but the control plane could not record
	// it (its database was out of reach); the host monitor records it once it can, so
	// the request must not be repeated — unlike a 503, which did nothing.
	ErrUnrecorded = errors.New("done, not yet recorded") // 500
)

// errorClasses map the errors above to HTTP statuses and /v1's error codes.
var errorClasses = []struct {
	err    error
	status int
	code   string
}{
	{ErrInvalid, http.StatusBadRequest, "invalid_request"},
	{ErrUnauthorized, http.StatusUnauthorized, "unauthorized"},
	{ErrForbidden, http.StatusForbidden, "forbidden"},
	{ErrNotFound, http.StatusNotFound, "not_found"},
	{ErrConflict, http.StatusConflict, "conflict"},
	{ErrTooMany, http.StatusTooManyRequests, "too_many_requests"},
	{ErrQuota, http.StatusTooManyRequests, "quota_exceeded"},
	{ErrUnavailable, http.StatusServiceUnavailable, "unavailable"},
	{ErrNoSpace, http.StatusInsufficientStorage, "insufficient_storage"},
	{ErrNotImplemented, http.StatusNotImplemented, "not_implemented"},
	{ErrUnrecorded, http.StatusInternalServerError, "unrecorded"},
}

// Classify is the HTTP status and /v1 error code of a service error; ok is false
// for an error that is none of the above (the caller's 500).
func Classify(err error) (status int, code string, ok bool) {
	for _, c := range errorClasses {
		if errors.Is(err, c.err) {
			return c.status, c.code, true
		}
	}
	return 0, "", false
}

// Role of a user in a team.
type Role string

// Roles, from most to least privileged.
const (
	Owner  Role = "owner"
	Admin  Role = "admin"
	Member Role = "member"
)

// Principal is who a request acts as, resolved from the database.
type Principal struct {
	UserID   string // "" for an API key
	TeamID   string
	Role     Role
	APIKeyID string // "" for a user token
	// SessionID is the browser session (cookie) the request came with; "" for a
	// token or an API key.
	SessionID string
	// TeamBYOC: the team's sandboxes run on its own hosts only.
	TeamBYOC bool
	// Admin: a platform administrator (manages platform hosts); never an API key.
	Admin bool
}

// In is the principal acting on team teamID, whichever team its credential is for:
// the audit entries of a change to that team belong in that team's log.
func (p *Principal) In(teamID string) *Principal {
	a := *p
	a.TeamID = teamID
	return &a
}

// CanManage reports whether the principal may manage the team (keys, members, hosts).
func (p *Principal) CanManage() bool { return p.Role == Owner || p.Role == Admin }

// RequireAdmin refuses anyone but a platform administrator: a user (never an API key)
// whose account the database marked so on this request.
func (p *Principal) RequireAdmin() error {
	if p == nil || p.UserID == "" || !p.Admin {
		return fmt.Errorf("%w: platform administrators only", ErrForbidden)
	}
	return nil
}

// UUIDString formats a database uuid; NULL is "".
func UUIDString(u pgtype.UUID) string {
	if !u.Valid {
		return ""
	}
	b := u.Bytes
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// ParseUUID parses an id from a request; a malformed one is ErrNotFound, since no
// such thing exists (and a 400 would only tell a prober the format).
func ParseUUID(s string) (pgtype.UUID, error) {
	var u pgtype.UUID
	if err := u.Scan(s); err != nil {
		return u, fmt.Errorf("%w: %q is not an id", ErrNotFound, s)
	}
	return u, nil
}
