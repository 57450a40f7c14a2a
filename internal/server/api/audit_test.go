package api_test

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/server/servertest"
)

// auditEntries is the audit_logs of a listing's answer.
func auditEntries(t *testing.T, body map[string]any) []map[string]any {
	t.Helper()
	list, ok := body["audit_logs"].([]any)
	if !ok {
		t.Fatalf("no audit_logs in %v", body)
	}
	out := make([]map[string]any, 0, len(list))
	for _, e := range list {
		out = append(out, e.(map[string]any))
	}
	return out
}

// auditList gets path (a listing with its query) as c and wants a 200.
func auditList(t *testing.T, c call, path string) []map[string]any {
	t.Helper()
	status, body := c.do("GET", path, "")
	if status != 200 {
		t.Fatalf("GET %s: %d %v", path, status, body)
	}
	return auditEntries(t, body)
}

func actorOf(e map[string]any) map[string]any { return e["actor"].(map[string]any) }

// insertSystemEntry appends an entry no user or key made, as the expiry of a sandbox
// does, to team's log.
func insertSystemEntry(t *testing.T, env *servertest.Env, team, action, resource string) {
	t.Helper()
	if _, err := env.DB.Exec(context.Background(), `INSERT INTO audit_logs (team_id, action, resource_type, resource_id) VALUES ($1, $2, 'sandbox', $3)`, team, action, resource); err != nil {
		t.Fatal(err)
	}
}

