package api_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/server/sandboxes"
	"github.com/wrennhq/wrenn/internal/server/servertest"
)

// doomedTeam is a team made for deletion: its owner's and a member's tokens for it,
// and its API key.
type doomedTeam struct {
	id                   string
	owner, member, key   call
	ownerSess, memberSes map[string]any // their signups' sessions (their own teams)
}

func newDoomedTeam(t *testing.T, anon call, prefix string) doomedTeam {
	t.Helper()
	owner := signup(anon, prefix+"-owner@example.com")
	mem := signup(anon, prefix+"-member@example.com")
	oc := anon.bearer(owner["token"].(string))
	status, team := oc.do("POST", "/v1/teams", `{"name":"Doomed"}`)
	if status != 201 {
		t.Fatalf("create team: %d %v", status, team)
	}
	d := doomedTeam{id: team["id"].(string), ownerSess: owner, memberSes: mem}
	if status, body := oc.do("POST", "/v1/teams/"+d.id+"/members", `{"email":"`+prefix+`-member@example.com"}`); status != 201 {
		t.Fatalf("add member: %d %v", status, body)
	}
	switchTo := func(s map[string]any) call {
		status, sess := anon.bearer(s["token"].(string)).do("POST", "/v1/auth/switch-team", `{"team_id":"`+d.id+`"}`)
		if status != 200 {
			t.Fatalf("switch: %d %v", status, sess)
		}
		return anon.bearer(sess["token"].(string))
	}
	d.owner, d.member = switchTo(owner), switchTo(mem)
	_, key := d.owner.do("POST", "/v1/api-keys", `{"name":"doomed"}`)
	d.key = anon.with("X-API-Key", key["key"].(string))
	return d
}

func (d doomedTeam) sandbox(t *testing.T) string {
	t.Helper()
	status, sb := d.key.do("POST", "/v1/sandboxes", `{}`)
	if status != 201 {
		t.Fatalf("create sandbox: %d %v", status, sb)
	}
	return sb["id"].(string)
}

// Deleting a team with running sandboxes and a snapshot on a host that answers: they
// are gone from the host before the answer, every credential of the team is dead, the
// next login goes to another team, and the team's audit trail stays for platform
// admins.
func TestDeleteTeam(t *testing.T) {
	env := servertest.New(t)
	ctx := context.Background()
	anon := newCall(t, env)
	_, admin := platformAdmin(t, env, anon, "deleter-admin@example.com")
	d := newDoomedTeam(t, anon, "deleter")
	ids := []string{d.sandbox(t), d.sandbox(t)}
	if status, body := d.key.do("POST", "/v1/snapshots", `{"sandbox_id":"`+ids[0]+`","name":"keep-me"}`); status != 201 {
		t.Fatalf("snapshot: %d %v", status, body)
	}
	hostSnapshots := func() int {
		list, err := env.Agent.Manager.ListSnapshots()
		if err != nil {
			t.Fatal(err)
		}
		return len(list)
	}
	if hostSnapshots() != 1 {
		t.Fatalf("the host holds %d snapshots before the delete", hostSnapshots())
	}

	if status, body := d.member.do("DELETE", "/v1/teams/"+d.id, ""); status != 403 {
		t.Errorf("a member deletes the team: %d %v", status, body)
	}
	if status, body := d.owner.do("DELETE", "/v1/teams/"+d.id, ""); status != 204 {
		t.Fatalf("the owner deletes the team: %d %v", status, body)
	}
	for _, id := range ids {
		if slices.Contains(env.Agent.SandboxIDs(), id) {
			t.Errorf("sandbox %s still on its host after the team's delete", id)
		}
		var status string
		if err := env.DB.QueryRow(ctx, `SELECT status FROM sandboxes WHERE id = $1`, id).Scan(&status); err != nil || status != "stopped" {
			t.Errorf("sandbox %s recorded %q (%v), want stopped", id, status, err)
		}
	}
	if n := hostSnapshots(); n != 0 {
		t.Errorf("the host still holds %d snapshots of the deleted team", n)
	}
	var templates int
	if err := env.DB.QueryRow(ctx, `SELECT count(*) FROM templates WHERE team_id = $1`, d.id).Scan(&templates); err != nil || templates != 0 {
		t.Errorf("%d template records of the deleted team left (%v)", templates, err)
	}
	for name, c := range map[string]call{"API key": d.key, "owner's token": d.owner, "member's token": d.member} {
		if status, body := c.do("GET", "/v1/sandboxes", ""); status != 401 {
			t.Errorf("%s for the deleted team: %d %v", name, status, body)
		}
	}
	owner := anon.bearer(d.ownerSess["token"].(string))
	if status, _ := owner.do("GET", "/v1/teams/"+d.id, ""); status != 404 {
		t.Errorf("GET the deleted team: %d", status)
	}
	if status, _ := owner.do("DELETE", "/v1/teams/"+d.id, ""); status != 404 {
		t.Errorf("delete it again: %d", status)
	}
	status, page := admin.do("GET", "/v1/admin/audit-logs?team_id="+d.id+"&limit=200", "")
	actions := map[string]bool{}
	for _, e := range page["audit_logs"].([]any) {
		entry := e.(map[string]any)
		actions[entry["action"].(string)] = true
		if entry["team_id"] != d.id {
			t.Errorf("an entry of another team in the deleted team's trail: %v", entry)
		}
	}
	for _, want := range []string{"team.create", "member.add", "sandbox.create", "snapshot.create", "team.delete", "snapshot.delete"} {
		if status != 200 || !actions[want] {
			t.Errorf("the deleted team's audit trail lacks %s: %d %v", want, status, actions)
		}
	}
}

