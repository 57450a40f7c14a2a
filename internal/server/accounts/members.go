package accounts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// Member is a user in a team.
type Member struct {
	UserID, Email, Name string
	Role                core.Role
	JoinedAt            time.Time
}

// memberOp is what a membership change does.
type memberOp string

const (
	opAdd    memberOp = "add"
	opRole   memberOp = "role"
	opRemove memberOp = "remove"
	opLeave  memberOp = "leave"
)

// membershipChange is one change judged by checkMembershipChange: who acts (their role
// in the team, read under the team's lock), on whom, and the team's owners before it.
type membershipChange struct {
	op        memberOp
	actor     core.Role
	self      bool      // the actor changes their own membership
	target    core.Role // the target's role now; "" when they are not a member
	newRole   core.Role // add and role: the role asked for
	ownersNow int
}

// checkMembershipChange is every rule of team membership, in one place; callers hold
// the team's lock (db LockTeam), so that each change is judged against the members as
// the one before left them:
//   - a team always has at least one owner: the last one can neither leave, be removed,
//     nor be demoted;
//   - only an owner makes or unmakes owners;
//   - an admin manages members and admins, not owners; a member manages nobody;
//   - nobody changes their own role (leaving is the one change of one's own).
func checkMembershipChange(c membershipChange) error {
	if err := checkRole(c.newRole); c.newRole != "" && err != nil {
		return err
	}
	switch c.op {
	case opLeave:
		if c.actor == core.Owner && c.ownersNow <= 1 {
			return fmt.Errorf("%w: you are the team's last owner: make another member an owner first, or delete the team", core.ErrConflict)
		}
		return nil
	case opAdd:
		if c.target != "" {
			return fmt.Errorf("%w: the user is already a member of the team", core.ErrConflict)
		}
	case opRole:
		if c.self {
			return fmt.Errorf("%w: nobody changes their own role; another owner or admin does", core.ErrForbidden)
		}
	case opRemove:
		if c.self {
			return fmt.Errorf("%w: to leave the team, use leave", core.ErrInvalid)
		}
	}
	if c.actor != core.Owner && c.actor != core.Admin {
		return fmt.Errorf("%w: only the team's owners and admins manage its members", core.ErrForbidden)
	}
	if c.actor != core.Owner && (c.target == core.Owner || c.newRole == core.Owner) {
		return fmt.Errorf("%w: only an owner makes or unmakes owners", core.ErrForbidden)
	}
	losesOwner := c.target == core.Owner && (c.op == opRemove || (c.op == opRole && c.newRole != core.Owner))
	if losesOwner && c.ownersNow <= 1 {
		return fmt.Errorf("%w: the team must keep at least one owner", core.ErrConflict)
	}
	return nil
}

// checkRole refuses anything but the three roles.
func checkRole(r core.Role) error {
	if r != core.Owner && r != core.Admin && r != core.Member {
		return fmt.Errorf("%w: role %q: want owner, admin or member", core.ErrInvalid, r)
	}
	return nil
}

// ListMembers returns a team's members (any member may look).
func (s *Service) ListMembers(ctx context.Context, p *core.Principal, teamID string) ([]Member, error) {
	if _, err := s.userTeam(ctx, s.q, p, teamID); err != nil {
		return nil, err
	}
	tid, err := core.ParseUUID(teamID)
	if err != nil {
		return nil, err
	}
	rows, err := s.q.ListTeamMembers(ctx, tid)
	if err != nil {
		return nil, fmt.Errorf("members of team %s: %w", teamID, err)
	}
	out := make([]Member, len(rows))
	for i, r := range rows {
		out[i] = Member{UserID: core.UUIDString(r.ID), Email: r.Email, Name: r.Name, Role: core.Role(r.Role), JoinedAt: r.JoinedAt}
	}
	return out, nil
}

// AddMember adds an existing user, by email, to a team with a role (member when
// empty). An unknown email is not found: there are no invitations by mail yet.
func (s *Service) AddMember(ctx context.Context, p *core.Principal, teamID, email string, role core.Role) (*Member, error) {
	if role == "" {
		role = core.Member
	}
	if err := checkRole(role); err != nil {
		return nil, err
	}
	email, err := normaliseEmail(email)
	if err != nil {
		return nil, err
	}
	return s.changeMember(ctx, p, teamID, opAdd, func(q *db.Queries) (pgtype.UUID, error) {
		u, err := q.GetUserByEmail(ctx, email)
		if errors.Is(err, pgx.ErrNoRows) {
			return pgtype.UUID{}, fmt.Errorf("%w: no user with email %s (they sign up first)", core.ErrNotFound, email)
		}
		return u.ID, err
	}, role)
}

// SetMemberRole changes a member's role.
func (s *Service) SetMemberRole(ctx context.Context, p *core.Principal, teamID, userID string, role core.Role) (*Member, error) {
	if err := checkRole(role); err != nil {
		return nil, err
	}
	return s.changeMember(ctx, p, teamID, opRole, byID(userID), role)
}

// RemoveMember takes a user out of a team.
func (s *Service) RemoveMember(ctx context.Context, p *core.Principal, teamID, userID string) error {
	_, err := s.changeMember(ctx, p, teamID, opRemove, byID(userID), "")
	return err
}

