package api_test

import (
	"testing"

	"github.com/wrennhq/wrenn/internal/server/servertest"
)

// GET /v1/me: the user, their teams with roles (the default first) and the team the
// token acts for; a key or no credentials are refused.
func TestMe(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	ann := signup(anon, "me-ann@example.com")
	annC := anon.bearer(ann["token"].(string))

	status, me := annC.do("GET", "/v1/me", "")
	if status != 200 {
		t.Fatalf("GET /v1/me: %d %v", status, me)
	}
	user := me["user"].(map[string]any)
	teams := me["teams"].([]any)
	if user["id"] != ann["user_id"] || user["email"] != "me-ann@example.com" || user["is_admin"] != false ||
		me["current_team_id"] != ann["team_id"] || len(teams) != 1 {
		t.Fatalf("GET /v1/me: %v (signup %v)", me, ann)
	}
	if team := teams[0].(map[string]any); team["id"] != ann["team_id"] || team["role"] != "owner" || team["is_default"] != true || team["slug"] == "" {
		t.Errorf("the personal team: %v", team)
	}

	_, key := annC.do("POST", "/v1/api-keys", `{"name":"k"}`)
	if status, body := anon.with("X-API-Key", key["key"].(string)).do("GET", "/v1/me", ""); status != 403 || errCode(body) != "forbidden" {
		t.Errorf("GET /v1/me with an API key: %d %v", status, body)
	}
	if status, body := anon.do("GET", "/v1/me", ""); status != 401 || errCode(body) != "unauthorized" {
		t.Errorf("GET /v1/me without credentials: %d %v", status, body)
	}
	if status, _ := anon.bearer("not-a-token").do("GET", "/v1/me", ""); status != 401 {
		t.Errorf("GET /v1/me with a bad token: %d", status)
	}
}
