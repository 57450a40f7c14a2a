// Package accounts is who uses the control plane: users, sign-up and login, teams
// and roles (membership, BYOC, quota overrides), team API keys, and resolving a request's credentials
// (a user's JWT or a team's API key) into a core.Principal — every decision about who
// may do what is made here from the database, never from a token's claims alone.
//
// Teams (teams.go) and their members (members.go, where every membership rule is
// judged) are managed here too. Sign-in through OAuth providers (oauth.go) maps a
// provider's identity to a user; the provider side is package auth/oauth. Audit
// entries themselves are written by every service through core.Audit, in the
// transaction of the change.
package accounts

import (
	"context"
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
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
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
	// signupClosed: only operators make accounts (CreateUser); Signup refuses.
	signupClosed bool
}

// Config is what the accounts service runs on.
type Config struct {
	Store  *core.Store
	Tokens *auth.Tokens // signs and verifies users' JWTs
	// Quota is every team's default quota (WRENN_QUOTA_*); the zero Quota limits nothing.
	Quota core.Quota
	Log   *slog.Logger
	// SignupClosed refuses every sign-up (403) before looking at it: accounts are
	// made by an operator (`wrenn admin create-user`). Open by default, so a fresh
	// install can make its first account.
	SignupClosed bool
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
		hashSlots: make(chan struct{}, runtime.GOMAXPROCS(0)), hashWait: defaultHashWait, signupClosed: cfg.SignupClosed}, nil
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

// Signup creates a user with a default team they own, and logs them in. client is the
// caller's address, which the sign-up throttle counts by (see throttle.go).
//
// Without e-mail delivery a sign-up for a taken email cannot look like a new one: it
// is answered 409. So that this is no cheaper a way to learn which emails have
// accounts than login (whose failures do not say), each sign-up is also counted
// against the address's login budget (loginPerAddress) and given back unless it was
// that 409; the password is hashed before the email is looked at, whatever the email,
// so both answers take as long; and the 409 says no more than that.
func (s *Service) Signup(ctx context.Context, email, name, password, client string) (*Session, error) {
	userID, teamID, err := s.signup(ctx, email, name, password, client)
	if err != nil {
		return nil, err
	}
	return s.session(userID, teamID, core.Owner)
}

// signup is Signup up to the new account, which the caller signs in (a JWT or a
// browser session).
func (s *Service) signup(ctx context.Context, email, name, password, client string) (userID, teamID string, err error) {
	if s.signupClosed {
		// Before anything is looked up or counted: the answer is the same for everyone.
		return "", "", fmt.Errorf("%w: sign-up is closed on this server; ask its operator for an account", core.ErrForbidden)
	}
	email, name, err = checkNewUser(email, name)
	if err != nil {
		return "", "", err
	}
	perAddress, probes := signupPerAddress.of(client), loginPerAddress.of(client)
	if err := s.take(ctx, perAddress, probes); err != nil {
		s.giveBack(ctx, probes) // a refused sign-up learnt nothing
		return "", "", err
	}
	var hash string
	var hashErr error
	if err := s.hashing(ctx, func() { hash, hashErr = auth.HashPassword(password) }); err != nil {
		s.giveBack(ctx, perAddress, probes)
		return "", "", err
	}
	if hashErr != nil {
		s.giveBack(ctx, probes)
		return "", "", fmt.Errorf("%w: %v", core.ErrInvalid, hashErr)
	}
	err = s.st.Tx(ctx, func(q *db.Queries) (err error) {
		userID, teamID, err = createAccount(ctx, q, newAccount{email: email, name: name, hash: &hash})
		return err
	})
	if errors.Is(err, errEmailTaken) {
		// The one answer that tells something; its count stays.
		return "", "", fmt.Errorf("%w: cannot sign up with this email", core.ErrConflict)
	}
	s.giveBack(ctx, probes)
	if err != nil {
		return "", "", fmt.Errorf("signup: %w", err)
	}
	return userID, teamID, nil
}

// CreateUser makes an account as an operator does (`wrenn admin create-user`), with
// only the database: a user with a default team they own, who then logs in. It works
// whether sign-up is open or closed.
func CreateUser(ctx context.Context, pool *pgxpool.Pool, email, name, password string) (userID, teamID string, err error) {
	email, name, err = checkNewUser(email, name)
	if err != nil {
		return "", "", err
	}
	hash, err := auth.HashPassword(password)
	if err != nil {
		return "", "", fmt.Errorf("%w: %v", core.ErrInvalid, err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) (err error) {
		userID, teamID, err = createAccount(ctx, db.New(tx), newAccount{email: email, name: name, hash: &hash, byOperator: true})
		return err
	})
	if errors.Is(err, errEmailTaken) {
		return "", "", fmt.Errorf("%w: an account with email %s exists", core.ErrConflict, email)
	}
	if err != nil {
		return "", "", fmt.Errorf("create user %s: %w", email, err)
	}
	return userID, teamID, nil
}

