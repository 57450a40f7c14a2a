package accounts

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// maxTeamName is a team name's length in characters (runes), after trimming.
const maxTeamName = 64

// maxOwnedTeams bounds the live teams one user owns, so that an account cannot
// create teams without end (each one is rows, a slug and a quota of its own).
const maxOwnedTeams = 20

// Team is one of the caller's teams, as they see it.
type Team struct {
	ID, Name, Slug string
	Role           core.Role // the caller's role in it
	Default, BYOC  bool
	Members        int
	CreatedAt      time.Time
}

// teamFrom is the Team of a GetUserTeam or ListUserTeams row (the same columns).
func teamFrom(r db.GetUserTeamRow) *Team {
	return &Team{ID: core.UUIDString(r.ID), Name: r.Name, Slug: r.Slug, Role: core.Role(r.Role), Default: r.IsDefault,
		BYOC: r.IsBYOC, Members: int(r.Members), CreatedAt: r.CreatedAt}
}

// checkTeamName trims a team's name and checks it: free text (hyphens, @,
// apostrophes, any script), 1 to 64 characters, no control characters.
func checkTeamName(name string) (string, error) {
	name = strings.TrimSpace(name)
	switch n := utf8.RuneCountInString(name); {
	case !utf8.ValidString(name):
		return "", fmt.Errorf("%w: the team's name is not valid UTF-8", core.ErrInvalid)
	case n == 0:
		return "", fmt.Errorf("%w: the team's name is empty", core.ErrInvalid)
	case n > maxTeamName:
		return "", fmt.Errorf("%w: the team's name is longer than %d characters", core.ErrInvalid, maxTeamName)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return "", fmt.Errorf("%w: the team's name contains a control character", core.ErrInvalid)
	}
	return name, nil
}

// teamSlug derives a team's slug from its name: the name's ASCII letters and digits in
// lower case, other runs of characters as one hyphen, at most 40 characters, then a
// random suffix that makes it unique ("team" when nothing of the name is ASCII).
// The slug never changes after, whatever the team is renamed to.
func teamSlug(name string) (string, error) {
	var b strings.Builder
	hyphen := false
	for _, r := range strings.ToLower(name) {
		if b.Len() >= 40 {
			break
		}
		if r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			if hyphen && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			hyphen = false
			continue
		}
		hyphen = true
	}
	base := strings.TrimRight(b.String(), "-")
	if base == "" {
		base = "team"
	}
	suffix := make([]byte, 3)
	if _, err := rand.Read(suffix); err != nil {
		return "", err
	}
	return base + "-" + hex.EncodeToString(suffix), nil
}

// insertTeam creates a team with a fresh slug, trying another suffix should one be
// taken (CreateTeam inserts nothing then, which leaves the transaction usable).
func insertTeam(ctx context.Context, q *db.Queries, name string) (db.Team, error) {
	for attempt := 0; ; attempt++ {
		slug, err := teamSlug(name)
		if err != nil {
			return db.Team{}, err
		}
		team, err := q.CreateTeam(ctx, db.CreateTeamParams{Name: name, Slug: slug})
		if errors.Is(err, pgx.ErrNoRows) && attempt < 5 {
			continue
		}
		return team, err
	}
}

// userUUID is the principal's user id, for the routes only a signed-in user may call.
func userUUID(p *core.Principal) (pgtype.UUID, error) {
	if p.UserID == "" {
		return pgtype.UUID{}, fmt.Errorf("%w: this needs a user's token, not an API key", core.ErrForbidden)
	}
	return core.ParseUUID(p.UserID)
}

// ListTeams returns the caller's teams, the default first.
func (s *Service) ListTeams(ctx context.Context, p *core.Principal) ([]*Team, error) {
	uid, err := userUUID(p)
	if err != nil {
		return nil, err
	}
	rows, err := s.q.ListUserTeams(ctx, uid)
	if err != nil {
		return nil, fmt.Errorf("list teams of %s: %w", p.UserID, err)
	}
	out := make([]*Team, len(rows))
	for i, r := range rows {
		out[i] = teamFrom(db.GetUserTeamRow(r))
	}
	return out, nil
}

// GetTeam returns one of the caller's teams; anyone else's is not found.
func (s *Service) GetTeam(ctx context.Context, p *core.Principal, teamID string) (*Team, error) {
	return s.userTeam(ctx, s.q, p, teamID)
}

func (s *Service) userTeam(ctx context.Context, q *db.Queries, p *core.Principal, teamID string) (*Team, error) {
	uid, err := userUUID(p)
	if err != nil {
		return nil, err
	}
	tid, err := core.ParseUUID(teamID)
	if err != nil {
		return nil, err
	}
	row, err := q.GetUserTeam(ctx, db.GetUserTeamParams{UserID: uid, TeamID: tid})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: team %s", core.ErrNotFound, teamID)
	}
	if err != nil {
		return nil, fmt.Errorf("get team %s: %w", teamID, err)
	}
	return teamFrom(row), nil
}

