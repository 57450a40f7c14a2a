package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/internal/pgtest"
)

// newQueries gives a migrated private database and its sqlc queries.
func newQueries(t *testing.T) (context.Context, *db.Queries, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	pool, err := Open(ctx, pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := Migrate(ctx, pool, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	return ctx, db.New(pool), pool
}

func must[T any](t *testing.T, what string) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
}

func wantNoRows(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, pgx.ErrNoRows) {
		t.Errorf("%s: %v, want no rows", what, err)
	}
}

func strp(s string) *string { return &s }

// fixture: a user with a default team A and a second team B; another user only in B.
type fixture struct {
	ann, bob     db.User
	teamA, teamB db.Team
}

func newFixture(t *testing.T, ctx context.Context, q *db.Queries) fixture {
	t.Helper()
	var f fixture
	f.ann = must[db.User](t, "create ann")(q.CreateUser(ctx, db.CreateUserParams{Email: "ann@example.com", Name: "Ann", PasswordHash: strp("$argon2id$x")}))
	f.bob = must[db.User](t, "create bob")(q.CreateUser(ctx, db.CreateUserParams{Email: "bob@example.com", Name: "Bob", IsAdmin: true}))
	f.teamA = must[db.Team](t, "create team A")(q.CreateTeam(ctx, db.CreateTeamParams{Name: "A", Slug: "aaaaaaaaaaaa"}))
	f.teamB = must[db.Team](t, "create team B")(q.CreateTeam(ctx, db.CreateTeamParams{Name: "B", Slug: "bbbbbbbbbbbb", IsBYOC: true}))
	for _, m := range []db.AddTeamMemberParams{
		{UserID: f.ann.ID, TeamID: f.teamA.ID, Role: "owner", IsDefault: true},
		{UserID: f.ann.ID, TeamID: f.teamB.ID, Role: "member"},
		{UserID: f.bob.ID, TeamID: f.teamB.ID, Role: "owner", IsDefault: true},
	} {
		must[db.UsersTeam](t, "add member")(q.AddTeamMember(ctx, m))
	}
	return f
}

func TestQueriesUsers(t *testing.T) {
	ctx, q, _ := newQueries(t)
	f := newFixture(t, ctx, q)
	if !f.ann.ID.Valid || f.ann.PasswordHash == nil || *f.ann.PasswordHash != "$argon2id$x" || f.ann.IsAdmin || f.ann.CreatedAt.IsZero() {
		t.Errorf("created ann: %+v", f.ann)
	}
	if f.bob.PasswordHash != nil || !f.bob.IsAdmin {
		t.Errorf("created bob (OAuth-style, admin): %+v", f.bob)
	}
	got := must[db.User](t, "by email")(q.GetUserByEmail(ctx, "ann@example.com"))
	if got.ID != f.ann.ID || got.Name != "Ann" {
		t.Errorf("by email: %+v", got)
	}
	got = must[db.User](t, "by id")(q.GetUserByID(ctx, f.bob.ID))
	if got.Email != "bob@example.com" {
		t.Errorf("by id: %+v", got)
	}
	_, err := q.GetUserByEmail(ctx, "nobody@example.com")
	wantNoRows(t, "unknown email", err)
	_, err = q.CreateUser(ctx, db.CreateUserParams{Email: "ann@example.com"})
	if err == nil {
		t.Error("duplicate email accepted")
	}
}

