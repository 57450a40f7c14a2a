// Package service is the control plane's business logic between the HTTP handlers and
// the database: accounts and teams, API keys, and the audit log. Every decision about
// who may do what is made here, from the database, never from a token's claims alone.
package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/internal/server/auth"
	"github.com/wrennhq/wrenn/internal/server/scheduler"
)

// Errors handlers map to HTTP statuses.
var (
	ErrInvalid      = errors.New("invalid request")   // 400
	ErrUnauthorized = errors.New("unauthorized")      // 401
	ErrForbidden    = errors.New("forbidden")         // 403
	ErrNotFound     = errors.New("not found")         // 404
	ErrConflict     = errors.New("conflict")          // 409
	ErrTooMany      = errors.New("too many requests") // 429
	ErrUnavailable  = errors.New("unavailable")       // 503
)

// Role of a user in a team.
type Role string

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
	// TeamBYOC: the team's sandboxes run on its own hosts only.
	TeamBYOC bool
	// Admin: a platform administrator (manages platform hosts); never an API key.
	Admin bool
}

// CanManage reports whether the principal may manage the team (keys, members).
func (p *Principal) CanManage() bool { return p.Role == Owner || p.Role == Admin }

// Service holds the control plane's state access.
type Service struct {
	pool   *pgxpool.Pool
	q      *db.Queries
	redis  *redis.Client
	tokens *auth.Tokens
	hosts  Hosts
	log    *slog.Logger
	now    func() time.Time
	lists  listCache
	// keyUses: when this replica last saw each API key (debounces the Redis check).
	keyUses sync.Map

	sched         scheduler.Scheduler
	heartbeat     time.Duration
	sealer        *auth.Sealer
	allowInternet bool
}

// Config is what the service runs on.
type Config struct {
	DB     *pgxpool.Pool // all durable state
	Redis  *redis.Client // ephemeral state: login throttling, API-key use debouncing
	Tokens *auth.Tokens
	// Sealer protects the per-host secrets at rest.
	Sealer *auth.Sealer
	// Scheduler places sandboxes on hosts (default least-loaded).
	Scheduler scheduler.Scheduler
	// AllowInternetDefault is the egress of sandboxes whose create does not say.
	AllowInternetDefault bool
	// HeartbeatInterval is how often agents are told to report (default 30 s; whole
	// seconds).
	HeartbeatInterval time.Duration
	Log               *slog.Logger
}

// New wires the service to its databases and token signer.
func New(cfg Config) (*Service, error) {
	if cfg.DB == nil || cfg.Redis == nil || cfg.Tokens == nil || cfg.Sealer == nil {
		return nil, errors.New("service: DB, Redis, Tokens and Sealer are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.HeartbeatInterval < time.Second {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.Scheduler == nil {
		cfg.Scheduler, _ = scheduler.New(scheduler.LeastLoaded)
	}
	return &Service{pool: cfg.DB, q: db.New(cfg.DB), redis: cfg.Redis, tokens: cfg.Tokens, log: cfg.Log, now: time.Now,
		sched: cfg.Scheduler, heartbeat: cfg.HeartbeatInterval, sealer: cfg.Sealer, allowInternet: cfg.AllowInternetDefault}, nil
}

// Ready reports whether PostgreSQL and Redis answer.
func (s *Service) Ready(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if err := s.redis.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// Session is what signup, login and switch-team return.
type Session struct {
	Token     string
	ExpiresAt time.Time
	UserID    string
	TeamID    string
	Role      Role
}

func uuidString(u pgtype.UUID) string {
	if !u.Valid {
		return ""
	}
	b := u.Bytes
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func parseUUID(s string) (pgtype.UUID, error) {
	var u pgtype.UUID
	if err := u.Scan(s); err != nil {
		return u, fmt.Errorf("%w: %q is not an id", ErrNotFound, s)
	}
	return u, nil
}

func normaliseEmail(email string) (string, error) {
	email = strings.ToLower(strings.TrimSpace(email))
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != email || len(email) > 254 {
		return "", fmt.Errorf("%w: %q is not an email address", ErrInvalid, email)
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

// Signup creates a user with a default team they own, and logs them in.
func (s *Service) Signup(ctx context.Context, email, name, password string) (*Session, error) {
	email, err := normaliseEmail(email)
	if err != nil {
		return nil, err
	}
	name = strings.TrimSpace(name)
	if len(name) > 100 {
		return nil, fmt.Errorf("%w: name is longer than 100 characters", ErrInvalid)
	}
	hash, err := auth.HashPassword(password)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	slug, err := newSlug()
	if err != nil {
		return nil, err
	}
	var user db.User
	var team db.Team
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		q := s.q.WithTx(tx)
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
		if _, err = q.AddTeamMember(ctx, db.AddTeamMemberParams{UserID: user.ID, TeamID: team.ID, Role: string(Owner), IsDefault: true}); err != nil {
			return err
		}
		return s.audit(ctx, q, &Principal{UserID: uuidString(user.ID), TeamID: uuidString(team.ID)}, "user.signup", "user", uuidString(user.ID), nil)
	})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" {
			return nil, fmt.Errorf("%w: an account with this email exists", ErrConflict)
		}
		return nil, fmt.Errorf("signup: %w", err)
	}
	return s.session(uuidString(user.ID), uuidString(team.ID), Owner)
}

// Login checks a password and returns a session for the user's default team. A wrong
// email and a wrong password fail alike, in the same time.
func (s *Service) Login(ctx context.Context, email, password string) (*Session, error) {
	fail := fmt.Errorf("%w: wrong email or password", ErrUnauthorized)
	email, err := normaliseEmail(email)
	if err != nil {
		auth.EqualiseTiming(password)
		return nil, fail
	}
	if err := s.loginAllowed(ctx, email); err != nil {
		return nil, err
	}
	user, err := s.q.GetUserByEmail(ctx, email)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && user.PasswordHash == nil) {
		auth.EqualiseTiming(password)
		s.loginFailed(ctx, email)
		return nil, fail
	}
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	if !auth.CheckPassword(*user.PasswordHash, password) {
		s.loginFailed(ctx, email)
		return nil, fail
	}
	s.redis.Del(ctx, loginFailKey(email))
	team, err := s.q.GetDefaultTeam(ctx, user.ID)
	if err != nil {
		return nil, fmt.Errorf("login: default team: %w", err)
	}
	p := &Principal{UserID: uuidString(user.ID), TeamID: uuidString(team.ID), Role: Role(team.Role)}
	if err := s.audit(ctx, s.q, p, "user.login", "user", p.UserID, nil); err != nil {
		return nil, err
	}
	return s.session(p.UserID, p.TeamID, p.Role)
}