// CreateTeam makes a team the caller owns (their default if they have none).
func (s *Service) CreateTeam(ctx context.Context, p *core.Principal, name string) (*Team, error) {
	uid, err := userUUID(p)
	if err != nil {
		return nil, err
	}
	if name, err = checkTeamName(name); err != nil {
		return nil, err
	}
	var team *Team
	err = s.st.Tx(ctx, func(q *db.Queries) error {
		// Serialises one user's creates, so two at once cannot both pass the count.
		if err := q.LockUserTeams(ctx, uid); err != nil {
			return err
		}
		owned, err := q.CountOwnedTeams(ctx, uid)
		if err != nil {
			return err
		}
		if owned >= maxOwnedTeams {
			return fmt.Errorf("%w: you own %d teams, the most one user may; delete one first", core.ErrQuota, owned)
		}
		t, err := insertTeam(ctx, q, name)
		if err != nil {
			return err
		}
		if _, err := q.AddTeamMember(ctx, db.AddTeamMemberParams{UserID: uid, TeamID: t.ID, Role: string(core.Owner)}); err != nil {
			return err
		}
		if _, err := q.EnsureDefaultTeam(ctx, uid); err != nil {
			return err
		}
		teamID := core.UUIDString(t.ID)
		if err := core.Audit(ctx, q, p.In(teamID), "team.create", "team", teamID, map[string]any{"name": name, "slug": t.Slug}); err != nil {
			return err
		}
		team, err = s.userTeam(ctx, q, p, teamID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create team: %w", err)
	}
	return team, nil
}

// RenameTeam changes a team's name (owners and admins); its slug stays.
func (s *Service) RenameTeam(ctx context.Context, p *core.Principal, teamID, name string) (*Team, error) {
	name, err := checkTeamName(name)
	if err != nil {
		return nil, err
	}
	var team *Team
	err = s.st.Tx(ctx, func(q *db.Queries) error {
		tid, role, err := s.lockTeamAs(ctx, q, p, teamID)
		if err != nil {
			return err
		}
		if role != core.Owner && role != core.Admin {
			return fmt.Errorf("%w: only the team's owners and admins rename it", core.ErrForbidden)
		}
		if _, err := q.RenameTeam(ctx, db.RenameTeamParams{ID: tid, Name: name}); err != nil {
			return err
		}
		if err := core.Audit(ctx, q, p.In(teamID), "team.rename", "team", teamID, map[string]any{"name": name}); err != nil {
			return err
		}
		team, err = s.userTeam(ctx, q, p, teamID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("rename team %s: %w", teamID, err)
	}
	return team, nil
}

// DeleteTeam soft-deletes a team (its owners only): from the commit on, no token or
// API key acts for it, its keys are revoked and it is nobody's default. What it holds
// on hosts — sandboxes, snapshot files, its own hosts — is removed after by
// sandboxes.PurgeDeletedTeams (at once where hosts answer, then by the host monitor
// until nothing is left). Its rows and audit trail stay, for platform admins.
func (s *Service) DeleteTeam(ctx context.Context, p *core.Principal, teamID string) error {
	err := s.st.Tx(ctx, func(q *db.Queries) error {
		tid, role, err := s.lockTeamAs(ctx, q, p, teamID)
		if err != nil {
			return err
		}
		if role != core.Owner {
			return fmt.Errorf("%w: only the team's owners delete it", core.ErrForbidden)
		}
		if _, err := q.SoftDeleteTeam(ctx, tid); err != nil {
			return err
		}
		if err := q.ClearTeamDefaults(ctx, tid); err != nil {
			return err
		}
		keys, err := q.RevokeTeamAPIKeys(ctx, tid)
		if err != nil {
			return err
		}
		return core.Audit(ctx, q, p.In(teamID), "team.delete", "team", teamID, map[string]any{"api_keys_revoked": keys})
	})
	if err != nil {
		return fmt.Errorf("delete team %s: %w", teamID, err)
	}
	return nil
}

// lockTeamAs locks a live team's row (db LockTeam) in q's transaction and reads the
// caller's role in it under the lock; a team the caller is not in is not found.
func (s *Service) lockTeamAs(ctx context.Context, q *db.Queries, p *core.Principal, teamID string) (pgtype.UUID, core.Role, error) {
	uid, err := userUUID(p)
	if err != nil {
		return pgtype.UUID{}, "", err
	}
	tid, err := core.ParseUUID(teamID)
	if err != nil {
		return tid, "", err
	}
	notFound := fmt.Errorf("%w: team %s", core.ErrNotFound, teamID)
	if _, err := q.LockTeam(ctx, tid); errors.Is(err, pgx.ErrNoRows) {
		return tid, "", notFound
	} else if err != nil {
		return tid, "", err
	}
	me, err := q.LockTeamMember(ctx, db.LockTeamMemberParams{TeamID: tid, UserID: uid})
	if errors.Is(err, pgx.ErrNoRows) {
		return tid, "", notFound
	}
	if err != nil {
		return tid, "", err
	}
	return tid, core.Role(me.Role), nil
}

// SetTeamBYOC lets a team run on its own hosts, or no longer (platform administrators
// only), with its audit entry in the same transaction.
func (s *Service) SetTeamBYOC(ctx context.Context, p *core.Principal, teamID string, byoc bool) error {
	if err := p.RequireAdmin(); err != nil {
		return err
	}
	tid, err := core.ParseUUID(teamID)
	if err != nil {
		return err
	}
	return s.st.Tx(ctx, func(q *db.Queries) error {
		if _, err := q.SetTeamBYOC(ctx, db.SetTeamBYOCParams{ID: tid, IsBYOC: byoc}); errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: team %s", core.ErrNotFound, teamID)
		} else if err != nil {
			return fmt.Errorf("set byoc of team %s: %w", teamID, err)
		}
		return core.Audit(ctx, q, p.In(teamID), "team.byoc", "team", teamID, map[string]any{"byoc": byoc})
	})
}