func TestQueriesTeams(t *testing.T) {
	ctx, q, pool := newQueries(t)
	f := newFixture(t, ctx, q)
	team := must[db.Team](t, "get team")(q.GetTeam(ctx, f.teamB.ID))
	if team.Slug != "bbbbbbbbbbbb" || !team.IsBYOC || team.DeletedAt != nil {
		t.Errorf("team B: %+v", team)
	}

	m := must[db.GetMembershipRow](t, "membership")(q.GetMembership(ctx, db.GetMembershipParams{UserID: f.ann.ID, TeamID: f.teamB.ID}))
	if m.Role != "member" || m.IsDefault {
		t.Errorf("ann in B: %+v", m)
	}
	_, err := q.GetMembership(ctx, db.GetMembershipParams{UserID: f.bob.ID, TeamID: f.teamA.ID})
	wantNoRows(t, "bob is not in team A", err)

	def := must[db.GetDefaultTeamRow](t, "default team")(q.GetDefaultTeam(ctx, f.ann.ID))
	if def.ID != f.teamA.ID || def.Role != "owner" || def.Slug != "aaaaaaaaaaaa" {
		t.Errorf("ann's default team: %+v", def)
	}
	def = must[db.GetDefaultTeamRow](t, "default team")(q.GetDefaultTeam(ctx, f.bob.ID))
	if def.ID != f.teamB.ID || !def.IsBYOC {
		t.Errorf("bob's default team: %+v", def)
	}
	// A second default for the same user is refused by the schema.
	extra := must[db.Team](t, "create team C")(q.CreateTeam(ctx, db.CreateTeamParams{Name: "C", Slug: "cccccccccccc"}))
	if _, err := q.AddTeamMember(ctx, db.AddTeamMemberParams{UserID: f.ann.ID, TeamID: extra.ID, Role: "admin", IsDefault: true}); err == nil {
		t.Error("second default team accepted")
	}

	teams := must[[]db.ListUserTeamsRow](t, "list teams")(q.ListUserTeams(ctx, f.ann.ID))
	if len(teams) != 2 || teams[0].ID != f.teamA.ID || !teams[0].IsDefault || teams[0].Role != "owner" ||
		teams[1].ID != f.teamB.ID || teams[1].Role != "member" {
		t.Errorf("ann's teams: %+v", teams)
	}

	// A deleted team disappears from every lookup.
	if _, err := pool.Exec(ctx, `UPDATE teams SET deleted_at = now() WHERE id = $1`, f.teamB.ID); err != nil {
		t.Fatal(err)
	}
	_, err = q.GetTeam(ctx, f.teamB.ID)
	wantNoRows(t, "deleted team", err)
	_, err = q.GetMembership(ctx, db.GetMembershipParams{UserID: f.ann.ID, TeamID: f.teamB.ID})
	wantNoRows(t, "membership of a deleted team", err)
	_, err = q.GetDefaultTeam(ctx, f.bob.ID)
	wantNoRows(t, "deleted default team", err)
	teams = must[[]db.ListUserTeamsRow](t, "list teams")(q.ListUserTeams(ctx, f.ann.ID))
	if len(teams) != 1 || teams[0].ID != f.teamA.ID {
		t.Errorf("ann's teams after B was deleted: %+v", teams)
	}
	if teams := must[[]db.ListUserTeamsRow](t, "list teams")(q.ListUserTeams(ctx, f.bob.ID)); teams == nil || len(teams) != 0 {
		t.Errorf("bob's teams: %#v, want an empty slice", teams)
	}
}

