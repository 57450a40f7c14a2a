package accounts

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/internal/server/auth"
	"github.com/wrennhq/wrenn/internal/server/auth/oauth"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// Browser sessions: what the dashboard signs in with instead of a JWT (see
// auth/session.go for the secret and its CSRF token). A session is a row, so that
// signing out ends it at once; it lives auth.SessionTTL at most and ends after
// auth.SessionIdle unused. Each request through one re-checks the user's
// membership of the session's team exactly as a JWT's does (member).

// sessionTouchEvery debounces recording a session's use: a page firing requests
// writes its row once a minute, not once a request. The idle end is a day, so a
// minute's slack is nothing.
const sessionTouchEvery = time.Minute

// BrowserSession is a browser session as the API shows it: who, acting for which
// team, until when. Secret is set only when it was just made (for its cookie).
type BrowserSession struct {
	ID, Secret string
	ExpiresAt  time.Time
	UserID     string
	Email      string
	Name       string
	Admin      bool
	TeamID     string
	Role       core.Role
}

// Client is where a browser session is signed in from (kept with it, shown to
// nobody yet; decisions never rest on it).
type Client struct {
	Addr, UserAgent string
}

// SessionLogin is Login for a browser: the same throttles and checks, audited as
// user.login, and a new browser session instead of a JWT.
func (s *Service) SessionLogin(ctx context.Context, email, password string, c Client) (*BrowserSession, error) {
	p, err := s.login(ctx, email, password, c.Addr)
	if err != nil {
		return nil, err
	}
	return s.newSession(ctx, p, c, func(q *db.Queries, id string) error {
		return core.Audit(ctx, q, p, "user.login", "user", p.UserID, map[string]any{"session": id})
	})
}

// SessionSignup is Signup for a browser: the account (audited user.signup) and a
// browser session for its team.
func (s *Service) SessionSignup(ctx context.Context, email, name, password string, c Client) (*BrowserSession, error) {
	userID, teamID, err := s.signup(ctx, email, name, password, c.Addr)
	if err != nil {
		return nil, err
	}
	return s.newSession(ctx, &core.Principal{UserID: userID, TeamID: teamID, Role: core.Owner}, c, nil)
}

// OAuthSessionLogin is OAuthLogin for a browser: the same decisions and audit
// entries, and a browser session instead of a JWT.
func (s *Service) OAuthSessionLogin(ctx context.Context, provider string, id oauth.Identity, c Client) (*BrowserSession, error) {
	p, err := s.oauthLogin(ctx, provider, id)
	if err != nil {
		return nil, err
	}
	return s.newSession(ctx, p, c, nil)
}