// Who sees which entries: owners and admins their team's, members their own, an API
// key nothing (403), another team none of them; every team's only platform
// administrators, as the database says on each request. Every entry names its
// actor: a user with email, an API key with prefix and name, or the system.
func TestAuditLogVisibilityAndActors(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	root, admin := platformAdmin(t, env, anon, "root@example.com")
	ann := signup(anon, "ann@example.com")
	annTeam, annID := ann["team_id"].(string), ann["user_id"].(string)
	annC := anon.bearer(ann["token"].(string))
	status, key := annC.do("POST", "/v1/api-keys", `{"name":"ci"}`)
	if status != 201 {
		t.Fatalf("create key: %d %v", status, key)
	}
	keyC := anon.with("X-API-Key", key["key"].(string))
	if status, body := keyC.do("POST", "/v1/sandboxes", `{}`); status != 201 {
		t.Fatalf("create a sandbox with the key: %d %v", status, body)
	}
	carlS := signup(anon, "carl@example.com")
	carl := member(t, env, anon, carlS, annTeam)
	if status, body := carl.do("POST", "/v1/sandboxes", `{}`); status != 201 {
		t.Fatalf("create a sandbox as a member: %d %v", status, body)
	}
	daveS := signup(anon, "dave@example.com")
	dave := member(t, env, anon, daveS, annTeam)
	if _, err := env.DB.Exec(context.Background(), `UPDATE users_teams SET role = 'admin' WHERE user_id = $1 AND team_id = $2`, daveS["user_id"], annTeam); err != nil {
		t.Fatal(err)
	}
	insertSystemEntry(t, env, annTeam, "sandbox.destroy", "sb0000000000000000ex")
	bob := signup(anon, "bob@example.com")
	bobC := anon.bearer(bob["token"].(string))

	// The owner and the team's admin see the same: every entry of the team.
	owners := auditList(t, annC, "/v1/audit-logs")
	if got := auditList(t, dave, "/v1/audit-logs"); len(got) != len(owners) {
		t.Errorf("the team's admin sees %d entries, its owner %d", len(got), len(owners))
	}
	seen := map[string]map[string]any{} // an entry of each action and actor type
	for _, e := range owners {
		if e["team_id"] != annTeam {
			t.Errorf("another team's entry in ann's log: %v", e)
		}
		seen[e["action"].(string)+"/"+actorOf(e)["type"].(string)] = e
	}
	for _, want := range []string{"user.signup/user", "api_key.create/user", "sandbox.create/api_key", "sandbox.create/user", "sandbox.destroy/system"} {
		if seen[want] == nil {
			t.Errorf("no %s entry in the team's log %v", want, owners)
		}
	}
	if a := actorOf(seen["api_key.create/user"]); a["id"] != annID || a["email"] != "ann@example.com" || len(a) != 3 {
		t.Errorf("a user's entry names %v, want ann's id and email", a)
	}
	if a := actorOf(seen["sandbox.create/api_key"]); a["id"] != key["id"] || a["prefix"] != key["prefix"] || a["name"] != "ci" || len(a) != 4 {
		t.Errorf("an API key's entry names %v, want the key's id, prefix and name %v", a, key)
	}
	if a := actorOf(seen["sandbox.destroy/system"]); len(a) != 1 {
		t.Errorf("a system entry names %v, want only its type", a)
	}
	if md := seen["sandbox.create/api_key"]["metadata"].(map[string]any); md["template"] != "base" {
		t.Errorf("metadata of a create: %v", md)
	}

	// A member sees only what they did themselves in the team.
	mine := auditList(t, carl, "/v1/audit-logs")
	if len(mine) != 1 || mine[0]["action"] != "sandbox.create" || actorOf(mine[0])["id"] != carlS["user_id"] {
		t.Errorf("a member's view: %v, want only their sandbox.create", mine)
	}
	if got := auditList(t, carl, "/v1/audit-logs?actor="+annID); len(got) != 0 {
		t.Errorf("a member filtering for the owner's entries sees %v", got)
	}

	// An API key is refused; another team sees none of ann's.
	if status, body := keyC.do("GET", "/v1/audit-logs", ""); status != 403 || errCode(body) != "forbidden" {
		t.Errorf("API key: %d %v", status, body)
	}
	for _, e := range auditList(t, bobC, "/v1/audit-logs") {
		if e["team_id"] != bob["team_id"] || actorOf(e)["id"] != bob["user_id"] {
			t.Errorf("bob sees %v", e)
		}
	}

	// Platform administrators see every team's, and filter by team.
	all := auditList(t, admin, "/v1/admin/audit-logs?limit=200")
	teams := map[any]bool{}
	for _, e := range all {
		teams[e["team_id"]] = true
	}
	if !teams[annTeam] || !teams[bob["team_id"]] || !teams[root["team_id"]] {
		t.Errorf("the platform-wide log has the teams %v", teams)
	}
	onlyAnn := auditList(t, admin, "/v1/admin/audit-logs?team_id="+annTeam)
	if len(onlyAnn) != len(owners) {
		t.Errorf("filtered by ann's team: %d entries, ann sees %d", len(onlyAnn), len(owners))
	}
	both := auditList(t, admin, "/v1/admin/audit-logs?team_id="+annTeam+"&team_id="+bob["team_id"].(string))
	for _, e := range both {
		if e["team_id"] != annTeam && e["team_id"] != bob["team_id"] {
			t.Errorf("filtered by two teams: %v", e)
		}
	}
	if len(both) <= len(onlyAnn) {
		t.Errorf("two teams give %d entries, one %d", len(both), len(onlyAnn))
	}
	for _, c := range []call{annC, dave, carl, bobC} {
		if status, body := c.do("GET", "/v1/admin/audit-logs", ""); status != 403 || errCode(body) != "forbidden" {
			t.Errorf("a non-administrator's platform-wide listing: %d %v", status, body)
		}
	}
	if status, body := keyC.do("GET", "/v1/admin/audit-logs", ""); status != 403 {
		t.Errorf("an API key's platform-wide listing: %d %v", status, body)
	}
	// Revoking administration takes effect on the next request, whatever the token.
	if _, err := env.DB.Exec(context.Background(), `UPDATE users SET is_admin = false WHERE id = $1`, root["user_id"]); err != nil {
		t.Fatal(err)
	}
	if status, body := admin.do("GET", "/v1/admin/audit-logs", ""); status != 403 {
		t.Errorf("a revoked administrator's listing: %d %v", status, body)
	}
}