func TestQueriesAPIKeys(t *testing.T) {
	ctx, q, pool := newQueries(t)
	f := newFixture(t, ctx, q)
	hash := func(key string) []byte { h := sha256.Sum256([]byte(key)); return h[:] }

	keyA := must[db.CreateAPIKeyRow](t, "create key A")(q.CreateAPIKey(ctx, db.CreateAPIKeyParams{
		TeamID: f.teamA.ID, Name: "ci", KeyHash: hash("wrn_a"), KeyPrefix: "wrn_a", CreatedBy: f.ann.ID}))
	if !keyA.ID.Valid || keyA.CreatedBy != f.ann.ID || keyA.LastUsedAt != nil || keyA.RevokedAt != nil {
		t.Errorf("created key: %+v", keyA)
	}
	keyA2 := must[db.CreateAPIKeyRow](t, "create key A2")(q.CreateAPIKey(ctx, db.CreateAPIKeyParams{
		TeamID: f.teamA.ID, Name: "laptop", KeyHash: hash("wrn_a2"), KeyPrefix: "wrn_a2"}))
	if keyA2.CreatedBy.Valid {
		t.Errorf("key without creator: %+v", keyA2)
	}
	must[db.CreateAPIKeyRow](t, "create key B")(q.CreateAPIKey(ctx, db.CreateAPIKeyParams{
		TeamID: f.teamB.ID, Name: "b", KeyHash: hash("wrn_b"), KeyPrefix: "wrn_b", CreatedBy: f.bob.ID}))

	got := must[db.GetAPIKeyByHashRow](t, "by hash")(q.GetAPIKeyByHash(ctx, hash("wrn_a")))
	if got.ID != keyA.ID || got.TeamID != f.teamA.ID || got.TeamSlug != "aaaaaaaaaaaa" || got.Name != "ci" {
		t.Errorf("by hash: %+v", got)
	}
	_, err := q.GetAPIKeyByHash(ctx, hash("wrn_unknown"))
	wantNoRows(t, "unknown key", err)

	list := must[[]db.ListAPIKeysRow](t, "list A")(q.ListAPIKeys(ctx, f.teamA.ID))
	if len(list) != 2 || list[0].TeamID != f.teamA.ID || list[1].TeamID != f.teamA.ID {
		t.Errorf("team A's keys: %+v", list)
	}

	// Touch records use, then holds off for a minute.
	if n := must[int64](t, "touch")(q.TouchAPIKey(ctx, db.TouchAPIKeyParams{ID: keyA.ID, TeamID: f.teamA.ID})); n != 1 {
		t.Errorf("first touch: %d rows", n)
	}
	if n := must[int64](t, "touch")(q.TouchAPIKey(ctx, db.TouchAPIKeyParams{ID: keyA.ID, TeamID: f.teamA.ID})); n != 0 {
		t.Errorf("second touch within a minute: %d rows, want 0", n)
	}
	if n := must[int64](t, "touch")(q.TouchAPIKey(ctx, db.TouchAPIKeyParams{ID: keyA.ID, TeamID: f.teamB.ID})); n != 0 {
		t.Errorf("touch through team B: %d rows", n)
	}
	if got := must[db.GetAPIKeyByHashRow](t, "by hash")(q.GetAPIKeyByHash(ctx, hash("wrn_a"))); got.LastUsedAt == nil {
		t.Error("last_used_at not set by touch")
	}

	// Team B cannot revoke team A's key; team A can, once.
	if n := must[int64](t, "revoke")(q.RevokeAPIKey(ctx, db.RevokeAPIKeyParams{ID: keyA.ID, TeamID: f.teamB.ID})); n != 0 {
		t.Errorf("team B revoked team A's key: %d rows", n)
	}
	must[db.GetAPIKeyByHashRow](t, "key A after B's attempt")(q.GetAPIKeyByHash(ctx, hash("wrn_a")))
	if n := must[int64](t, "revoke")(q.RevokeAPIKey(ctx, db.RevokeAPIKeyParams{ID: keyA.ID, TeamID: f.teamA.ID})); n != 1 {
		t.Errorf("revoke: %d rows", n)
	}
	if n := must[int64](t, "revoke")(q.RevokeAPIKey(ctx, db.RevokeAPIKeyParams{ID: keyA.ID, TeamID: f.teamA.ID})); n != 0 {
		t.Errorf("second revoke: %d rows, want 0", n)
	}
	_, err = q.GetAPIKeyByHash(ctx, hash("wrn_a"))
	wantNoRows(t, "revoked key", err)
	list = must[[]db.ListAPIKeysRow](t, "list A")(q.ListAPIKeys(ctx, f.teamA.ID))
	if len(list) != 1 || list[0].ID != keyA2.ID {
		t.Errorf("team A's keys after revoke: %+v", list)
	}

	// A deleted team's keys stop working.
	must[db.GetAPIKeyByHashRow](t, "key B")(q.GetAPIKeyByHash(ctx, hash("wrn_b")))
	if _, err := pool.Exec(ctx, `UPDATE teams SET deleted_at = now() WHERE id = $1`, f.teamB.ID); err != nil {
		t.Fatal(err)
	}
	_, err = q.GetAPIKeyByHash(ctx, hash("wrn_b"))
	wantNoRows(t, "key of a deleted team", err)
}