// LeaveTeam takes the caller out of a team.
func (s *Service) LeaveTeam(ctx context.Context, p *core.Principal, teamID string) error {
	_, err := s.changeMember(ctx, p, teamID, opLeave, byID(p.UserID), "")
	return err
}

func byID(userID string) func(*db.Queries) (pgtype.UUID, error) {
	return func(*db.Queries) (pgtype.UUID, error) {
		u, err := core.ParseUUID(userID)
		if err != nil {
			return u, fmt.Errorf("%w: no member %s", core.ErrNotFound, userID)
		}
		return u, nil
	}
}

// changeMember makes one membership change in a transaction that holds the team's
// lock: it reads the caller's and the target's roles and the owners under it, judges
// the change (checkMembershipChange), applies and audits it. target finds the user.
func (s *Service) changeMember(ctx context.Context, p *core.Principal, teamID string, op memberOp, target func(*db.Queries) (pgtype.UUID, error), role core.Role) (*Member, error) {
	var out *Member
	err := s.st.Tx(ctx, func(q *db.Queries) error {
		tid, actor, err := s.lockTeamAs(ctx, q, p, teamID)
		if err != nil {
			return err
		}
		uid, err := target(q)
		if err != nil {
			return err
		}
		cur, err := q.LockTeamMember(ctx, db.LockTeamMemberParams{TeamID: tid, UserID: uid})
		switch {
		case errors.Is(err, pgx.ErrNoRows) && op != opAdd:
			return fmt.Errorf("%w: no member %s in team %s", core.ErrNotFound, core.UUIDString(uid), teamID)
		case errors.Is(err, pgx.ErrNoRows):
			cur = db.LockTeamMemberRow{}
		case err != nil:
			return err
		}
		owners, err := q.CountTeamOwners(ctx, tid)
		if err != nil {
			return err
		}
		c := membershipChange{op: op, actor: actor, self: core.UUIDString(uid) == p.UserID, target: core.Role(cur.Role), newRole: role, ownersNow: int(owners)}
		if err := checkMembershipChange(c); err != nil {
			return err
		}
		userID := core.UUIDString(uid)
		meta := map[string]any{"user_id": userID}
		switch op {
		case opAdd:
			if _, err := q.AddTeamMember(ctx, db.AddTeamMemberParams{UserID: uid, TeamID: tid, Role: string(role)}); err != nil {
				return err
			}
			if _, err := q.EnsureDefaultTeam(ctx, uid); err != nil {
				return err
			}
			meta["role"] = role
		case opRole:
			if err := q.SetMemberRole(ctx, db.SetMemberRoleParams{TeamID: tid, UserID: uid, Role: string(role)}); err != nil {
				return err
			}
			meta["role"], meta["was"] = role, cur.Role
		case opRemove, opLeave:
			if err := q.RemoveMember(ctx, db.RemoveMemberParams{TeamID: tid, UserID: uid}); err != nil {
				return err
			}
			// Their default was this team: the oldest team left becomes it.
			if _, err := q.EnsureDefaultTeam(ctx, uid); err != nil {
				return err
			}
			meta["role"] = cur.Role
		}
		if err := core.Audit(ctx, q, p.In(teamID), "member."+string(op), "user", userID, meta); err != nil {
			return err
		}
		if op == opRemove || op == opLeave {
			return nil
		}
		m, err := q.LockTeamMember(ctx, db.LockTeamMemberParams{TeamID: tid, UserID: uid})
		if err != nil {
			return err
		}
		out = &Member{UserID: userID, Email: m.Email, Name: m.Name, Role: core.Role(m.Role), JoinedAt: m.JoinedAt}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s member of team %s: %w", op, teamID, err)
	}
	return out, nil
}

// UserMatch is what a user search shows of a user: enough to add them to a team.
type UserMatch struct{ ID, Email, Name string }

// SearchUsers finds users whose email starts with prefix (at least 3 characters; at
// most 10 matches), for an owner or admin of some team adding a member.
func (s *Service) SearchUsers(ctx context.Context, p *core.Principal, prefix string) ([]UserMatch, error) {
	uid, err := userUUID(p)
	if err != nil {
		return nil, err
	}
	prefix = strings.ToLower(strings.TrimSpace(prefix))
	if len([]rune(prefix)) < 3 {
		return nil, fmt.Errorf("%w: email: give at least 3 characters of the address", core.ErrInvalid)
	}
	if len(prefix) > 254 || strings.IndexByte(prefix, 0) >= 0 {
		return nil, fmt.Errorf("%w: email: not the start of an email address", core.ErrInvalid)
	}
	manages, err := s.q.ManagesAnyTeam(ctx, uid)
	if err != nil {
		return nil, fmt.Errorf("search users: %w", err)
	}
	if !manages {
		return nil, fmt.Errorf("%w: only owners and admins of a team search users (to add them)", core.ErrForbidden)
	}
	escaped := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(prefix)
	rows, err := s.q.SearchUsersByEmail(ctx, escaped+"%")
	if err != nil {
		return nil, fmt.Errorf("search users: %w", err)
	}
	out := make([]UserMatch, len(rows))
	for i, r := range rows {
		out[i] = UserMatch{ID: core.UUIDString(r.ID), Email: r.Email, Name: r.Name}
	}
	return out, nil
}