// Filters take several values, repeated or comma-separated, and combine.
func TestAuditLogFilters(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	ann := signup(anon, "ann@example.com")
	annTeam, annID := ann["team_id"].(string), ann["user_id"].(string)
	annC := anon.bearer(ann["token"].(string))
	status, key := annC.do("POST", "/v1/api-keys", `{"name":"ci"}`)
	if status != 201 {
		t.Fatalf("create key: %d %v", status, key)
	}
	keyC := anon.with("X-API-Key", key["key"].(string))
	if status, body := keyC.do("POST", "/v1/sandboxes", `{}`); status != 201 {
		t.Fatalf("create a sandbox: %d %v", status, body)
	}
	insertSystemEntry(t, env, annTeam, "sandbox.destroy", "sb0000000000000000ex")

	actions := func(path string) []string {
		var out []string
		for _, e := range auditList(t, annC, path) {
			out = append(out, e["action"].(string)+"/"+actorOf(e)["type"].(string))
		}
		slices.Sort(out)
		return out
	}
	for _, c := range []struct {
		query string
		want  []string
	}{
		{"action=sandbox.create", []string{"sandbox.create/api_key"}},
		{"action=sandbox.create,api_key.create", []string{"api_key.create/user", "sandbox.create/api_key"}},
		{"action=sandbox.create&action=user.signup", []string{"sandbox.create/api_key", "user.signup/user"}},
		{"action=no.such", nil},
		{"resource_type=sandbox", []string{"sandbox.create/api_key", "sandbox.destroy/system"}},
		{"resource_type=api_key,user", []string{"api_key.create/user", "user.signup/user"}},
		{"actor=system", []string{"sandbox.destroy/system"}},
		{"actor=" + key["id"].(string), []string{"sandbox.create/api_key"}},
		{"actor=" + key["id"].(string) + ",system", []string{"sandbox.create/api_key", "sandbox.destroy/system"}},
		{"actor=" + annID + "&resource_type=user", []string{"user.signup/user"}},
		{"actor=system&action=sandbox.create", nil},
	} {
		if got := actions("/v1/audit-logs?" + c.query); !slices.Equal(got, c.want) {
			t.Errorf("?%s: %v, want %v", c.query, got, c.want)
		}
	}
}

// Every parameter refuses what it cannot mean with a 400 naming it.
func TestAuditLogBadInput(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	_, admin := platformAdmin(t, env, anon, "root@example.com")
	ann := signup(anon, "ann@example.com")
	annC := anon.bearer(ann["token"].(string))
	now := url.QueryEscape(time.Now().UTC().Format(time.RFC3339Nano))
	for _, c := range []struct {
		c     call
		query string
		word  string // in the message
	}{
		{annC, "limit=0", "limit"},
		{annC, "limit=201", "limit"},
		{annC, "limit=ten", "limit"},
		{annC, "limit=-1", "limit"},
		{annC, "before=yesterday&before_id=5", "before"},
		{annC, "before=2024-01-02&before_id=5", "before"},
		{annC, "before=" + now, "before_id"},
		{annC, "before_id=5", "before"},
		{annC, "before=" + now + "&before_id=x", "before_id"},
		{annC, "before=" + now + "&before_id=0", "before_id"},
		{annC, "action=Sandbox%20Create", "action"},
		{annC, "action=sandbox.create,", "action"},
		{annC, "action=" + strings.Repeat("a", 65), "action"},
		{annC, "action=" + strings.Repeat("a,", 50) + "a", "action"},
		{annC, "resource_type=%27drop", "resource_type"},
		{annC, "actor=nobody", "actor"},
		{annC, "actor=ann@example.com", "actor"},
		{annC, "team_id=" + ann["team_id"].(string), "team_id"},
		{admin, "team_id=not-a-team", "team_id"},
		{admin, "actor=12345", "actor"},
		{admin, "limit=1000", "limit"},
	} {
		path := "/v1/audit-logs?"
		if c.c.header.Get("Authorization") == admin.header.Get("Authorization") {
			path = "/v1/admin/audit-logs?"
		}
		status, body := c.c.do("GET", path+c.query, "")
		if status != 400 || errCode(body) != "invalid_request" || !strings.Contains(errMessage(body), c.word) {
			t.Errorf("%s%s: %d %v, want 400 naming %s", path, c.query, status, body, c.word)
		}
	}
}

