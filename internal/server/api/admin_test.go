package api_test

import (
	"context"
	"encoding/base64"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/server/servertest"
)

// adminRoute is one platform administrators' route, with a body it takes.
type adminRoute struct{ method, path, body string }

// adminRoutes are every platform administrators' route; team is a real team's id.
func adminRoutes(team string) []adminRoute {
	return []adminRoute{
		{"GET", "/v1/admin/teams", ""},
		{"GET", "/v1/admin/teams?include_deleted=true&limit=5", ""},
		{"PUT", "/v1/admin/teams/" + team + "/byoc", `{"byoc":true}`},
		{"POST", "/v1/admin/teams/" + team + "/byoc", `{"byoc":true}`},
		{"GET", "/v1/admin/users", ""},
		{"GET", "/v1/admin/users?email=ann", ""},
		{"GET", "/v1/admin/templates", ""},
		{"GET", "/v1/admin/templates?team_id=" + team, ""},
		{"GET", "/v1/admin/templates/base", ""},
		{"DELETE", "/v1/admin/templates/base", ""},
		{"GET", "/v1/admin/sandboxes", ""},
		{"GET", "/v1/admin/sandboxes?state=all&team_id=" + team, ""},
		{"GET", "/v1/admin/audit-logs", ""},
		// Bad parameters too: a non-administrator learns nothing from them.
		{"GET", "/v1/admin/teams?limit=zero", ""},
		{"GET", "/v1/admin/sandboxes?cursor=nonsense", ""},
		{"POST", "/v1/admin/teams/" + team + "/byoc", `not json`},
		{"PUT", "/v1/admin/teams/not-a-team/byoc", `{}`},
	}
}

// pageOf is a listing's rows (under key) and its next_cursor ("" on the last page),
// wanting a 200.
func pageOf(t *testing.T, c call, path, key string) ([]map[string]any, string) {
	t.Helper()
	status, body := c.do("GET", path, "")
	if status != 200 {
		t.Fatalf("GET %s: %d %v", path, status, body)
	}
	rows, ok := body[key].([]any)
	if !ok {
		t.Fatalf("GET %s: no %s in %v", path, key, body)
	}
	if _, ok := body["next_cursor"]; !ok {
		t.Fatalf("GET %s: no next_cursor in %v", path, body)
	}
	out := make([]map[string]any, len(rows))
	for i, r := range rows {
		out[i] = r.(map[string]any)
	}
	next, _ := body["next_cursor"].(string)
	return out, next
}

// byID indexes rows by their "id".
func byID(rows []map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, r := range rows {
		out[r["id"].(string)] = r
	}
	return out
}

// Only platform administrators, as the database says on each request: team owners,
// members and API keys get 403 on every route, whatever its parameters, and an
// administrator demoted in the database is refused on the next request.
func TestAdminRoutesRefuseOthers(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	root, admin := platformAdmin(t, env, anon, "root@example.com")
	ann := signup(anon, "ann@example.com")
	annTeam := ann["team_id"].(string)
	owner := anon.bearer(ann["token"].(string))
	carl := member(t, env, anon, signup(anon, "carl@example.com"), annTeam)
	_, key := owner.do("POST", "/v1/api-keys", `{"name":"ci"}`)
	keyC := anon.with("X-API-Key", key["key"].(string))

	for _, r := range adminRoutes(annTeam) {
		for name, c := range map[string]call{"owner": owner, "member": carl, "API key": keyC} {
			if status, body := c.do(r.method, r.path, r.body); status != 403 || errCode(body) != "forbidden" {
				t.Errorf("%s: %s %s: %d %v, want 403", name, r.method, r.path, status, body)
			}
		}
		if status, body := anon.do(r.method, r.path, r.body); status != 401 {
			t.Errorf("no credentials: %s %s: %d %v, want 401", r.method, r.path, status, body)
		}
	}
	var changes int
	if err := env.DB.QueryRow(context.Background(), `SELECT count(*) FROM audit_logs WHERE action IN ('team.byoc', 'template.delete')`).Scan(&changes); err != nil || changes != 0 {
		t.Errorf("refused changes left %d audit entries (%v)", changes, err)
	}

	if status, body := admin.do("GET", "/v1/admin/teams", ""); status != 200 {
		t.Fatalf("an administrator's listing: %d %v", status, body)
	}
	if _, err := env.DB.Exec(context.Background(), `UPDATE users SET is_admin = false WHERE id = $1`, root["user_id"]); err != nil {
		t.Fatal(err)
	}
	for _, r := range adminRoutes(annTeam) {
		if status, body := admin.do(r.method, r.path, r.body); status != 403 || errCode(body) != "forbidden" {
			t.Errorf("demoted administrator: %s %s: %d %v, want 403", r.method, r.path, status, body)
		}
	}
}