func TestQueriesSandboxes(t *testing.T) {
	ctx, q, _ := newQueries(t)
	f := newFixture(t, ctx, q)
	create := func(id string, team pgtype.UUID, meta []byte) db.Sandbox {
		t.Helper()
		return must[db.Sandbox](t, "create "+id)(q.CreateSandbox(ctx, db.CreateSandboxParams{
			ID: id, TeamID: team, Template: "base", Status: "pending", Vcpus: 2, MemoryMB: 512, TimeoutSec: 300,
			AllowInternetAccess: true, Metadata: meta}))
	}
	sb1 := create("sb000000000000000001", f.teamA.ID, nil)
	if string(sb1.Metadata) != "{}" || sb1.HostIP != nil || sb1.StartedAt != nil || sb1.Vcpus != 2 || sb1.MemoryMB != 512 {
		t.Errorf("created: %+v", sb1)
	}
	sb2 := create("sb000000000000000002", f.teamA.ID, []byte(`{"owner":"ci"}`))
	if string(sb2.Metadata) != `{"owner": "ci"}` {
		t.Errorf("metadata: %s", sb2.Metadata)
	}
	create("sb000000000000000003", f.teamB.ID, nil)

	got := must[db.Sandbox](t, "get")(q.GetSandbox(ctx, db.GetSandboxParams{ID: sb1.ID, TeamID: f.teamA.ID}))
	if got.ID != sb1.ID || got.Status != "pending" {
		t.Errorf("get: %+v", got)
	}
	_, err := q.GetSandbox(ctx, db.GetSandboxParams{ID: sb1.ID, TeamID: f.teamB.ID})
	wantNoRows(t, "team B gets team A's sandbox", err)

	list := must[[]db.Sandbox](t, "list A")(q.ListSandboxes(ctx, db.ListSandboxesParams{TeamID: f.teamA.ID, MaxRows: 100}))
	if len(list) != 2 || list[0].TeamID != f.teamA.ID || list[1].TeamID != f.teamA.ID {
		t.Errorf("team A's sandboxes: %+v", list)
	}
	if list := must[[]db.Sandbox](t, "list B")(q.ListSandboxes(ctx, db.ListSandboxesParams{TeamID: f.teamB.ID, MaxRows: 100})); len(list) != 1 || list[0].ID != "sb000000000000000003" {
		t.Errorf("team B's sandboxes: %+v", list)
	}
	if list := must[[]db.Sandbox](t, "list A, running only")(q.ListSandboxes(ctx, db.ListSandboxesParams{TeamID: f.teamA.ID, Statuses: []string{"running"}, MaxRows: 100})); len(list) != 0 {
		t.Errorf("team A's running sandboxes (all pending): %+v", list)
	}
	if list := must[[]db.Sandbox](t, "list A, limit 1")(q.ListSandboxes(ctx, db.ListSandboxesParams{TeamID: f.teamA.ID, MaxRows: 1})); len(list) != 1 {
		t.Errorf("limit 1: %+v", list)
	}

	// Team B cannot change team A's sandbox.
	_, err = q.UpdateSandboxStatus(ctx, db.UpdateSandboxStatusParams{ID: sb1.ID, TeamID: f.teamB.ID, Status: "stopped"})
	wantNoRows(t, "team B stops team A's sandbox", err)

	up := must[db.Sandbox](t, "starting")(q.UpdateSandboxStatus(ctx, db.UpdateSandboxStatusParams{ID: sb1.ID, TeamID: f.teamA.ID, Status: "starting", HostIP: strp("10.11.0.2")}))
	if up.Status != "starting" || up.HostIP == nil || *up.HostIP != "10.11.0.2" || up.StartedAt != nil {
		t.Errorf("starting: %+v", up)
	}
	up = must[db.Sandbox](t, "running")(q.UpdateSandboxStatus(ctx, db.UpdateSandboxStatusParams{ID: sb1.ID, TeamID: f.teamA.ID, Status: "running"}))
	if up.Status != "running" || up.HostIP == nil || *up.HostIP != "10.11.0.2" || up.StartedAt == nil || up.LastActiveAt == nil || up.StoppedAt != nil {
		t.Errorf("running (host ip kept): %+v", up)
	}
	started := *up.StartedAt
	up = must[db.Sandbox](t, "paused")(q.UpdateSandboxStatus(ctx, db.UpdateSandboxStatusParams{ID: sb1.ID, TeamID: f.teamA.ID, Status: "paused"}))
	up = must[db.Sandbox](t, "running again")(q.UpdateSandboxStatus(ctx, db.UpdateSandboxStatusParams{ID: sb1.ID, TeamID: f.teamA.ID, Status: "running"}))
	if !up.StartedAt.Equal(started) {
		t.Errorf("resume moved started_at: %v -> %v", started, up.StartedAt)
	}
	up = must[db.Sandbox](t, "error")(q.UpdateSandboxStatus(ctx, db.UpdateSandboxStatusParams{ID: sb1.ID, TeamID: f.teamA.ID, Status: "error", Error: strp("guest crashed")}))
	if up.Status != "error" || up.Error == nil || *up.Error != "guest crashed" || up.StoppedAt == nil {
		t.Errorf("error: %+v", up)
	}
	stopped := *up.StoppedAt
	up = must[db.Sandbox](t, "stopped")(q.UpdateSandboxStatus(ctx, db.UpdateSandboxStatusParams{ID: sb1.ID, TeamID: f.teamA.ID, Status: "stopped"}))
	if up.Error != nil || !up.StoppedAt.Equal(stopped) {
		t.Errorf("stopped (error cleared, stopped_at kept): %+v", up)
	}
	if _, err := q.UpdateSandboxStatus(ctx, db.UpdateSandboxStatusParams{ID: sb2.ID, TeamID: f.teamA.ID, Status: "bogus"}); err == nil {
		t.Error("unknown status accepted")
	}
	if list := must[[]db.Sandbox](t, "list")(q.ListSandboxes(ctx, db.ListSandboxesParams{TeamID: pgtype.UUID{Bytes: [16]byte{1}, Valid: true}, MaxRows: 10})); list == nil || len(list) != 0 {
		t.Errorf("unknown team's sandboxes: %#v, want an empty slice", list)
	}
}