// checkNewUser normalises and checks a new account's email and name.
func checkNewUser(email, name string) (string, string, error) {
	email, err := normaliseEmail(email)
	if err != nil {
		return "", "", err
	}
	name = strings.TrimSpace(name)
	if err := ident.CheckText("name", name, 100); err != nil {
		return "", "", fmt.Errorf("%w: %v", core.ErrInvalid, err)
	}
	return email, name, nil
}

// errEmailTaken: an account with the email exists.
var errEmailTaken = errors.New("email taken")

// newAccount is an account to make and how it came to be.
type newAccount struct {
	email, name string
	hash        *string // nil: no password; the user signs in through a provider only
	// byOperator: made by an operator (user.create, no actor), not by the user signing
	// up (user.signup).
	byOperator bool
	meta       map[string]any // the audit entry's metadata (a provider's sign-up: which)
}

// createAccount makes a user, a team named after them that they own and is their
// default, and the audit entry, through q, which is in the caller's transaction: an
// OAuth sign-up adds its identity to the same one, so the account and how it signs
// in exist together or not at all. A taken email is errEmailTaken (the transaction
// is then aborted).
func createAccount(ctx context.Context, q *db.Queries, a newAccount) (userID, teamID string, err error) {
	user, err := q.CreateUser(ctx, db.CreateUserParams{Email: a.email, Name: a.name, PasswordHash: a.hash})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return "", "", errEmailTaken // the id is generated: email is the one unique column a caller sets
	}
	if err != nil {
		return "", "", err
	}
	team, err := createPersonalTeam(ctx, q, user)
	if err != nil {
		return "", "", err
	}
	userID, teamID = core.UUIDString(user.ID), core.UUIDString(team.ID)
	if a.byOperator {
		err = core.Audit(ctx, q, &core.Principal{TeamID: teamID}, "user.create", "user", userID, a.meta)
	} else {
		err = core.Audit(ctx, q, &core.Principal{UserID: userID, TeamID: teamID}, "user.signup", "user", userID, a.meta)
	}
	if err != nil {
		return "", "", err
	}
	return userID, teamID, nil
}

// createPersonalTeam makes a team named after the user that they own and is their
// default, in tx: a new account's, and a login's when the user is in no team any more.
func createPersonalTeam(ctx context.Context, q *db.Queries, user db.User) (db.Team, error) {
	teamName := user.Name
	if teamName == "" {
		teamName = strings.SplitN(user.Email, "@", 2)[0]
	}
	if n, err := checkTeamName(teamName); err == nil {
		teamName = n
	} else {
		teamName = "Personal"
	}
	team, err := insertTeam(ctx, q, teamName)
	if err != nil {
		return team, err
	}
	_, err = q.AddTeamMember(ctx, db.AddTeamMemberParams{UserID: user.ID, TeamID: team.ID, Role: string(core.Owner), IsDefault: true})
	return team, err
}

// Login checks a password and returns a session for the user's default team. A wrong
// email and a wrong password fail alike, in the same time. client is the caller's
// address: attempts are counted per address and per email and address, before the
// password is hashed (see throttle.go).
func (s *Service) Login(ctx context.Context, email, password, client string) (*Session, error) {
	p, err := s.login(ctx, email, password, client)
	if err != nil {
		return nil, err
	}
	if err := core.Audit(ctx, s.q, p, "user.login", "user", p.UserID, nil); err != nil {
		return nil, err
	}
	return s.session(p.UserID, p.TeamID, p.Role)
}

// login is Login up to who signs in, for their default team, not yet audited: the
// caller signs them in (a JWT or a browser session) and audits it.
func (s *Service) login(ctx context.Context, email, password, client string) (*core.Principal, error) {
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
	team, err := s.loginTeam(ctx, user)
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	return &core.Principal{UserID: core.UUIDString(user.ID), TeamID: core.UUIDString(team.ID), Role: core.Role(team.Role)}, nil
}

// loginTeam is the team a login's session is for (defaultTeam, in a transaction).
func (s *Service) loginTeam(ctx context.Context, user db.User) (db.GetDefaultTeamRow, error) {
	var team db.GetDefaultTeamRow
	err := s.st.Tx(ctx, func(q *db.Queries) (err error) {
		team, err = defaultTeam(ctx, q, user.ID)
		return err
	})
	return team, err
}

