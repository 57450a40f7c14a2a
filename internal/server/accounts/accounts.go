// Package accounts is who uses the control plane: users, sign-up and login, teams
// and roles (membership, BYOC, quota overrides), team API keys, and resolving a request's credentials
// (a user's JWT or a team's API key) into a core.Principal — every decision about who
// may do what is made here from the database, never from a token's claims alone.
//
// What lands here next: team management (invites, members, role changes), OAuth
// login (GitHub first), reading the audit log, and the dashboard's account views.
// Audit entries themselves are written by every service through core.Audit, in the
// transaction of the change.
package accounts

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/internal/ident"
	"github.com/wrennhq/wrenn/internal/server/auth"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// Service holds users, teams and API keys.
type Service struct {
	st     *core.Store
	q      *db.Queries
	tokens *auth.Tokens
	quota  core.Quota
	log    *slog.Logger
	now    func() time.Time
	// keyUses: when this replica last saw each API key (debounces the Redis check).
	keyUses sync.Map
	// hashSlots bounds concurrent password hashing; hashWait is how long a request
	// waits for a slot (see hashing.go).
	hashSlots chan struct{}
	hashWait  time.Duration
}

// Config is what the accounts service runs on.
type Config struct {
	Store  *core.Store
	Tokens *auth.Tokens // signs and verifies users' JWTs
	// Quota is every team's default quota (WRENN_QUOTA_*); the zero Quota limits nothing.
	Quota core.Quota
	Log   *slog.Logger
}

// New returns the accounts service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Tokens == nil {
		return nil, errors.New("accounts: Store and Tokens are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Service{st: cfg.Store, q: cfg.Store.Q, tokens: cfg.Tokens, quota: cfg.Quota, log: cfg.Log, now: time.Now,
		hashSlots: make(chan struct{}, runtime.GOMAXPROCS(0)), hashWait: defaultHashWait}, nil
}

// Session is what signup, login and switch-team return.
type Session struct {
	Token     string
	ExpiresAt time.Time
	UserID    string
	TeamID    string
	Role      core.Role
}

func normaliseEmail(email string) (string, error) {
	email = strings.ToLower(strings.TrimSpace(email))
	if err := ident.CheckText("email", email, 254); err != nil {
		return "", fmt.Errorf("%w: %v", core.ErrInvalid, err)
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != email || len(email) > 254 {
		return "", fmt.Errorf("%w: %q is not an email address", core.ErrInvalid, email)
	}
	return email, nil
}

func newSlug() (string, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// Signup creates a user with a default team they own, and logs them in. client is the
// caller's address, which the sign-up throttle counts by (see throttle.go).
func (s *Service) Signup(ctx context.Context, email, name, password, client string) (*Session, error) {
	email, err := normaliseEmail(email)
	if err != nil {
		return nil, err
	}
	name = strings.TrimSpace(name)
	if err := ident.CheckText("name", name, 100); err != nil {
		return nil, fmt.Errorf("%w: %v", core.ErrInvalid, err)
	}
	perAddress := signupPerAddress.of(client)
	if err := s.take(ctx, perAddress); err != nil {
		return nil, err
	}
	var hash string
	var hashErr error
	if err := s.hashing(ctx, func() { hash, hashErr = auth.HashPassword(password) }); err != nil {
		s.giveBack(ctx, perAddress)
		return nil, err
	}
	if hashErr != nil {
		return nil, fmt.Errorf("%w: %v", core.ErrInvalid, hashErr)
	}
	slug, err := newSlug()
	if err != nil {
		return nil, err
	}
	var user db.User
	var team db.Team
	err = s.st.Tx(ctx, func(q *db.Queries) error {
		var err error
		if user, err = q.CreateUser(ctx, db.CreateUserParams{Email: email, Name: name, PasswordHash: &hash}); err != nil {
			return err
		}
		teamName := name
		if teamName == "" {
			teamName = strings.SplitN(email, "@", 2)[0]
		}
		if team, err = q.CreateTeam(ctx, db.CreateTeamParams{Name: teamName, Slug: slug}); err != nil {
			return err
		}
		if _, err = q.AddTeamMember(ctx, db.AddTeamMemberParams{UserID: user.ID, TeamID: team.ID, Role: string(core.Owner), IsDefault: true}); err != nil {
			return err
		}
		return core.Audit(ctx, q, &core.Principal{UserID: core.UUIDString(user.ID), TeamID: core.UUIDString(team.ID)}, "user.signup", "user", core.UUIDString(user.ID), nil)
	})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" {
			return nil, fmt.Errorf("%w: an account with this email exists", core.ErrConflict)
		}
		return nil, fmt.Errorf("signup: %w", err)
	}
	return s.session(core.UUIDString(user.ID), core.UUIDString(team.ID), core.Owner)
}