// Paging through the log while entries are added: every entry that existed before
// the first page is on exactly one page, in order, ties of created_at (entries of
// one transaction) included; entries added after the first page show up on none.
func TestAuditLogPagingUnderInserts(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	ann := signup(anon, "ann@example.com")
	annTeam := ann["team_id"].(string)
	annC := anon.bearer(ann["token"].(string))
	ctx := context.Background()
	insert := `INSERT INTO audit_logs (team_id, actor_user_id, action, resource_type, resource_id)
		SELECT $1, $2, $3, 'test', 'r' || g FROM generate_series(1, $4) g`
	for i := range 6 {
		// Batches of one statement share created_at, so pages end inside ties.
		if _, err := env.DB.Exec(ctx, insert, annTeam, ann["user_id"], "test.before", 1+i*3); err != nil {
			t.Fatal(err)
		}
	}
	var before []int64
	rows, err := env.DB.Query(ctx, `SELECT id FROM audit_logs WHERE team_id = $1 ORDER BY created_at DESC, id DESC`, annTeam)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		before = append(before, id)
	}
	if rows.Err() != nil || len(before) < 50 {
		t.Fatalf("%d entries to page through: %v", len(before), rows.Err())
	}

	stop := make(chan struct{})
	var added atomic.Int64
	var wg sync.WaitGroup
	// Entries are added from when the first page has been answered until the last.
	adding := func() {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := env.DB.Exec(ctx, insert, annTeam, ann["user_id"], "test.during", 2); err != nil {
					t.Error(err)
					return
				}
				added.Add(2)
			}
		})
	}

	var got []int64
	var lastAt time.Time
	path := "/v1/audit-logs?limit=7"
	for pages := 0; ; pages++ {
		if pages > 50 {
			t.Fatal("more pages than entries")
		}
		status, body := annC.do("GET", path, "")
		if status != 200 {
			t.Fatalf("GET %s: %d %v", path, status, body)
		}
		entries := auditEntries(t, body)
		if len(entries) > 7 {
			t.Errorf("a page of limit 7 has %d entries", len(entries))
		}
		for _, e := range entries {
			at, _ := time.Parse(time.RFC3339Nano, e["created_at"].(string))
			id := int64(e["id"].(float64))
			if e["action"] == "test.during" {
				t.Errorf("page %d has an entry added after the first page: %v", pages, e)
			}
			if len(got) > 0 && (at.After(lastAt) || (at.Equal(lastAt) && id >= got[len(got)-1])) {
				t.Errorf("entry %d (%s) after %d (%s): not newest first", id, at, got[len(got)-1], lastAt)
			}
			got, lastAt = append(got, id), at
		}
		if pages == 0 {
			adding()
		}
		if pages == 1 {
			// Some entries are certainly added after the first page.
			for n := added.Load(); added.Load() < n+4; {
				time.Sleep(time.Millisecond)
			}
		}
		next, more := body["next_before"].(string)
		nextID, _ := body["next_before_id"].(float64)
		if !more {
			if _, ok := body["next_before_id"]; ok {
				t.Errorf("next_before_id without next_before: %v", body)
			}
			break
		}
		path = fmt.Sprintf("/v1/audit-logs?limit=7&before=%s&before_id=%d", url.QueryEscape(next), int64(nextID))
	}
	close(stop)
	wg.Wait()

	seen := map[int64]int{}
	for _, id := range got {
		seen[id]++
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("entry %d on %d pages", id, n)
		}
	}
	for _, id := range before {
		if seen[id] != 1 {
			t.Errorf("entry %d, there before the first page, is on %d pages", id, seen[id])
		}
	}
	if added.Load() == 0 {
		t.Error("nothing was added while paging")
	}
}
