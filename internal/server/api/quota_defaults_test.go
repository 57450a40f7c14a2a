package api_test

import (
	"strings"
	"testing"

	"github.com/wrennhq/wrenn/internal/server/core"
	"github.com/wrennhq/wrenn/internal/server/servertest"
)

// The server's default quota (WRENN_QUOTA_*) holds every team without an override,
// each team on its own; revoking a key frees its place; an override of 0 lifts a limit.
func TestTeamQuotaDefaults(t *testing.T) {
	env := servertest.NewWithQuota(t, core.Quota{Sandboxes: 1, VCPUs: 2, MemoryMB: 1024, APIKeys: 1})
	anon := newCall(t, env)
	_, admin := platformAdmin(t, env, anon, "root@example.com")
	ann := signup(anon, "ann@example.com")
	annTeam := ann["team_id"].(string)
	annC := anon.bearer(ann["token"].(string))
	bobC := anon.bearer(signup(anon, "bob@example.com")["token"].(string))

	if status, q := annC.do("GET", "/v1/teams/"+annTeam+"/quotas", ""); status != 200 ||
		toJSON(q["sandboxes"]) != `{"limit":1,"override":null,"used":0}` || toJSON(q["vcpus"]) != `{"limit":2,"override":null,"used":0}` ||
		toJSON(q["memory_mb"]) != `{"limit":1024,"override":null,"used":0}` || toJSON(q["api_keys"]) != `{"limit":1,"override":null,"used":0}` {
		t.Errorf("default quota: %d %v", status, q)
	}
	for _, c := range []call{annC, bobC} {
		if status, body := c.do("POST", "/v1/sandboxes", `{}`); status != 201 {
			t.Fatalf("first sandbox of a team: %d %v", status, body)
		}
	}
	if status, body := annC.do("POST", "/v1/sandboxes", `{}`); status != 429 || errCode(body) != "quota_exceeded" ||
		!strings.HasPrefix(errMessage(body), "team quota exceeded: 1 concurrent sandboxes (limit 1)") {
		t.Errorf("second sandbox past the default: %d %v", status, body)
	}
	if status, body := annC.do("POST", "/v1/sandboxes", `{"vcpus":3}`); status != 403 || errCode(body) != "forbidden" {
		t.Errorf("a sandbox bigger than the default vCPU limit: %d %v", status, body)
	}

	status, key := annC.do("POST", "/v1/api-keys", `{"name":"one"}`)
	if status != 201 {
		t.Fatalf("first key: %d %v", status, key)
	}
	if status, body := annC.do("POST", "/v1/api-keys", `{"name":"two"}`); status != 429 || errCode(body) != "quota_exceeded" ||
		errMessage(body) != "team quota exceeded: 1 API keys (limit 1); revoke a key, or ask a platform administrator to raise the limit" {
		t.Errorf("second key past the default: %d %v", status, body)
	}
	if status, body := annC.do("DELETE", "/v1/api-keys/"+key["id"].(string), ""); status != 204 {
		t.Fatalf("revoke: %d %v", status, body)
	}
	if status, body := annC.do("POST", "/v1/api-keys", `{"name":"two"}`); status != 201 {
		t.Errorf("a key after revoking one: %d %v", status, body)
	}

	// 0 overrides a default with no limit.
	setQuota(t, admin, annTeam, `{"sandboxes":0,"api_keys":0}`)
	for i := range 3 {
		if status, body := annC.do("POST", "/v1/api-keys", `{"name":"more"}`); status != 201 {
			t.Errorf("key %d with no limit: %d %v", i, status, body)
		}
	}
	if status, body := annC.do("POST", "/v1/sandboxes", `{}`); status != 201 {
		t.Errorf("sandbox with no sandbox limit (1 of 2 vCPUs held): %d %v", status, body)
	}
	if status, body := annC.do("POST", "/v1/sandboxes", `{}`); status != 429 || !strings.Contains(errMessage(body), "2 vCPUs in use + 1 requested (limit 2)") {
		t.Errorf("the default vCPU limit still holds: %d %v", status, body)
	}
}