// A pause's and resume's steps apply only from the states they start in (a concurrent
// destroy wins); paused has no address and a paused_at that a failed resume keeps.
func TestQueriesTransitionSandbox(t *testing.T) {
	ctx, q, _ := newQueries(t)
	f := newFixture(t, ctx, q)
	sb := must[db.Sandbox](t, "create")(q.CreateSandbox(ctx, db.CreateSandboxParams{
		ID: "sb000000000000000001", TeamID: f.teamA.ID, Template: "base", Status: "running", Vcpus: 1, MemoryMB: 512, AllowInternetAccess: true}))
	step := func(to string, from ...string) (db.Sandbox, error) {
		return q.TransitionSandbox(ctx, db.TransitionSandboxParams{ID: sb.ID, TeamID: f.teamA.ID, Status: to, FromStatuses: from, HostIP: strp("10.11.0.9")})
	}
	_, err := step("paused", "pausing")
	wantNoRows(t, "paused from running, wanting pausing", err)
	_, err = q.TransitionSandbox(ctx, db.TransitionSandboxParams{ID: sb.ID, TeamID: f.teamB.ID, Status: "pausing", FromStatuses: []string{"running"}})
	wantNoRows(t, "team B pauses team A's sandbox", err)
	must[db.Sandbox](t, "pausing")(step("pausing", "running"))
	up := must[db.Sandbox](t, "paused")(step("paused", "pausing"))
	if up.Status != "paused" || up.PausedAt == nil || up.HostIP != nil {
		t.Errorf("paused: %+v", up)
	}
	pausedAt := *up.PausedAt
	must[db.Sandbox](t, "resuming")(step("resuming", "paused"))
	up = must[db.Sandbox](t, "failed resume")(step("paused", "resuming"))
	if up.PausedAt == nil || !up.PausedAt.Equal(pausedAt) {
		t.Errorf("a failed resume moved paused_at: %v -> %v", pausedAt, up.PausedAt)
	}
	up = must[db.Sandbox](t, "running")(q.TransitionSandbox(ctx, db.TransitionSandboxParams{
		ID: sb.ID, TeamID: f.teamA.ID, Status: "running", FromStatuses: []string{"paused"}, HostIP: strp("10.11.0.7"), TimeoutSec: new(int32(60))}))
	if up.PausedAt != nil || up.HostIP == nil || *up.HostIP != "10.11.0.7" || up.TimeoutSec != 60 || up.LastActiveAt == nil {
		t.Errorf("resumed: %+v", up)
	}
	must[db.Sandbox](t, "stopped")(q.UpdateSandboxStatus(ctx, db.UpdateSandboxStatusParams{ID: sb.ID, TeamID: f.teamA.ID, Status: "stopped"}))
	_, err = step("paused", "pausing", "running", "paused")
	wantNoRows(t, "a pause ending after a destroy", err)
}