// Every team, another's included, with its members and live sandboxes; deleted ones
// only when asked.
func TestAdminTeams(t *testing.T) {
	env := servertest.New(t)
	ctx := context.Background()
	anon := newCall(t, env)
	root, admin := platformAdmin(t, env, anon, "root@example.com")
	ann := signup(anon, "ann@example.com")
	annTeam := ann["team_id"].(string)
	annC := anon.bearer(ann["token"].(string))
	member(t, env, anon, signup(anon, "carl@example.com"), annTeam)
	for range 2 {
		if status, body := annC.do("POST", "/v1/sandboxes", `{}`); status != 201 {
			t.Fatalf("create: %d %v", status, body)
		}
	}
	_, gone := annC.do("POST", "/v1/sandboxes", `{}`)
	if status, _ := annC.do("DELETE", "/v1/sandboxes/"+gone["id"].(string), ""); status != 204 {
		t.Fatalf("destroy: %d", status)
	}
	bob := signup(anon, "bob@example.com")
	bobTeam := bob["team_id"].(string)

	rows, next := pageOf(t, admin, "/v1/admin/teams", "teams")
	teams := byID(rows)
	if len(rows) != 4 || next != "" {
		t.Fatalf("teams: %d (next %q), want root's, ann's, carl's and bob's: %v", len(rows), next, rows)
	}
	if a := teams[annTeam]; a == nil || a["members"] != 2.0 || a["sandboxes"] != 2.0 || a["is_byoc"] != false || a["deleted_at"] != nil || a["slug"] == "" {
		t.Errorf("ann's team: %v, want 2 members and 2 live sandboxes", teams[annTeam])
	}
	if b := teams[bobTeam]; b == nil || b["members"] != 1.0 || b["sandboxes"] != 0.0 {
		t.Errorf("bob's team: %v", b)
	}
	if rows[0]["id"] != bobTeam || rows[len(rows)-1]["id"] != root["team_id"] {
		t.Errorf("not newest first: %v", rows)
	}

	// A deleted team is listed only with include_deleted, with when it went.
	if _, err := env.DB.Exec(ctx, `UPDATE teams SET deleted_at = now() WHERE id = $1`, bobTeam); err != nil {
		t.Fatal(err)
	}
	if rows, _ := pageOf(t, admin, "/v1/admin/teams?include_deleted=false", "teams"); byID(rows)[bobTeam] != nil || len(rows) != 3 {
		t.Errorf("a deleted team without include_deleted: %v", rows)
	}
	rows, _ = pageOf(t, admin, "/v1/admin/teams?include_deleted=true", "teams")
	if b := byID(rows)[bobTeam]; b == nil || b["deleted_at"] == nil {
		t.Errorf("a deleted team with include_deleted: %v", b)
	}
}