// A deleted team that was someone's default: their next login picks another team
// they are in; a user left in no team at all gets a new personal team.
func TestLoginAfterDefaultTeamGone(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	login := func(email string) map[string]any {
		t.Helper()
		status, s := anon.do("POST", "/v1/auth/login", `{"email":"`+email+`","password":"correct horse battery"}`)
		if status != 200 {
			t.Fatalf("login %s: %d %v", email, status, s)
		}
		return s
	}
	d := newDoomedTeam(t, anon, "fallback")
	// The member's own (default) team goes; they are left in the doomed team.
	mine := anon.bearer(d.memberSes["token"].(string))
	if status, body := mine.do("DELETE", "/v1/teams/"+d.memberSes["team_id"].(string), ""); status != 204 {
		t.Fatalf("delete the member's personal team: %d %v", status, body)
	}
	if s := login("fallback-member@example.com"); s["team_id"] != d.id || s["role"] != "member" {
		t.Errorf("login after the default team's delete: %v, want team %s", s, d.id)
	}
	_, me := anon.bearer(login("fallback-member@example.com")["token"].(string)).do("GET", "/v1/me", "")
	if teams := me["teams"].([]any); len(teams) != 1 || teams[0].(map[string]any)["is_default"] != true {
		t.Errorf("the remaining team is the default now: %v", me)
	}
	// Then that team goes too: the next login makes a personal team.
	if status, body := d.owner.do("DELETE", "/v1/teams/"+d.id, ""); status != 204 {
		t.Fatalf("delete the doomed team: %d %v", status, body)
	}
	s := login("fallback-member@example.com")
	if s["team_id"] == d.id || s["team_id"] == d.memberSes["team_id"] || s["role"] != "owner" {
		t.Errorf("login in no team: %v, want a new team they own", s)
	}
}

// A team deleted while one of its hosts does not answer: what is there is recorded
// and the host monitor removes it when the host is back — the sandbox, the snapshot's
// files and record, and the team's own host itself.
func TestDeleteTeamUnreachableHost(t *testing.T) {
	env := servertest.New(t)
	ctx := context.Background()
	anon := newCall(t, env)
	_, admin := platformAdmin(t, env, anon, "unreach-admin@example.com")
	d := newDoomedTeam(t, anon, "unreach")
	setBYOC(t, admin, d.id, true)
	hostID, agent := env.AddHost(t, d.id)
	sb := d.sandbox(t)
	if !slices.Contains(agent.SandboxIDs(), sb) {
		t.Fatalf("the BYOC team's sandbox is not on its own host")
	}
	if status, body := d.key.do("POST", "/v1/snapshots", `{"sandbox_id":"`+sb+`","name":"left-behind"}`); status != 201 {
		t.Fatalf("snapshot: %d %v", status, body)
	}
	setStatus := func(status string) {
		if _, err := env.DB.Exec(ctx, `UPDATE hosts SET status = $2 WHERE id = $1`, hostID, status); err != nil {
			t.Fatal(err)
		}
	}
	setStatus("unreachable")
	if status, body := d.owner.do("DELETE", "/v1/teams/"+d.id, ""); status != 204 {
		t.Fatalf("delete the team: %d %v", status, body)
	}
	var sbStatus string
	var templates int
	var hostDeleted bool
	read := func() {
		t.Helper()
		if err := env.DB.QueryRow(ctx, `SELECT status FROM sandboxes WHERE id = $1`, sb).Scan(&sbStatus); err != nil {
			t.Fatal(err)
		}
		if err := env.DB.QueryRow(ctx, `SELECT count(*) FROM templates WHERE team_id = $1`, d.id).Scan(&templates); err != nil {
			t.Fatal(err)
		}
		if err := env.DB.QueryRow(ctx, `SELECT deleted_at IS NOT NULL FROM hosts WHERE id = $1`, hostID).Scan(&hostDeleted); err != nil {
			t.Fatal(err)
		}
	}
	read()
	if sbStatus != "stopped" || templates != 1 || hostDeleted || !slices.Contains(agent.SandboxIDs(), sb) {
		t.Fatalf("after the delete with the host away: sandbox %s (on host: %t), %d snapshot records, host deleted %t; want stopped, still running there, 1, false",
			sbStatus, slices.Contains(agent.SandboxIDs(), sb), templates, hostDeleted)
	}
	// Rounds while the host is away change nothing and lose nothing.
	env.Service.Sandboxes.MonitorRound(ctx, sandboxes.MonitorConfig{Grace: time.Nanosecond})
	if read(); templates != 1 || hostDeleted {
		t.Fatalf("a round with the host away: %d snapshot records, host deleted %t", templates, hostDeleted)
	}
	setStatus("online")
	env.Service.Sandboxes.MonitorRound(ctx, sandboxes.MonitorConfig{Grace: time.Nanosecond})
	snaps, err := agent.Manager.ListSnapshots()
	if err != nil {
		t.Fatal(err)
	}
	read()
	if on := slices.Contains(agent.SandboxIDs(), sb); on || len(snaps) != 0 || templates != 0 || !hostDeleted {
		t.Errorf("after a round with the host back: sandbox on host %t, %d snapshots on host, %d records, host deleted %t; want false, 0, 0, true",
			on, len(snaps), templates, hostDeleted)
	}
	if n := len(agent.SandboxIDs()); n != 0 {
		t.Errorf("%d sandboxes left on the deleted team's host", n)
	}
}