// newSession stores a new session of p (and runs also, e.g. its audit entry, in
// the same transaction) and returns it with its secret. The user's sessions that
// can never work again are removed on the way.
func (s *Service) newSession(ctx context.Context, p *core.Principal, c Client, also func(q *db.Queries, id string) error) (*BrowserSession, error) {
	uid, err := core.ParseUUID(p.UserID)
	if err != nil {
		return nil, fmt.Errorf("new session: user id: %w", err)
	}
	tid, err := core.ParseUUID(p.TeamID)
	if err != nil {
		return nil, fmt.Errorf("new session: team id: %w", err)
	}
	secret, hash, err := auth.NewSessionSecret()
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	var row db.Session
	err = s.st.Tx(ctx, func(q *db.Queries) error {
		if _, err := q.DeleteDeadSessions(ctx, db.DeleteDeadSessionsParams{UserID: uid, Now: now, IdleSince: now.Add(-auth.SessionIdle)}); err != nil {
			return fmt.Errorf("remove dead sessions: %w", err)
		}
		row, err = q.CreateSession(ctx, db.CreateSessionParams{UserID: uid, TeamID: tid, TokenHash: hash, Now: now,
			ExpiresAt: now.Add(auth.SessionTTL), UserAgent: truncate(c.UserAgent, 512), IP: truncate(c.Addr, 64)})
		if err != nil {
			return fmt.Errorf("store session: %w", err)
		}
		if also != nil {
			return also(q, core.UUIDString(row.ID))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sign in: %w", err)
	}
	p.SessionID = core.UUIDString(row.ID)
	bs, err := s.SessionOf(ctx, p)
	if err != nil {
		return nil, err
	}
	bs.Secret, bs.ExpiresAt = secret, row.ExpiresAt
	return bs, nil
}

// truncate cuts s to at most n bytes, at a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// FromSession resolves a browser session's secret (its cookie) to a principal:
// unknown, signed-out, expired and idle sessions are unauthorized, each saying
// which. With anyTeam false the user must still be a member of the session's team
// (as FromToken); with anyTeam true (switching teams, signing out) the user alone
// is resolved, acting for the session's team without a role.
func (s *Service) FromSession(ctx context.Context, secret string, anyTeam bool) (*core.Principal, error) {
	if !auth.ValidSessionSecret(secret) {
		return nil, fmt.Errorf("%w: malformed session cookie; sign in again", core.ErrUnauthorized)
	}
	row, err := s.q.GetSessionByHash(ctx, auth.HashSessionSecret(secret))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: unknown session; sign in again", core.ErrUnauthorized)
	}
	if err != nil {
		return nil, fmt.Errorf("read session: %w", err)
	}
	now := s.now()
	switch {
	case row.RevokedAt != nil:
		return nil, fmt.Errorf("%w: this session was signed out; sign in again", core.ErrUnauthorized)
	case !now.Before(row.ExpiresAt):
		return nil, fmt.Errorf("%w: the session expired (sessions last %v); sign in again", core.ErrUnauthorized, auth.SessionTTL)
	case !now.Before(row.LastSeenAt.Add(auth.SessionIdle)):
		return nil, fmt.Errorf("%w: the session ended after %v unused; sign in again", core.ErrUnauthorized, auth.SessionIdle)
	}
	if now.Sub(row.LastSeenAt) >= sessionTouchEvery {
		if err := s.q.TouchSession(ctx, db.TouchSessionParams{ID: row.ID, Now: now}); err != nil {
			s.log.Warn("record session use", "err", err)
		}
	}
	userID, teamID := core.UUIDString(row.UserID), core.UUIDString(row.TeamID)
	p := &core.Principal{UserID: userID, TeamID: teamID}
	if !anyTeam {
		if p, err = s.member(ctx, userID, teamID, "session"); err != nil {
			return nil, err
		}
	}
	p.SessionID = core.UUIDString(row.ID)
	return p, nil
}

// SessionOf is the browser session p came with, as the API shows it (no secret).
func (s *Service) SessionOf(ctx context.Context, p *core.Principal) (*BrowserSession, error) {
	if p.SessionID == "" {
		return nil, fmt.Errorf("%w: this route takes a browser session (cookie), not a token or an API key", core.ErrForbidden)
	}
	uid, err := userUUID(p)
	if err != nil {
		return nil, err
	}
	u, err := s.q.GetUserByID(ctx, uid)
	if err != nil {
		return nil, fmt.Errorf("read user %s: %w", p.UserID, err)
	}
	role := p.Role
	if role == "" { // resolved without its team (anyTeam): the role there now, if any
		if r, err := s.role(ctx, p.UserID, p.TeamID); err == nil {
			role = r
		}
	}
	return &BrowserSession{ID: p.SessionID, UserID: p.UserID, Email: u.Email, Name: u.Name, Admin: u.IsAdmin, TeamID: p.TeamID, Role: role}, nil
}

// SessionSwitchTeam moves p's browser session to another team of its user (a team
// they are not in: not found), as SwitchTeam re-issues a token.
func (s *Service) SessionSwitchTeam(ctx context.Context, p *core.Principal, teamID string) (*BrowserSession, error) {
	role, err := s.role(ctx, p.UserID, teamID)
	if err != nil {
		return nil, err
	}
	sid, err := core.ParseUUID(p.SessionID)
	if err != nil {
		return nil, fmt.Errorf("switch team: session id: %w", err)
	}
	tid, _ := core.ParseUUID(teamID) // role has parsed it
	n, err := s.q.SetSessionTeam(ctx, db.SetSessionTeamParams{ID: sid, TeamID: tid})
	if err != nil {
		return nil, fmt.Errorf("switch team: %w", err)
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: this session was signed out; sign in again", core.ErrUnauthorized)
	}
	moved := *p
	moved.TeamID, moved.Role = teamID, role
	return s.SessionOf(ctx, &moved)
}

// SignOut revokes p's browser session (audited user.logout): its cookie stops
// working at once, on every replica.
func (s *Service) SignOut(ctx context.Context, p *core.Principal) error {
	sid, err := core.ParseUUID(p.SessionID)
	if err != nil {
		return fmt.Errorf("%w: this route takes a browser session (cookie), not a token or an API key", core.ErrForbidden)
	}
	now := s.now().UTC()
	return s.st.Tx(ctx, func(q *db.Queries) error {
		n, err := q.RevokeSession(ctx, db.RevokeSessionParams{ID: sid, Now: &now})
		if err != nil {
			return fmt.Errorf("sign out: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("%w: this session was signed out already", core.ErrUnauthorized)
		}
		return core.Audit(ctx, q, p, "user.logout", "user", p.UserID, map[string]any{"session": p.SessionID})
	})
}
