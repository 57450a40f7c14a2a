package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/wrennhq/wrenn/internal/server/servertest"
)

// reply is one response of a burst.
type reply struct {
	status int
	body   map[string]any
}

// burst sends n requests at once as c (with its credentials) and returns the answers;
// it runs off the test goroutine, so it reports transport errors instead of failing.
func burst(t *testing.T, c call, n int, method, path, body string) []reply {
	t.Helper()
	out := make([]reply, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range out {
		wg.Go(func() {
			req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			req.Header = c.header.Clone()
			req.Header.Set("Content-Type", "application/json")
			<-start
			resp, err := c.http.Do(req)
			if err != nil {
				t.Errorf("%s %s: %v", method, path, err)
				return
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			out[i].status = resp.StatusCode
			_ = json.Unmarshal(raw, &out[i].body)
		})
	}
	close(start)
	wg.Wait()
	return out
}

// setQuota overrides team's quota as a platform administrator; it reports, not
// fails, so that the test goes on to show what the limit did (or did not) do.
func setQuota(t *testing.T, admin call, team, body string) map[string]any {
	t.Helper()
	status, q := admin.do("PATCH", "/v1/teams/"+team+"/quotas", body)
	if status != 200 {
		t.Errorf("set quota of %s to %s: %d %v", team, body, status, q)
	}
	return q
}

// liveSandboxes counts a team's sandboxes that hold host capacity, from the database.
func liveSandboxes(t *testing.T, env *servertest.Env, team string) int {
	t.Helper()
	var n int
	if err := env.DB.QueryRow(context.Background(), `SELECT count(*) FROM sandboxes WHERE team_id = $1 AND status NOT IN ('stopped', 'error')`, team).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// The regression test of issue 12, finding 5: nothing limited a team, so one team
// could fill every shared host. Ten parallel creates of a team limited to three
// sandboxes: exactly three are placed, the other seven answer 429 naming the limit,
// and another team is not held back. The same for API keys. Before quotas all ten
// creates succeeded.
func TestTeamQuotaParallelBurst(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	_, admin := platformAdmin(t, env, anon, "root@example.com")
	ann := signup(anon, "ann@example.com")
	annTeam := ann["team_id"].(string)
	annC := anon.bearer(ann["token"].(string))
	status, key := annC.do("POST", "/v1/api-keys", `{"name":"ci"}`)
	if status != 201 {
		t.Fatalf("create key: %d %v", status, key)
	}
	annKey := anon.with("X-API-Key", key["key"].(string))
	setQuota(t, admin, annTeam, `{"sandboxes":3,"api_keys":4}`)

	created := 0
	for _, a := range burst(t, annKey, 10, "POST", "/v1/sandboxes", `{"template":"base"}`) {
		switch msg := errMessage(a.body); {
		case a.status == 201:
			created++
		case a.status == 429 && errCode(a.body) == "quota_exceeded" &&
			strings.HasPrefix(msg, "team quota exceeded: 3 concurrent sandboxes (limit 3); destroy a sandbox, or ask a platform administrator to raise the limit"):
		default:
			t.Errorf("create in the burst: %d %v, want 201 or 429 naming the limit", a.status, a.body)
		}
	}
	if created != 3 {
		t.Errorf("%d of 10 parallel creates succeeded for a team limited to 3 sandboxes", created)
	}
	if n := liveSandboxes(t, env, annTeam); n != 3 {
		t.Errorf("the team holds %d sandboxes, limit 3", n)
	}

	// Another team, limited alike, is not held back by ann's full quota.
	bob := signup(anon, "bob@example.com")
	bobC := anon.bearer(bob["token"].(string))
	setQuota(t, admin, bob["team_id"].(string), `{"sandboxes":3}`)
	if status, body := bobC.do("POST", "/v1/sandboxes", `{}`); status != 201 {
		t.Errorf("bob's create while ann is at her limit: %d %v", status, body)
	}

	// API keys: one exists, the limit is 4, so three of ten parallel creates succeed.
	keys := 0
	for _, a := range burst(t, annC, 10, "POST", "/v1/api-keys", `{"name":"burst"}`) {
		switch {
		case a.status == 201:
			keys++
		case a.status == 429 && errCode(a.body) == "quota_exceeded" &&
			strings.HasPrefix(errMessage(a.body), "team quota exceeded: 4 API keys (limit 4); revoke a key"):
		default:
			t.Errorf("key create in the burst: %d %v, want 201 or 429 naming the limit", a.status, a.body)
		}
	}
	if _, list := annC.do("GET", "/v1/api-keys", ""); keys != 3 || len(list["api_keys"].([]any)) != 4 {
		t.Errorf("%d of 10 parallel key creates succeeded with 1 of 4 keys used; the team has %v", keys, list)
	}
}

// A team at its limit hears which limit; destroying a sandbox frees quota; a platform
// administrator's override raises and lowers it, null returns it to the default; a
// team's members read it, nobody else does, and only administrators change it.
func TestTeamQuotaOverrides(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	root, admin := platformAdmin(t, env, anon, "root@example.com")
	ann := signup(anon, "ann@example.com")
	annTeam := ann["team_id"].(string)
	annC := anon.bearer(ann["token"].(string))
	carl := member(t, env, anon, signup(anon, "carl@example.com"), annTeam)
	bob := signup(anon, "bob@example.com")
	bobC := anon.bearer(bob["token"].(string))
	create := func(c call, body string) (int, map[string]any) {
		t.Helper()
		return c.do("POST", "/v1/sandboxes", body)
	}

	// servertest's default quota is none: every limit reads 0 (no limit), no override.
	status, q := annC.do("GET", "/v1/teams/"+annTeam+"/quotas", "")
	if status != 200 || q["team_id"] != annTeam || toJSON(q["sandboxes"]) != `{"limit":0,"override":null,"used":0}` {
		t.Fatalf("ann's quota: %d %v", status, q)
	}

	q = setQuota(t, admin, annTeam, `{"sandboxes":2,"vcpus":3,"memory_mb":2048}`)
	if toJSON(q["sandboxes"]) != `{"limit":2,"override":2,"used":0}` || toJSON(q["api_keys"]) != `{"limit":0,"override":null,"used":0}` {
		t.Errorf("quota after the override: %v", q)
	}
	var first string
	for i := range 2 {
		status, sb := create(annC, `{}`)
		if status != 201 {
			t.Fatalf("create %d within the limit: %d %v", i, status, sb)
		}
		first = sb["id"].(string)
	}
	status, body := create(annC, `{}`)
	if status != 429 || errCode(body) != "quota_exceeded" || errMessage(body) != "team quota exceeded: 2 concurrent sandboxes (limit 2); destroy a sandbox, or ask a platform administrator to raise the limit" {
		t.Errorf("create past the sandbox limit: %d %v", status, body)
	}
	if status, body := create(bobC, `{}`); status != 201 {
		t.Errorf("another team, no override: %d %v", status, body)
	}
	// A member sees the team's quota and usage.
	if status, q := carl.do("GET", "/v1/teams/"+annTeam+"/quotas", ""); status != 200 ||
		toJSON(q["sandboxes"]) != `{"limit":2,"override":2,"used":2}` || toJSON(q["vcpus"]) != `{"limit":3,"override":3,"used":2}` ||
		toJSON(q["memory_mb"]) != `{"limit":2048,"override":2048,"used":1024}` {
		t.Errorf("carl reads ann's team's quota: %d %v", status, q)
	}

	// Destroying a sandbox frees its share.
	if status, body := annC.do("DELETE", "/v1/sandboxes/"+first, ""); status != 204 {
		t.Fatalf("destroy: %d %v", status, body)
	}
	status, sb := create(annC, `{}`)
	if status != 201 {
		t.Fatalf("create after a destroy: %d %v", status, sb)
	}
	// vCPUs and memory: 2 of 3 vCPUs and 1024 of 2048 MB are held by two sandboxes.
	setQuota(t, admin, annTeam, `{"sandboxes":10}`)
	for _, c := range []struct {
		body, code, msg string
		status          int
	}{
		{`{"vcpus":2}`, "quota_exceeded", "team quota exceeded: 2 vCPUs in use + 2 requested (limit 3); destroy a sandbox", 429},
		{`{"memory_mb":1536}`, "quota_exceeded", "team quota exceeded: 1024 MB of memory in use + 1536 requested (limit 2048 MB); destroy a sandbox", 429},
		{`{"vcpus":4}`, "forbidden", "forbidden: a sandbox of 4 vCPUs is over the team's quota of 3 vCPUs; ask a platform administrator to raise the limit", 403},
		{`{"memory_mb":4096}`, "forbidden", "forbidden: a sandbox of 4096 MB of memory is over the team's quota of 2048 MB of memory", 403},
	} {
		if status, body := create(annC, c.body); status != c.status || errCode(body) != c.code || !strings.HasPrefix(errMessage(body), c.msg) {
			t.Errorf("create %s: %d %v, want %d %q", c.body, status, body, c.status, c.msg)
		}
	}
	if status, body := create(annC, `{"vcpus":1,"memory_mb":1024}`); status != 201 {
		t.Errorf("create that just fits: %d %v", status, body)
	}

	// Lowering below what the team holds stops nothing; null returns to the default.
	q = setQuota(t, admin, annTeam, `{"sandboxes":1}`)
	if toJSON(q["sandboxes"]) != `{"limit":1,"override":1,"used":3}` || toJSON(q["vcpus"]) != `{"limit":3,"override":3,"used":3}` {
		t.Errorf("quota lowered below usage: %v", q)
	}
	if status, body := create(annC, `{}`); status != 429 || !strings.Contains(errMessage(body), "3 concurrent sandboxes (limit 1)") {
		t.Errorf("create over a lowered limit: %d %v", status, body)
	}
	q = setQuota(t, admin, annTeam, `{"sandboxes":null,"vcpus":null,"memory_mb":null}`)
	if toJSON(q["sandboxes"]) != `{"limit":0,"override":null,"used":3}` || toJSON(q["memory_mb"]) != `{"limit":0,"override":null,"used":2048}` {
		t.Errorf("quota reset to the defaults: %v", q)
	}
	if status, body := create(annC, `{"vcpus":4}`); status != 201 {
		t.Errorf("create after the reset: %d %v", status, body)
	}
	if q := setQuota(t, admin, annTeam, `{}`); toJSON(q["sandboxes"]) != `{"limit":0,"override":null,"used":4}` {
		t.Errorf("an empty change: %v", q)
	}

	// Who may read and change it.
	_, key := annC.do("POST", "/v1/api-keys", `{"name":"k"}`)
	keyC := anon.with("X-API-Key", key["key"].(string))
	for _, c := range []struct {
		name   string
		who    call
		method string
		team   string
		body   string
		status int
		code   string
	}{
		{"the owner changes her own team's", annC, "PATCH", annTeam, `{"sandboxes":100}`, 403, "forbidden"},
		{"a member changes it", carl, "PATCH", annTeam, `{"sandboxes":100}`, 403, "forbidden"},
		{"an API key reads it", keyC, "GET", annTeam, "", 403, "forbidden"},
		{"an API key changes it", keyC, "PATCH", annTeam, `{"sandboxes":100}`, 403, "forbidden"},
		{"another team's user reads it", bobC, "GET", annTeam, "", 404, "not_found"},
		{"no credentials", anon, "GET", annTeam, "", 401, "unauthorized"},
		{"unknown team", admin, "PATCH", "00000000-0000-0000-0000-000000000000", `{"sandboxes":1}`, 404, "not_found"},
		{"malformed team", admin, "GET", "not-a-team", "", 404, "not_found"},
		{"negative", admin, "PATCH", annTeam, `{"sandboxes":-1}`, 400, "invalid_request"},
		{"too big", admin, "PATCH", annTeam, `{"memory_mb":2147483648}`, 400, "invalid_request"},
		{"fraction", admin, "PATCH", annTeam, `{"vcpus":1.5}`, 400, "invalid_json"},
		{"string", admin, "PATCH", annTeam, `{"vcpus":"8"}`, 400, "invalid_json"},
		{"unknown limit", admin, "PATCH", annTeam, `{"gpus":1}`, 400, "invalid_json"},
	} {
		if status, body := c.who.do(c.method, "/v1/teams/"+c.team+"/quotas", c.body); status != c.status || errCode(body) != c.code {
			t.Errorf("%s: %d %v, want %d %s", c.name, status, body, c.status, c.code)
		}
	}
	if status, q := admin.do("GET", "/v1/teams/"+annTeam+"/quotas", ""); status != 200 || toJSON(q["sandboxes"]) != `{"limit":0,"override":null,"used":4}` {
		t.Errorf("an administrator reads a team's quota (refused changes changed nothing): %d %v", status, q)
	}
	var n int
	if err := env.DB.QueryRow(context.Background(), `SELECT count(*) FROM audit_logs WHERE action = 'team.quota' AND resource_id = $1 AND actor_user_id = $2`, annTeam, root["user_id"]).Scan(&n); err != nil || n != 5 {
		t.Errorf("team.quota audit entries: %d %v, want 5", n, err)
	}
}