// Paging through every team while teams are added: each team there before the first
// page is on exactly one page, newest first, ties of created_at (teams made by one
// statement) included; teams added after the first page are on none.
func TestAdminTeamsPagingUnderInserts(t *testing.T) {
	env := servertest.New(t)
	ctx := context.Background()
	anon := newCall(t, env)
	_, admin := platformAdmin(t, env, anon, "root@example.com")
	insert := `INSERT INTO teams (name, slug) SELECT $1 || g, substr(md5(random()::text || g), 1, 12) FROM generate_series(1, $2) g`
	for i := range 5 {
		// One statement's teams share created_at, so pages end inside ties.
		if _, err := env.DB.Exec(ctx, insert, "before-", 2+i*3); err != nil {
			t.Fatal(err)
		}
	}
	var before []string
	rows, err := env.DB.Query(ctx, `SELECT id::text FROM teams ORDER BY created_at DESC, id DESC`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		before = append(before, id)
	}
	if rows.Err() != nil || len(before) < 30 {
		t.Fatalf("%d teams to page through: %v", len(before), rows.Err())
	}

	stop := make(chan struct{})
	var added atomic.Int64
	var wg sync.WaitGroup
	adding := func() {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := env.DB.Exec(ctx, insert, "during-", 2); err != nil {
					t.Error(err)
					return
				}
				added.Add(2)
			}
		})
	}
	var got []string
	path := "/v1/admin/teams?limit=7"
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatal("more pages than teams")
		}
		list, next := pageOf(t, admin, path, "teams")
		if len(list) > 7 {
			t.Errorf("a page of limit 7 has %d teams", len(list))
		}
		for _, team := range list {
			if strings.HasPrefix(team["name"].(string), "during-") {
				t.Errorf("page %d has a team added after the first page: %v", pages, team)
			}
			got = append(got, team["id"].(string))
		}
		if pages == 0 {
			adding()
		}
		if pages == 1 {
			for n := added.Load(); added.Load() < n+4; {
				time.Sleep(time.Millisecond)
			}
		}
		if next == "" {
			break
		}
		path = "/v1/admin/teams?limit=7&cursor=" + url.QueryEscape(next)
	}
	close(stop)
	wg.Wait()
	if strings.Join(got, ",") != strings.Join(before, ",") {
		t.Errorf("paged %d teams:\n%v\nwant the %d there before, in order:\n%v", len(got), got, len(before), before)
	}
	if added.Load() == 0 {
		t.Error("nothing was added while paging")
	}
}

