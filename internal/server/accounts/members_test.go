package accounts

import (
	"errors"
	"testing"

	"github.com/wrennhq/wrenn/internal/server/core"
)

// Every membership rule, judged alone (the API tests run them through the routes).
func TestCheckMembershipChange(t *testing.T) {
	const (
		o, a, m = core.Owner, core.Admin, core.Member
	)
	for _, c := range []struct {
		name string
		c    membershipChange
		want error // nil: allowed
	}{
		{"owner adds owner", membershipChange{op: opAdd, actor: o, newRole: o, ownersNow: 1}, nil},
		{"admin adds admin", membershipChange{op: opAdd, actor: a, newRole: a, ownersNow: 1}, nil},
		{"admin adds owner", membershipChange{op: opAdd, actor: a, newRole: o, ownersNow: 1}, core.ErrForbidden},
		{"member adds member", membershipChange{op: opAdd, actor: m, newRole: m, ownersNow: 1}, core.ErrForbidden},
		{"add a member twice", membershipChange{op: opAdd, actor: o, target: m, newRole: m, ownersNow: 1}, core.ErrConflict},
		{"add with a made-up role", membershipChange{op: opAdd, actor: o, newRole: "root", ownersNow: 1}, core.ErrInvalid},
		{"own role", membershipChange{op: opRole, actor: o, self: true, target: o, newRole: a, ownersNow: 2}, core.ErrForbidden},
		{"owner demotes owner", membershipChange{op: opRole, actor: o, target: o, newRole: m, ownersNow: 2}, nil},
		{"demote the last owner", membershipChange{op: opRole, actor: o, target: o, newRole: m, ownersNow: 1}, core.ErrConflict},
		{"admin demotes owner", membershipChange{op: opRole, actor: a, target: o, newRole: a, ownersNow: 2}, core.ErrForbidden},
		{"admin promotes to owner", membershipChange{op: opRole, actor: a, target: m, newRole: o, ownersNow: 1}, core.ErrForbidden},
		{"admin promotes to admin", membershipChange{op: opRole, actor: a, target: m, newRole: a, ownersNow: 1}, nil},
		{"admin demotes admin", membershipChange{op: opRole, actor: a, target: a, newRole: m, ownersNow: 1}, nil},
		{"member changes a role", membershipChange{op: opRole, actor: m, target: m, newRole: a, ownersNow: 1}, core.ErrForbidden},
		{"owner removes owner", membershipChange{op: opRemove, actor: o, target: o, ownersNow: 2}, nil},
		{"remove the last owner", membershipChange{op: opRemove, actor: o, target: o, ownersNow: 1}, core.ErrConflict},
		{"admin removes owner", membershipChange{op: opRemove, actor: a, target: o, ownersNow: 2}, core.ErrForbidden},
		{"admin removes member", membershipChange{op: opRemove, actor: a, target: m, ownersNow: 1}, nil},
		{"member removes member", membershipChange{op: opRemove, actor: m, target: m, ownersNow: 1}, core.ErrForbidden},
		{"remove oneself", membershipChange{op: opRemove, actor: a, self: true, target: a, ownersNow: 1}, core.ErrInvalid},
		{"member leaves", membershipChange{op: opLeave, actor: m, self: true, target: m, ownersNow: 1}, nil},
		{"an owner of two leaves", membershipChange{op: opLeave, actor: o, self: true, target: o, ownersNow: 2}, nil},
		{"the last owner leaves", membershipChange{op: opLeave, actor: o, self: true, target: o, ownersNow: 1}, core.ErrConflict},
	} {
		err := checkMembershipChange(c.c)
		if (c.want == nil) != (err == nil) || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// Slugs: the name's ASCII letters and digits, hyphens between, a random suffix.
func TestTeamSlug(t *testing.T) {
	for name, prefix := range map[string]string{"Acme Corp": "acme-corp-", "--x--": "x-", "チーム": "team-", "A1 b2": "a1-b2-"} {
		s, err := teamSlug(name)
		if err != nil || len(s) != len(prefix)+6 || s[:len(prefix)] != prefix {
			t.Errorf("slug of %q: %q %v, want %q and 6 hex", name, s, err, prefix)
		}
	}
	long, _ := teamSlug("abcdefghij abcdefghij abcdefghij abcdefghij abcdefghij")
	if len(long) > 47 {
		t.Errorf("long slug %q", long)
	}
}