// SwitchTeam re-issues a user's token for another team, after checking membership.
func (s *Service) SwitchTeam(ctx context.Context, p *Principal, teamID string) (*Session, error) {
	if p.UserID == "" {
		return nil, fmt.Errorf("%w: API keys belong to one team", ErrForbidden)
	}
	role, err := s.role(ctx, p.UserID, teamID)
	if err != nil {
		return nil, err
	}
	return s.session(p.UserID, teamID, role)
}

func (s *Service) session(userID, teamID string, role Role) (*Session, error) {
	tok, exp, err := s.tokens.Issue(userID, teamID)
	if err != nil {
		return nil, err
	}
	return &Session{Token: tok, ExpiresAt: exp, UserID: userID, TeamID: teamID, Role: role}, nil
}

// role is the user's role in a team from the database; not a member → not found, so
// another team's existence is not revealed.
func (s *Service) role(ctx context.Context, userID, teamID string) (Role, error) {
	m, err := s.membership(ctx, userID, teamID)
	if err != nil {
		return "", err
	}
	return Role(m.Role), nil
}

func (s *Service) membership(ctx context.Context, userID, teamID string) (db.GetMembershipRow, error) {
	uid, err := parseUUID(userID)
	if err != nil {
		return db.GetMembershipRow{}, fmt.Errorf("%w: unknown user", ErrUnauthorized)
	}
	tid, err := parseUUID(teamID)
	if err != nil {
		return db.GetMembershipRow{}, err
	}
	m, err := s.q.GetMembership(ctx, db.GetMembershipParams{UserID: uid, TeamID: tid})
	if errors.Is(err, pgx.ErrNoRows) {
		return m, fmt.Errorf("%w: team %s", ErrNotFound, teamID)
	}
	if err != nil {
		return m, fmt.Errorf("membership: %w", err)
	}
	return m, nil
}

// FromToken resolves a JWT to a principal, re-checking membership and role in the
// database: a user removed from a team loses access at once, whatever the token says.
func (s *Service) FromToken(ctx context.Context, token string) (*Principal, error) {
	c, err := s.tokens.Verify(token)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnauthorized, err)
	}
	m, err := s.membership(ctx, c.UserID, c.TeamID)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: no longer a member of the token's team", ErrUnauthorized)
	}
	if err != nil {
		return nil, err
	}
	return &Principal{UserID: c.UserID, TeamID: c.TeamID, Role: Role(m.Role), TeamBYOC: m.IsBYOC, Admin: m.IsAdmin}, nil
}

// FromAPIKey resolves an X-API-Key; revoked keys and keys of deleted teams fail.
func (s *Service) FromAPIKey(ctx context.Context, key string) (*Principal, error) {
	if !auth.ValidAPIKey(key) {
		return nil, fmt.Errorf("%w: malformed API key", ErrUnauthorized)
	}
	row, err := s.q.GetAPIKeyByHash(ctx, auth.HashAPIKey(key))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: unknown or revoked API key", ErrUnauthorized)
	}
	if err != nil {
		return nil, fmt.Errorf("api key: %w", err)
	}
	if s.shouldRecordKeyUse(ctx, uuidString(row.ID)) {
		if _, err := s.q.TouchAPIKey(ctx, db.TouchAPIKeyParams{ID: row.ID, TeamID: row.TeamID}); err != nil {
			s.log.Warn("record api key use", "err", err)
		}
	}
	// A key acts for its team with member rights: it can use sandboxes, not manage the team.
	return &Principal{TeamID: uuidString(row.TeamID), Role: Member, APIKeyID: uuidString(row.ID), TeamBYOC: row.TeamIsBYOC}, nil
}

// audit appends one entry; it runs inside the caller's transaction when there is one.
func (s *Service) audit(ctx context.Context, q *db.Queries, p *Principal, action, resourceType, resourceID string, meta map[string]any) error {
	params := db.InsertAuditLogParams{Action: action, ResourceType: resourceType, ResourceID: resourceID, Metadata: []byte("{}")}
	if meta != nil {
		b, err := json.Marshal(meta)
		if err != nil {
			return err
		}
		params.Metadata = b
	}
	params.TeamID, _ = parseUUID(p.TeamID)
	if p.UserID != "" {
		params.ActorUserID, _ = parseUUID(p.UserID)
	}
	if p.APIKeyID != "" {
		params.ActorAPIKeyID, _ = parseUUID(p.APIKeyID)
	}
	if _, err := q.InsertAuditLog(ctx, params); err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	return nil
}