// Users: every one with their teams and whether they administer the platform; the
// email filter is a prefix taken literally (LIKE's % and _ match only themselves).
func TestAdminUsers(t *testing.T) {
	env := servertest.New(t)
	ctx := context.Background()
	anon := newCall(t, env)
	root, admin := platformAdmin(t, env, anon, "root@example.com")
	ann := signup(anon, "a_b@example.com")
	member(t, env, anon, signup(anon, "axb@example.com"), ann["team_id"].(string))
	// Emails sign-up takes no more (a backslash is not an address), as older accounts
	// or other sign-in paths may have them.
	for _, email := range []string{"a%c@example.com", `a\d@example.com`} {
		if _, err := env.DB.Exec(ctx, `INSERT INTO users (email) VALUES ($1)`, email); err != nil {
			t.Fatal(err)
		}
	}

	rows, next := pageOf(t, admin, "/v1/admin/users", "users")
	users := byID(rows)
	if len(rows) != 5 || next != "" {
		t.Fatalf("users: %v (next %q)", rows, next)
	}
	if r := users[root["user_id"].(string)]; r["is_admin"] != true || r["email"] != "root@example.com" || r["teams"] != 1.0 {
		t.Errorf("the administrator: %v", r)
	}
	var axb map[string]any
	for _, u := range rows {
		if u["email"] == "axb@example.com" {
			axb = u
		}
	}
	if axb["is_admin"] != false || axb["teams"] != 2.0 {
		t.Errorf("a member of two teams: %v", axb)
	}
	// A deleted team is no longer counted.
	if _, err := env.DB.Exec(ctx, `UPDATE teams SET deleted_at = now() WHERE id = $1`, ann["team_id"]); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		prefix string
		want   []string
	}{
		{"a_b", []string{"a_b@example.com"}},
		{"A_B@", []string{"a_b@example.com"}},
		{"a%", []string{"a%c@example.com"}},
		{`a\`, []string{`a\d@example.com`}},
		{"%", nil},
		{"_", nil},
		{"ax", []string{"axb@example.com"}},
		{"a", []string{`a\d@example.com`, "a%c@example.com", "axb@example.com", "a_b@example.com"}},
		{"nobody", nil},
	} {
		rows, _ := pageOf(t, admin, "/v1/admin/users?email="+url.QueryEscape(c.prefix), "users")
		var got []string
		for _, u := range rows {
			got = append(got, u["email"].(string))
			if u["email"] == "axb@example.com" && u["teams"] != 1.0 {
				t.Errorf("teams of a user in a deleted team: %v", u)
			}
		}
		if strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("email=%s: %v, want %v", c.prefix, got, c.want)
		}
	}
	// Pages of users follow each other too.
	seen := map[string]bool{}
	path := "/v1/admin/users?limit=2"
	for pages := 0; path != ""; pages++ {
		rows, next := pageOf(t, admin, path, "users")
		for _, u := range rows {
			if seen[u["id"].(string)] {
				t.Errorf("user %v on two pages", u)
			}
			seen[u["id"].(string)] = true
		}
		path = ""
		if next != "" {
			path = "/v1/admin/users?limit=2&cursor=" + url.QueryEscape(next)
		}
	}
	if len(seen) != 5 {
		t.Errorf("paged %d users, want 5", len(seen))
	}
}

// PUT sets a team's BYOC, audited with the administrator as actor in the same
// transaction; the older POST still does; bad ids and bodies are refused.
func TestAdminSetBYOC(t *testing.T) {
	env := servertest.New(t)
	ctx := context.Background()
	anon := newCall(t, env)
	root, admin := platformAdmin(t, env, anon, "root@example.com")
	ann := signup(anon, "ann@example.com")
	annTeam := ann["team_id"].(string)

	byoc := func() bool {
		t.Helper()
		rows, _ := pageOf(t, admin, "/v1/admin/teams", "teams")
		return byID(rows)[annTeam]["is_byoc"].(bool)
	}
	if status, body := admin.do("PUT", "/v1/admin/teams/"+annTeam+"/byoc", `{"byoc":true}`); status != 204 || !byoc() {
		t.Fatalf("PUT byoc true: %d %v", status, body)
	}
	if status, body := admin.do("PUT", "/v1/admin/teams/"+annTeam+"/byoc", `{"byoc":false}`); status != 204 || byoc() {
		t.Errorf("PUT byoc false: %d %v", status, body)
	}
	if status, body := admin.do("POST", "/v1/admin/teams/"+annTeam+"/byoc", `{"byoc":true}`); status != 204 || !byoc() {
		t.Errorf("the deprecated POST: %d %v", status, body)
	}
	entries := auditList(t, admin, "/v1/admin/audit-logs?action=team.byoc")
	if len(entries) != 3 {
		t.Fatalf("team.byoc entries: %v", entries)
	}
	for i, want := range []bool{true, false, true} { // oldest last
		e := entries[len(entries)-1-i]
		// In the changed team's log (its owners see it), by the administrator.
		if e["resource_id"] != annTeam || e["team_id"] != annTeam || actorOf(e)["id"] != root["user_id"] || e["metadata"].(map[string]any)["byoc"] != want {
			t.Errorf("entry %d: %v, want byoc %t by the administrator in team %s", i, e, want, annTeam)
		}
	}

	for _, c := range []struct {
		path, body string
		status     int
	}{
		{"/v1/admin/teams/not-a-uuid/byoc", `{"byoc":true}`, 404},
		{"/v1/admin/teams/00000000-0000-0000-0000-000000000000/byoc", `{"byoc":true}`, 404},
		{"/v1/admin/teams/" + annTeam + "/byoc", `{}`, 400},
		{"/v1/admin/teams/" + annTeam + "/byoc", `{"byoc":"yes"}`, 400},
		{"/v1/admin/teams/" + annTeam + "/byoc", `{"byoc":true,"x":1}`, 400},
	} {
		if status, body := admin.do("PUT", c.path, c.body); status != c.status || errCode(body) == "" {
			t.Errorf("PUT %s %s: %d %v, want %d", c.path, c.body, status, body, c.status)
		}
	}
	if _, err := env.DB.Exec(ctx, `UPDATE teams SET deleted_at = now() WHERE id = $1`, annTeam); err != nil {
		t.Fatal(err)
	}
	if status, body := admin.do("PUT", "/v1/admin/teams/"+annTeam+"/byoc", `{"byoc":false}`); status != 404 {
		t.Errorf("a deleted team: %d %v, want 404", status, body)
	}
	if got := auditList(t, admin, "/v1/admin/audit-logs?action=team.byoc"); len(got) != 3 {
		t.Errorf("refused changes were audited: %v", got)
	}
}

// Every listing refuses a limit or cursor it cannot mean with a 400 naming it.
func TestAdminListingsBadInput(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	_, admin := platformAdmin(t, env, anon, "root@example.com")
	signup(anon, "ann@example.com")
	signup(anon, "bob@example.com")
	_, teamsCursor := pageOf(t, admin, "/v1/admin/teams?limit=1", "teams")
	_, usersCursor := pageOf(t, admin, "/v1/admin/users?limit=1", "users")
	forged := func(s string) string { return url.QueryEscape(base64.RawURLEncoding.EncodeToString([]byte(s))) }
	for _, listing := range []string{"teams", "users", "sandboxes"} {
		path := "/v1/admin/" + listing + "?"
		cases := []struct{ query, word string }{
			{"limit=0", "limit"},
			{"limit=201", "limit"},
			{"limit=-1", "limit"},
			{"limit=ten", "limit"},
			{"limit=", "limit"},
			{"cursor=garbage!", "cursor"},
			{"cursor=" + forged(listing+"|yesterday|x"), "cursor"},
			{"cursor=" + forged(listing+"|2025-01-02T03:04:05Z|not-an-id"), "cursor"},
			{"cursor=" + forged(listing+"|2025-01-02T03:04:05Z"), "cursor"},
			{"cursor=" + strings.Repeat("A", 300), "cursor"},
		}
		// A cursor of another listing is refused.
		if listing == "teams" {
			cases = append(cases, struct{ query, word string }{"cursor=" + url.QueryEscape(usersCursor), "cursor"})
		} else {
			cases = append(cases, struct{ query, word string }{"cursor=" + url.QueryEscape(teamsCursor), "cursor"})
		}
		switch listing {
		case "teams":
			cases = append(cases, struct{ query, word string }{"include_deleted=maybe", "include_deleted"})
		case "users":
			cases = append(cases, struct{ query, word string }{"email=a%00b", "email"})
		case "sandboxes":
			cases = append(cases, []struct{ query, word string }{
				{"state=sleeping", "state"}, {"team_id=not-a-team", "team_id"}, {"host_id=12345", "host_id"},
			}...)
		}
		for _, c := range cases {
			status, body := admin.do("GET", path+c.query, "")
			if status != 400 || errCode(body) != "invalid_request" || !strings.Contains(errMessage(body), c.word) {
				t.Errorf("GET %s%s: %d %v, want 400 naming %s", path, c.query, status, body, c.word)
			}
		}
	}
	if rows, next := pageOf(t, admin, "/v1/admin/teams?limit=200", "teams"); len(rows) != 3 || next != "" {
		t.Errorf("limit 200: %d teams, next %q", len(rows), next)
	}
}