// defaultTeam is the user's default team, in q's transaction; when that team was left
// or deleted, the oldest team they are still in becomes the default; in no team at
// all, a new personal team (a user without one could do nothing).
func defaultTeam(ctx context.Context, q *db.Queries, userID pgtype.UUID) (db.GetDefaultTeamRow, error) {
	team, err := q.GetDefaultTeam(ctx, userID)
	if !errors.Is(err, pgx.ErrNoRows) {
		return team, err
	}
	// One fallback per user at a time (two logins must not make two teams), and the
	// default looked for again under the lock.
	if err := q.LockUserTeams(ctx, userID); err != nil {
		return team, err
	}
	if team, err = q.GetDefaultTeam(ctx, userID); !errors.Is(err, pgx.ErrNoRows) {
		return team, err
	}
	if n, err := q.EnsureDefaultTeam(ctx, userID); err != nil {
		return team, err
	} else if n == 0 {
		user, err := q.GetUserByID(ctx, userID)
		if err != nil {
			return team, err
		}
		t, err := createPersonalTeam(ctx, q, user)
		if err != nil {
			return team, err
		}
		teamID := core.UUIDString(t.ID)
		if err := core.Audit(ctx, q, &core.Principal{UserID: core.UUIDString(userID), TeamID: teamID}, "team.create", "team", teamID, map[string]any{"name": t.Name, "slug": t.Slug, "reason": "login in no team"}); err != nil {
			return team, err
		}
	}
	if team, err = q.GetDefaultTeam(ctx, userID); err != nil {
		return team, fmt.Errorf("default team of %s: %w", core.UUIDString(userID), err)
	}
	return team, nil
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
	return s.member(ctx, c.UserID, c.TeamID, "token")
}

// member is the user acting for the team their credential (what: token, session)
// names, with the role the database gives them there now: the one check of every
// user's request, whatever the credential. Not (any more) a member: unauthorized.
func (s *Service) member(ctx context.Context, userID, teamID, what string) (*core.Principal, error) {
	m, err := s.membership(ctx, userID, teamID)
	if errors.Is(err, core.ErrNotFound) {
		return nil, fmt.Errorf("%w: no longer a member of the %s's team", core.ErrUnauthorized, what)
	}
	if err != nil {
		return nil, err
	}
	return &core.Principal{UserID: userID, TeamID: teamID, Role: core.Role(m.Role), TeamBYOC: m.IsBYOC, Admin: m.IsAdmin}, nil
}

// UserFromToken resolves a JWT to its user only, for switching teams: a user who left
// (or was removed from, or deleted) the token's team can still move to a team they
// are in, which SwitchTeam checks; everything else takes FromToken.
func (s *Service) UserFromToken(ctx context.Context, token string) (*core.Principal, error) {
	c, err := s.tokens.Verify(token)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", core.ErrUnauthorized, err)
	}
	uid, err := core.ParseUUID(c.UserID)
	if err != nil {
		return nil, fmt.Errorf("%w: unknown user", core.ErrUnauthorized)
	}
	if _, err := s.q.GetUserByID(ctx, uid); errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: unknown user", core.ErrUnauthorized)
	} else if err != nil {
		return nil, fmt.Errorf("read user %s: %w", c.UserID, err)
	}
	return &core.Principal{UserID: c.UserID}, nil
}

// FromAPIKey resolves an X-API-Key; revoked keys and keys of deleted teams fail.
func (s *Service) FromAPIKey(ctx context.Context, key string) (*core.Principal, error) {
	key = auth.CanonicalAPIKey(key)
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

// Me is who a signed-in user is: the account, every team they belong to with their
// role there, and the team their token acts for.
type Me struct {
	UserID, Email, Name string
	Admin               bool
	CurrentTeamID       string
	Teams               []*Team
}

// Me reads the principal's account and teams from the database (a user's token only).
func (s *Service) Me(ctx context.Context, p *core.Principal) (*Me, error) {
	uid, err := userUUID(p)
	if err != nil {
		return nil, err
	}
	u, err := s.q.GetUserByID(ctx, uid)
	if err != nil {
		return nil, fmt.Errorf("read user %s: %w", p.UserID, err)
	}
	teams, err := s.ListTeams(ctx, p)
	if err != nil {
		return nil, err
	}
	return &Me{UserID: p.UserID, Email: u.Email, Name: u.Name, Admin: u.IsAdmin, CurrentTeamID: p.TeamID, Teams: teams}, nil
}