func TestQueriesAuditLogs(t *testing.T) {
	ctx, q, _ := newQueries(t)
	f := newFixture(t, ctx, q)
	key := must[db.CreateAPIKeyRow](t, "key")(q.CreateAPIKey(ctx, db.CreateAPIKeyParams{
		TeamID: f.teamA.ID, Name: "ci", KeyHash: make([]byte, 32), KeyPrefix: "wrn_0"}))
	var ids []int64
	for i, action := range []string{"user.login", "api_key.create", "sandbox.create", "sandbox.destroy", "api_key.revoke"} {
		p := db.InsertAuditLogParams{TeamID: f.teamA.ID, ActorUserID: f.ann.ID, Action: action, ResourceType: "sandbox", ResourceID: "sb000000000000000001"}
		if i == 2 {
			p.ActorUserID, p.ActorAPIKeyID, p.Metadata = pgtype.UUID{}, key.ID, []byte(`{"template":"base"}`)
		}
		e := must[db.AuditLog](t, "insert")(q.InsertAuditLog(ctx, p))
		if e.ID == 0 || e.Action != action || e.CreatedAt.IsZero() || (i != 2 && string(e.Metadata) != "{}") {
			t.Errorf("inserted: %+v", e)
		}
		ids = append(ids, e.ID)
	}
	must[db.AuditLog](t, "insert B")(q.InsertAuditLog(ctx, db.InsertAuditLogParams{TeamID: f.teamB.ID, Action: "user.login", ResourceType: "user"}))

	actions := func(es []db.ListAuditLogsRow) (out []string) {
		for _, e := range es {
			out = append(out, e.Action)
		}
		return out
	}
	page1 := must[[]db.ListAuditLogsRow](t, "page 1")(q.ListAuditLogs(ctx, db.ListAuditLogsParams{TeamID: f.teamA.ID, MaxRows: 2}))
	if len(page1) != 2 || page1[0].ID != ids[4] || page1[1].ID != ids[3] {
		t.Fatalf("page 1: %v", actions(page1))
	}
	page2 := must[[]db.ListAuditLogsRow](t, "page 2")(q.ListAuditLogs(ctx, db.ListAuditLogsParams{TeamID: f.teamA.ID, MaxRows: 2, Before: &page1[1].CreatedAt, BeforeID: &page1[1].ID}))
	if len(page2) != 2 || page2[0].ID != ids[2] || page2[1].ID != ids[1] {
		t.Fatalf("page 2: %v", actions(page2))
	}
	if page2[0].ActorAPIKeyID != key.ID || page2[0].ActorUserID.Valid || string(page2[0].Metadata) != `{"template": "base"}` {
		t.Errorf("API-key entry: %+v", page2[0])
	}
	page3 := must[[]db.ListAuditLogsRow](t, "page 3")(q.ListAuditLogs(ctx, db.ListAuditLogsParams{TeamID: f.teamA.ID, MaxRows: 2, Before: &page2[1].CreatedAt, BeforeID: &page2[1].ID}))
	if len(page3) != 1 || page3[0].ID != ids[0] {
		t.Fatalf("page 3: %v", actions(page3))
	}
	page4 := must[[]db.ListAuditLogsRow](t, "page 4")(q.ListAuditLogs(ctx, db.ListAuditLogsParams{TeamID: f.teamA.ID, MaxRows: 2, Before: &page3[0].CreatedAt, BeforeID: &page3[0].ID}))
	if page4 == nil || len(page4) != 0 {
		t.Errorf("page 4: %#v, want an empty slice", page4)
	}
	if b := must[[]db.ListAuditLogsRow](t, "team B")(q.ListAuditLogs(ctx, db.ListAuditLogsParams{TeamID: f.teamB.ID, MaxRows: 100})); len(b) != 1 || b[0].TeamID != f.teamB.ID {
		t.Errorf("team B's log: %v", actions(b))
	}
}
