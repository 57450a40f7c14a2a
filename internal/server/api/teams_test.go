package api_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/wrennhq/wrenn/internal/server/accounts"
	"github.com/wrennhq/wrenn/internal/server/servertest"
)

// teamCast is one team with a member of every role, and users outside it, each with
// their own signup token (team routes take the team from the path, not the token).
type teamCast struct {
	team                        string
	owner, owner2, admin, membr call
	outsider, key               call
	ids                         map[string]string // role name -> user id
	newbie                      string            // an email not in the team
}

type castUsers struct {
	anon                                        call
	owner, owner2, admin, membr, outsider, newb map[string]any
}

func newCastUsers(t *testing.T, env *servertest.Env, prefix string) castUsers {
	anon := newCall(t, env)
	u := castUsers{anon: anon}
	for _, p := range []struct {
		dst  *map[string]any
		name string
	}{{&u.owner, "owner"}, {&u.owner2, "owner2"}, {&u.admin, "admin"}, {&u.membr, "member"}, {&u.outsider, "outsider"}, {&u.newb, "newbie"}} {
		*p.dst = signup(anon, prefix+"-"+p.name+"@example.com")
	}
	return u
}

// cast makes a fresh team owned by u.owner with owner2, admin and member added.
func (u castUsers) cast(t *testing.T, prefix string) teamCast {
	t.Helper()
	tok := func(s map[string]any) call { return u.anon.bearer(s["token"].(string)) }
	c := teamCast{owner: tok(u.owner), owner2: tok(u.owner2), admin: tok(u.admin), membr: tok(u.membr), outsider: tok(u.outsider),
		ids:    map[string]string{"owner": u.owner["user_id"].(string), "owner2": u.owner2["user_id"].(string), "admin": u.admin["user_id"].(string), "member": u.membr["user_id"].(string)},
		newbie: prefix + "-newbie@example.com"}
	status, team := c.owner.do("POST", "/v1/teams", `{"name":"Cast"}`)
	if status != 201 {
		t.Fatalf("create team: %d %v", status, team)
	}
	c.team = team["id"].(string)
	for _, m := range []struct{ who, role string }{{"owner2", "owner"}, {"admin", "admin"}, {"member", "member"}} {
		email := prefix + "-" + m.who + "@example.com"
		if status, body := c.owner.do("POST", "/v1/teams/"+c.team+"/members", fmt.Sprintf(`{"email":%q,"role":%q}`, email, m.role)); status != 201 || body["role"] != m.role {
			t.Fatalf("add %s as %s: %d %v", email, m.role, status, body)
		}
	}
	// The team's API key, made in the team by switching into it.
	_, sess := c.owner.do("POST", "/v1/auth/switch-team", `{"team_id":"`+c.team+`"}`)
	_, key := u.anon.bearer(sess["token"].(string)).do("POST", "/v1/api-keys", `{"name":"k"}`)
	c.key = u.anon.with("X-API-Key", key["key"].(string))
	return c
}