// Login checks a password and returns a session for the user's default team. A wrong
// email and a wrong password fail alike, in the same time. client is the caller's
// address: attempts are counted per address and per email and address, before the
// password is hashed (see throttle.go).
func (s *Service) Login(ctx context.Context, email, password, client string) (*Session, error) {
	email, emailErr := normaliseEmail(email)
	pair := loginPerPair.of(client, email)
	counters := []counter{loginPerAddress.of(client)}
	if emailErr == nil {
		counters = append(counters, pair)
	}
	if err := s.take(ctx, counters...); err != nil {
		return nil, err
	}
	user, ok, err := s.checkLogin(ctx, email, emailErr == nil, password)
	if err != nil {
		// No password was checked: the attempt does not count.
		s.giveBack(ctx, counters...)
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: wrong email or password", core.ErrUnauthorized)
	}
	if err := s.st.Redis.Del(ctx, pair.key).Err(); err != nil {
		s.log.Error("throttle: clear failed logins", "err", err)
	}
	s.giveBack(ctx, counters[0])
	team, err := s.q.GetDefaultTeam(ctx, user.ID)
	if err != nil {
		return nil, fmt.Errorf("login: default team: %w", err)
	}
	p := &core.Principal{UserID: core.UUIDString(user.ID), TeamID: core.UUIDString(team.ID), Role: core.Role(team.Role)}
	if err := core.Audit(ctx, s.q, p, "user.login", "user", p.UserID, nil); err != nil {
		return nil, err
	}
	return s.session(p.UserID, p.TeamID, p.Role)
}

// checkLogin compares the password with the user's hash, in a hashing slot; an unknown
// or malformed email costs the same hash, so timing does not reveal which emails exist.
func (s *Service) checkLogin(ctx context.Context, email string, valid bool, password string) (db.User, bool, error) {
	var user db.User
	known := false
	if valid {
		var err error
		user, err = s.q.GetUserByEmail(ctx, email)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return user, false, fmt.Errorf("login: %w", err)
		}
		known = err == nil && user.PasswordHash != nil
	}
	ok := false
	err := s.hashing(ctx, func() {
		if known {
			ok = auth.CheckPassword(*user.PasswordHash, password)
		} else {
			auth.EqualiseTiming(password)
		}
	})
	return user, ok, err
}

// SwitchTeam re-issues a user's token for another team, after checking membership.
func (s *Service) SwitchTeam(ctx context.Context, p *core.Principal, teamID string) (*Session, error) {
	if p.UserID == "" {
		return nil, fmt.Errorf("%w: API keys belong to one team", core.ErrForbidden)
	}
	role, err := s.role(ctx, p.UserID, teamID)
	if err != nil {
		return nil, err
	}
	return s.session(p.UserID, teamID, role)
}

func (s *Service) session(userID, teamID string, role core.Role) (*Session, error) {
	tok, exp, err := s.tokens.Issue(userID, teamID)
	if err != nil {
		return nil, err
	}
	return &Session{Token: tok, ExpiresAt: exp, UserID: userID, TeamID: teamID, Role: role}, nil
}

// role is the user's role in a team from the database; not a member → not found, so
// another team's existence is not revealed.
func (s *Service) role(ctx context.Context, userID, teamID string) (core.Role, error) {
	m, err := s.membership(ctx, userID, teamID)
	if err != nil {
		return "", err
	}
	return core.Role(m.Role), nil
}

func (s *Service) membership(ctx context.Context, userID, teamID string) (db.GetMembershipRow, error) {
	uid, err := core.ParseUUID(userID)
	if err != nil {
		return db.GetMembershipRow{}, fmt.Errorf("%w: unknown user", core.ErrUnauthorized)
	}
	tid, err := core.ParseUUID(teamID)
	if err != nil {
		return db.GetMembershipRow{}, err
	}
	m, err := s.q.GetMembership(ctx, db.GetMembershipParams{UserID: uid, TeamID: tid})
	if errors.Is(err, pgx.ErrNoRows) {
		return m, fmt.Errorf("%w: team %s", core.ErrNotFound, teamID)
	}
	if err != nil {
		return m, fmt.Errorf("membership: %w", err)
	}
	return m, nil
}

// FromToken resolves a JWT to a principal, re-checking membership and role in the
// database: a user removed from a team loses access at once, whatever the token says.
func (s *Service) FromToken(ctx context.Context, token string) (*core.Principal, error) {
	c, err := s.tokens.Verify(token)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", core.ErrUnauthorized, err)
	}
	m, err := s.membership(ctx, c.UserID, c.TeamID)
	if errors.Is(err, core.ErrNotFound) {
		return nil, fmt.Errorf("%w: no longer a member of the token's team", core.ErrUnauthorized)
	}
	if err != nil {
		return nil, err
	}
	return &core.Principal{UserID: c.UserID, TeamID: c.TeamID, Role: core.Role(m.Role), TeamBYOC: m.IsBYOC, Admin: m.IsAdmin}, nil
}

// FromAPIKey resolves an X-API-Key; revoked keys and keys of deleted teams fail.
func (s *Service) FromAPIKey(ctx context.Context, key string) (*core.Principal, error) {
	if !auth.ValidAPIKey(key) {
		return nil, fmt.Errorf("%w: malformed API key", core.ErrUnauthorized)
	}
	row, err := s.q.GetAPIKeyByHash(ctx, auth.HashAPIKey(key))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: unknown or revoked API key", core.ErrUnauthorized)
	}
	if err != nil {
		return nil, fmt.Errorf("api key: %w", err)
	}
	if s.shouldRecordKeyUse(ctx, core.UUIDString(row.ID)) {
		if _, err := s.q.TouchAPIKey(ctx, db.TouchAPIKeyParams{ID: row.ID, TeamID: row.TeamID}); err != nil {
			s.log.Warn("record api key use", "err", err)
		}
	}
	// A key acts for its team with member rights: it can use sandboxes, not manage the team.
	return &core.Principal{TeamID: core.UUIDString(row.TeamID), Role: core.Member, APIKeyID: core.UUIDString(row.ID), TeamBYOC: row.TeamIsBYOC}, nil
}