// TestTeamRoleMatrix: every team and member route as owner, admin, member, a user of
// another team and the team's API key, each on a fresh team so that one change does
// not decide the next.
func TestTeamRoleMatrix(t *testing.T) {
	env := servertest.New(t)
	u := newCastUsers(t, env, "matrix")
	type route struct {
		name         string
		method, path string // {team}, {owner2}, {admin}, {member} are replaced
		body         string
		// want: the status for owner, admin, member, outsider, API key.
		want [5]int
	}
	routes := []route{
		{"get team", "GET", "/v1/teams/{team}", "", [5]int{200, 200, 200, 404, 403}},
		{"rename", "PATCH", "/v1/teams/{team}", `{"name":"Renamed"}`, [5]int{200, 200, 403, 404, 403}},
		{"delete", "DELETE", "/v1/teams/{team}", "", [5]int{204, 403, 403, 404, 403}},
		{"list members", "GET", "/v1/teams/{team}/members", "", [5]int{200, 200, 200, 404, 403}},
		{"add member", "POST", "/v1/teams/{team}/members", `{"email":"{newbie}"}`, [5]int{201, 201, 403, 404, 403}},
		{"add admin", "POST", "/v1/teams/{team}/members", `{"email":"{newbie}","role":"admin"}`, [5]int{201, 201, 403, 404, 403}},
		{"add owner", "POST", "/v1/teams/{team}/members", `{"email":"{newbie}","role":"owner"}`, [5]int{201, 403, 403, 404, 403}},
		{"member to admin", "PATCH", "/v1/teams/{team}/members/{member}", `{"role":"admin"}`, [5]int{200, 200, 403, 404, 403}},
		{"member to owner", "PATCH", "/v1/teams/{team}/members/{member}", `{"role":"owner"}`, [5]int{200, 403, 403, 404, 403}},
		// The admin's own role: nobody changes their own.
		{"admin to member", "PATCH", "/v1/teams/{team}/members/{admin}", `{"role":"member"}`, [5]int{200, 403, 403, 404, 403}},
		{"owner to admin", "PATCH", "/v1/teams/{team}/members/{owner2}", `{"role":"admin"}`, [5]int{200, 403, 403, 404, 403}},
		// The member removing themselves is leave's job (400).
		{"remove member", "DELETE", "/v1/teams/{team}/members/{member}", "", [5]int{204, 204, 400, 404, 403}},
		{"remove admin", "DELETE", "/v1/teams/{team}/members/{admin}", "", [5]int{204, 400, 403, 404, 403}},
		{"remove owner", "DELETE", "/v1/teams/{team}/members/{owner2}", "", [5]int{204, 403, 403, 404, 403}},
		{"leave", "POST", "/v1/teams/{team}/leave", "", [5]int{204, 204, 204, 404, 403}},
	}
	actors := []string{"owner", "admin", "member", "outsider", "key"}
	for _, rt := range routes {
		for i, actor := range actors {
			c := u.cast(t, "matrix")
			caller := map[string]call{"owner": c.owner, "admin": c.admin, "member": c.membr, "outsider": c.outsider, "key": c.key}[actor]
			r := strings.NewReplacer("{team}", c.team, "{owner2}", c.ids["owner2"], "{admin}", c.ids["admin"], "{member}", c.ids["member"], "{newbie}", c.newbie)
			status, body := caller.do(rt.method, r.Replace(rt.path), r.Replace(rt.body))
			if status != rt.want[i] {
				t.Errorf("%s as %s: %d, want %d (%v)", rt.name, actor, status, rt.want[i], body)
			} else if status >= 400 && errCode(body) == "" {
				t.Errorf("%s as %s: %d without an error body: %v", rt.name, actor, status, body)
			}
			// Done with it: out of the owner's count of teams (at most 20).
			if _, err := env.DB.Exec(context.Background(), `UPDATE teams SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL`, c.team); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Owners cannot all go: the last owner can neither leave nor be demoted or removed,
// and two owners demoting each other at once leave exactly one owner.
func TestLastOwnerInvariants(t *testing.T) {
	env := servertest.New(t)
	u := newCastUsers(t, env, "owners")
	c := u.cast(t, "owners")
	// owner2 leaves: fine, owner is then the last one.
	if status, body := c.owner2.do("POST", "/v1/teams/"+c.team+"/leave", ""); status != 204 {
		t.Fatalf("owner2 leaves: %d %v", status, body)
	}
	if status, body := c.owner.do("POST", "/v1/teams/"+c.team+"/leave", ""); status != 409 || !strings.Contains(body["error"].(map[string]any)["message"].(string), "last owner") {
		t.Errorf("the last owner leaves: %d %v", status, body)
	}
	if status, body := c.owner.do("PATCH", "/v1/teams/"+c.team+"/members/"+c.ids["owner"], `{"role":"admin"}`); status != 403 {
		t.Errorf("the last owner demotes themselves: %d %v", status, body)
	}
	for _, bad := range []string{`{"role":"superuser"}`, `{"role":""}`, `{}`, `{"role":"owner","x":1}`, `[]`} {
		if status, body := c.owner.do("PATCH", "/v1/teams/"+c.team+"/members/"+c.ids["member"], bad); status != 400 {
			t.Errorf("role change %s: %d %v", bad, status, body)
		}
	}

	// Concurrent: owner and owner2 (made owner again) demote each other, many times.
	for round := 0; round < 10; round++ {
		c := u.cast(t, "owners")
		var wg sync.WaitGroup
		statuses := make([]int, 2)
		for i, pair := range [][2]any{{c.owner, c.ids["owner2"]}, {c.owner2, c.ids["owner"]}} {
			wg.Add(1)
			go func(i int, caller call, target string) {
				defer wg.Done()
				statuses[i], _ = caller.do("PATCH", "/v1/teams/"+c.team+"/members/"+target, `{"role":"member"}`)
			}(i, pair[0].(call), pair[1].(string))
		}
		wg.Wait()
		ok := 0
		for _, s := range statuses {
			if s == 200 {
				ok++
			} else if s != 403 {
				t.Errorf("round %d: a demotion answered %d", round, s)
			}
		}
		var owners int
		if err := env.DB.QueryRow(context.Background(), `SELECT count(*) FROM users_teams WHERE team_id = $1 AND role = 'owner'`, c.team).Scan(&owners); err != nil {
			t.Fatal(err)
		}
		if ok != 1 || owners != 1 {
			t.Errorf("round %d: %d demotions succeeded (%v), %d owners left; want exactly one of each", round, ok, statuses, owners)
		}
	}

	// Concurrent: both owners leave at once; exactly one can.
	c = u.cast(t, "owners")
	var wg sync.WaitGroup
	statuses := make([]int, 2)
	for i, caller := range []call{c.owner, c.owner2} {
		wg.Add(1)
		go func(i int, caller call) {
			defer wg.Done()
			statuses[i], _ = caller.do("POST", "/v1/teams/"+c.team+"/leave", "")
		}(i, caller)
	}
	wg.Wait()
	if !(statuses[0] == 204 && statuses[1] == 409 || statuses[0] == 409 && statuses[1] == 204) {
		t.Errorf("two last owners leave at once: %v, want one 204 and one 409", statuses)
	}
}

// A removed member's token stops working for the team with their next request.
func TestRemovedMemberLosesAccessAtOnce(t *testing.T) {
	env := servertest.New(t)
	u := newCastUsers(t, env, "removed")
	c := u.cast(t, "removed")
	_, sess := c.membr.do("POST", "/v1/auth/switch-team", `{"team_id":"`+c.team+`"}`)
	inTeam := u.anon.bearer(sess["token"].(string))
	if status, _ := inTeam.do("GET", "/v1/sandboxes", ""); status != 200 {
		t.Fatalf("the member lists the team's sandboxes: %d", status)
	}
	if status, body := c.admin.do("DELETE", "/v1/teams/"+c.team+"/members/"+c.ids["member"], ""); status != 204 {
		t.Fatalf("remove the member: %d %v", status, body)
	}
	if status, body := inTeam.do("GET", "/v1/sandboxes", ""); status != 401 {
		t.Errorf("the removed member's token for the team: %d %v", status, body)
	}
	if status, _ := c.membr.do("GET", "/v1/teams/"+c.team, ""); status != 404 {
		t.Errorf("the removed member reads the team: %d", status)
	}
	// Their own team's token still works, and the dead one still moves them to a team
	// they are in (only that).
	if status, _ := c.membr.do("GET", "/v1/me", ""); status != 200 {
		t.Errorf("the removed member's own token: %d", status)
	}
	if status, body := inTeam.do("POST", "/v1/auth/switch-team", `{"team_id":"`+c.team+`"}`); status != 404 {
		t.Errorf("switch back into the team left: %d %v", status, body)
	}
	status, back := inTeam.do("POST", "/v1/auth/switch-team", `{"team_id":"`+u.membr["team_id"].(string)+`"}`)
	if status != 200 || back["team_id"] != u.membr["team_id"] {
		t.Errorf("switch from the team left to their own: %d %v", status, back)
	}
}

// Names are free text, trimmed, 1–64 characters; the slug is derived and stays.
func TestTeamNamesAndSlugs(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	ann := anon.bearer(signup(anon, "names@example.com")["token"].(string))
	for name, slugPrefix := range map[string]string{
		"  Acme Corp  ":         "acme-corp-",
		"o'Brien & Sons":        "o-brien-sons-",
		"dev@wrenn":             "dev-wrenn-",
		"Ünïcödé — チーム":         "n-c-d-",
		"チーム":                   "team-",
		strings.Repeat("é", 64): "team-",
	} {
		status, team := ann.do("POST", "/v1/teams", fmt.Sprintf(`{"name":%q}`, name))
		if status != 201 || team["name"] != strings.TrimSpace(name) || team["role"] != "owner" || !strings.HasPrefix(team["slug"].(string), slugPrefix) {
			t.Errorf("create %q: %d %v (slug want prefix %q)", name, status, team, slugPrefix)
		}
	}
	for _, bad := range []string{`{"name":""}`, `{"name":"   "}`, `{"name":"` + strings.Repeat("x", 65) + `"}`, `{"name":"a\nb"}`, `{"name":"a\u0000b"}`, `{}`, `{"name":1}`, `{"name":"x","slug":"y"}`} {
		if status, body := ann.do("POST", "/v1/teams", bad); status != 400 || errCode(body) == "" {
			t.Errorf("create %s: %d %v", bad, status, body)
		}
	}
	_, team := ann.do("POST", "/v1/teams", `{"name":"Before"}`)
	status, renamed := ann.do("PATCH", "/v1/teams/"+team["id"].(string), `{"name":" After "}`)
	if status != 200 || renamed["name"] != "After" || renamed["slug"] != team["slug"] {
		t.Errorf("rename: %d %v (before %v)", status, renamed, team)
	}
	if status, _ := ann.do("PATCH", "/v1/teams/"+team["id"].(string), `{"name":""}`); status != 400 {
		t.Errorf("rename to empty: %d", status)
	}
	for _, id := range []string{"not-a-uuid", "00000000-0000-0000-0000-000000000000"} {
		if status, body := ann.do("GET", "/v1/teams/"+id, ""); status != 404 || errCode(body) != "not_found" {
			t.Errorf("GET team %s: %d %v", id, status, body)
		}
	}
	status, list := ann.do("GET", "/v1/teams", "")
	if teams := list["teams"].([]any); status != 200 || len(teams) != 8 || teams[0].(map[string]any)["is_default"] != true {
		t.Errorf("list: %d %d teams %v", status, len(teams), list)
	}
	// A user owns at most 20 live teams.
	for i := 8; i < 20; i++ {
		if status, body := ann.do("POST", "/v1/teams", fmt.Sprintf(`{"name":"t%d"}`, i)); status != 201 {
			t.Fatalf("team %d: %d %v", i, status, body)
		}
	}
	if status, body := ann.do("POST", "/v1/teams", `{"name":"one too many"}`); status != 429 || errCode(body) != "quota_exceeded" {
		t.Errorf("the 21st team: %d %v", status, body)
	}
}

// Adding by email: unknown emails are not found, members are not added twice, and the
// user search matches prefixes only (LIKE's wildcards match themselves).
func TestAddMemberAndSearch(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	own := anon.bearer(signup(anon, "search-owner@example.com")["token"].(string))
	emails := []string{"a_b@example.com", "axb@example.com", "a%c@example.com", "abc@example.com"}
	for i := 0; i < 12; i++ {
		emails = append(emails, fmt.Sprintf("many%02d@example.com", i))
	}
	for _, e := range emails { // as an operator makes accounts: sign-ups are throttled per address
		if _, _, err := accounts.CreateUser(context.Background(), env.DB, e, "", "correct horse battery"); err != nil {
			t.Fatal(err)
		}
	}
	_, team := own.do("POST", "/v1/teams", `{"name":"Search"}`)
	id := team["id"].(string)
	search := func(q string) []string {
		t.Helper()
		status, body := own.do("GET", "/v1/users/search?email="+q, "")
		if status != 200 {
			t.Fatalf("search %q: %d %v", q, status, body)
		}
		var out []string
		for _, u := range body["users"].([]any) {
			m := u.(map[string]any)
			if len(m) != 3 {
				t.Errorf("search answers more than id, email and name: %v", m)
			}
			out = append(out, m["email"].(string))
		}
		return out
	}
	if got := search("a_b"); len(got) != 1 || got[0] != "a_b@example.com" {
		t.Errorf("search a_b: %v", got)
	}
	if got := search("a%25c"); len(got) != 1 || got[0] != "a%c@example.com" {
		t.Errorf("search a%%c: %v", got)
	}
	if got := search("MANY"); len(got) != 10 || got[0] != "many00@example.com" {
		t.Errorf("search many: %d %v", len(got), got)
	}
	for _, q := range []string{"", "ab", "%25%25"} {
		if status, body := own.do("GET", "/v1/users/search?email="+q, ""); status != 400 {
			t.Errorf("search %q: %d %v", q, status, body)
		}
	}
	if status, body := own.do("POST", "/v1/teams/"+id+"/members", `{"email":"nobody@example.com"}`); status != 404 {
		t.Errorf("add an unknown email: %d %v", status, body)
	}
	if status, body := own.do("POST", "/v1/teams/"+id+"/members", `{"email":"ABC@example.com"}`); status != 201 || body["email"] != "abc@example.com" || body["role"] != "member" {
		t.Errorf("add abc: %d %v", status, body)
	}
	if status, body := own.do("POST", "/v1/teams/"+id+"/members", `{"email":"abc@example.com","role":"admin"}`); status != 409 {
		t.Errorf("add abc again: %d %v", status, body)
	}
	for _, bad := range []string{`{"email":"not an email"}`, `{"email":"x@example.com","role":"god"}`, `{"role":"member"}`, `{"email":"abc@example.com","extra":1}`} {
		if status, body := own.do("POST", "/v1/teams/"+id+"/members", bad); status != 400 {
			t.Errorf("add %s: %d %v", bad, status, body)
		}
	}
	status, members := own.do("GET", "/v1/teams/"+id+"/members", "")
	if list := members["members"].([]any); status != 200 || len(list) != 2 || list[0].(map[string]any)["role"] != "owner" {
		t.Errorf("members: %d %v", status, members)
	}
	for _, path := range []string{"/v1/teams/" + id + "/members/not-a-uuid", "/v1/teams/" + id + "/members/00000000-0000-0000-0000-000000000000"} {
		if status, _ := own.do("DELETE", path, ""); status != 404 {
			t.Errorf("DELETE %s: %d", path, status)
		}
	}
	// Every change is audited in the team's log with its actor.
	_, sess := own.do("POST", "/v1/auth/switch-team", `{"team_id":"`+id+`"}`)
	status, logs := anon.bearer(sess["token"].(string)).do("GET", "/v1/audit-logs?action=member.add,team.create", "")
	entries, _ := logs["audit_logs"].([]any)
	if status != 200 || len(entries) != 2 {
		t.Fatalf("the team's log of member.add and team.create: %d %v", status, logs)
	}
	for _, e := range entries {
		if m := e.(map[string]any); m["actor"].(map[string]any)["id"] != sess["user_id"] || m["team_id"] != id {
			t.Errorf("audit entry %v: want the owner as actor, in team %s", m, id)
		}
	}
}
