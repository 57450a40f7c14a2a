package api_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/wrennhq/wrenn/internal/agent/agenttest"
	"github.com/wrennhq/wrenn/internal/server/servertest"
)

// fingerprint is a well-formed agent certificate fingerprint.
var fingerprint = strings.Repeat("ab", 32)

// registerBody is a registration request with the token and address given.
func registerBody(token, address, fp string) string {
	return fmt.Sprintf(`{"token":%q,"address":%q,"cert_fingerprint":%q,"version":"v-test","capacity":{"vcpus":8,"memory_mb":16384}}`, token, address, fp)
}

var heartbeatBody = `{"cert_fingerprint":"` + fingerprint + `","version":"v-test","capacity":{"vcpus":8,"memory_mb":16384},"sandboxes":0}`

// platformAdmin signs up a user and makes them a platform administrator, as `wrenn
// admin grant` does.
func platformAdmin(t *testing.T, env *servertest.Env, anon call, email string) (map[string]any, call) {
	t.Helper()
	s := signup(anon, email)
	if _, err := env.DB.Exec(context.Background(), `UPDATE users SET is_admin = true WHERE id = $1`, s["user_id"]); err != nil {
		t.Fatal(err)
	}
	return s, anon.bearer(s["token"].(string))
}

// member adds the user of session s to team as a member and returns a call acting
// for that team.
func member(t *testing.T, env *servertest.Env, anon call, s map[string]any, team string) call {
	t.Helper()
	if _, err := env.DB.Exec(context.Background(), `INSERT INTO users_teams (user_id, team_id, role, is_default) VALUES ($1, $2, 'member', false)`, s["user_id"], team); err != nil {
		t.Fatal(err)
	}
	status, sess := anon.bearer(s["token"].(string)).do("POST", "/v1/auth/switch-team", `{"team_id":"`+team+`"}`)
	if status != 200 || sess["role"] != "member" {
		t.Fatalf("switch into %s as a member: %d %v", team, status, sess)
	}
	return anon.bearer(sess["token"].(string))
}

// setBYOC lets a team run on its own hosts (admin is a platform administrator).
func setBYOC(t *testing.T, admin call, team string, byoc bool) {
	t.Helper()
	if status, body := admin.do("POST", "/v1/admin/teams/"+team+"/byoc", fmt.Sprintf(`{"byoc":%t}`, byoc)); status != 204 {
		t.Fatalf("set team %s byoc=%t: %d %v", team, byoc, status, body)
	}
}

// newHost creates a host and returns it with its registration token.
func newHost(t *testing.T, c call, name string, platform bool) map[string]any {
	t.Helper()
	status, h := c.do("POST", "/v1/hosts", fmt.Sprintf(`{"name":%q,"platform":%t}`, name, platform))
	if status != 201 {
		t.Fatalf("create host %s: %d %v", name, status, h)
	}
	return h
}

// registered creates a platform host and registers it; it returns the host's id and
// the registration answer.
func registered(t *testing.T, admin, anon call, name string) (string, map[string]any) {
	t.Helper()
	h := newHost(t, admin, name, true)
	status, reg := anon.do("POST", "/v1/hosts/register", registerBody(h["registration_token"].(string), "10.0.0.5:50051", fingerprint))
	if status != 201 {
		t.Fatalf("register %s: %d %v", name, status, reg)
	}
	return h["id"].(string), reg
}

func hostIDs(t *testing.T, c call) []string {
	t.Helper()
	status, list := c.do("GET", "/v1/hosts", "")
	if status != 200 {
		t.Fatalf("list hosts: %d %v", status, list)
	}
	var ids []string
	for _, h := range list["hosts"].([]any) {
		ids = append(ids, h.(map[string]any)["id"].(string))
	}
	slices.Sort(ids)
	return ids
}

func sorted(ids ...string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// Who may add which host: platform hosts are for platform administrators, team hosts
// for owners and admins of BYOC teams, and never with an API key.
func TestCreateHostAuthorization(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	_, admin := platformAdmin(t, env, anon, "root@example.com")
	ann := signup(anon, "ann@example.com")
	annC := anon.bearer(ann["token"].(string))
	annTeam := ann["team_id"].(string)
	carl := member(t, env, anon, signup(anon, "carl@example.com"), annTeam)

	h := newHost(t, admin, "rack1", true)
	if tok, _ := h["registration_token"].(string); !strings.HasPrefix(tok, "wrh_") || len(tok) != 68 {
		t.Errorf("registration token %q", tok)
	}
	if h["status"] != "pending" || h["team_id"] != nil || h["name"] != "rack1" || h["registration_token_expires_at"] == nil {
		t.Errorf("new platform host: %v", h)
	}
	// Only the token's hash is kept.
	var stored []byte
	if err := env.DB.QueryRow(context.Background(), `SELECT token_hash FROM host_tokens WHERE host_id = $1`, h["id"]).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	tok := h["registration_token"].(string)
	if raw, _ := hex.DecodeString(tok[4:]); bytes.Contains(stored, []byte(tok)) || bytes.Contains(stored, raw) || len(stored) != 32 {
		t.Errorf("stored registration token material %x", stored)
	}

	for _, c := range []struct {
		name string
		who  call
		body string
		code int
	}{
		{"non-admin, platform host", annC, `{"name":"x","platform":true}`, 403},
		{"team host of a team that is not BYOC", annC, `{"name":"x"}`, 403},
		{"empty name", admin, `{"name":"  ","platform":true}`, 400},
		{"name over 100", admin, `{"name":"` + strings.Repeat("n", 101) + `","platform":true}`, 400},
		{"unknown field", admin, `{"name":"x","platform":true,"team_id":"` + annTeam + `"}`, 400},
		{"not json", admin, `{"name":`, 400},
	} {
		status, body := c.who.do("POST", "/v1/hosts", c.body)
		if status != c.code || errCode(body) == "" {
			t.Errorf("%s: %d %v, want %d", c.name, status, body, c.code)
		}
	}
	if status, body := annC.do("POST", "/v1/admin/teams/"+annTeam+"/byoc", `{"byoc":true}`); status != 403 || errCode(body) != "forbidden" {
		t.Errorf("a team owner making their own team BYOC: %d %v", status, body)
	}
	for _, team := range []string{"00000000-0000-0000-0000-000000000000", "not-a-team"} {
		if status, body := admin.do("POST", "/v1/admin/teams/"+team+"/byoc", `{"byoc":true}`); status != 404 || errCode(body) != "not_found" {
			t.Errorf("byoc for team %s: %d %v", team, status, body)
		}
	}

	setBYOC(t, admin, annTeam, true)
	th := newHost(t, annC, "ann-box", false)
	if th["team_id"] != annTeam || th["status"] != "pending" {
		t.Errorf("team host: %v", th)
	}
	if status, body := carl.do("POST", "/v1/hosts", `{"name":"carl-box"}`); status != 403 || errCode(body) != "forbidden" {
		t.Errorf("a member adding a team host: %d %v", status, body)
	}
	if status, body := annC.do("POST", "/v1/hosts", `{"name":"x","platform":true}`); status != 403 {
		t.Errorf("a BYOC owner adding a platform host: %d %v", status, body)
	}
	// API keys never manage hosts, not even the team's own.
	_, key := annC.do("POST", "/v1/api-keys", `{"name":"k"}`)
	keyC := anon.with("X-API-Key", key["key"].(string))
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/v1/hosts", `{"name":"k-box"}`},
		{"GET", "/v1/hosts", ""},
		{"GET", "/v1/hosts/" + th["id"].(string), ""},
		{"DELETE", "/v1/hosts/" + th["id"].(string), ""},
		{"PUT", "/v1/hosts/" + th["id"].(string) + "/tags/gpu", ""},
	} {
		if status, body := keyC.do(r.method, r.path, r.body); status != 403 || errCode(body) != "forbidden" {
			t.Errorf("API key: %s %s: %d %v", r.method, r.path, status, body)
		}
	}
	if status, body := anon.do("GET", "/v1/hosts", ""); status != 401 || errCode(body) != "unauthorized" {
		t.Errorf("no credentials: %d %v", status, body)
	}

	// BYOC switched off again: no more team hosts.
	setBYOC(t, admin, annTeam, false)
	if status, body := annC.do("POST", "/v1/hosts", `{"name":"again"}`); status != 403 {
		t.Errorf("team host after BYOC was switched off: %d %v", status, body)
	}
	var n int
	if err := env.DB.QueryRow(context.Background(), `SELECT count(*) FROM audit_logs WHERE action = 'host.create'`).Scan(&n); err != nil || n != 2 {
		t.Errorf("host.create audit entries: %d %v", n, err)
	}
}

func TestRegisterHost(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	_, admin := platformAdmin(t, env, anon, "root@example.com")
	ctx := context.Background()

	h := newHost(t, admin, "rack1", true)
	id, tok := h["id"].(string), h["registration_token"].(string)
	// Malformed requests are refused before the token is spent.
	for _, bad := range []struct{ name, body string }{
		{"no port", registerBody(tok, "10.0.0.5", fingerprint)},
		{"port 0", registerBody(tok, "10.0.0.5:0", fingerprint)},
		{"port too big", registerBody(tok, "10.0.0.5:65536", fingerprint)},
		{"named port", registerBody(tok, "10.0.0.5:grpc", fingerprint)},
		{"no host", registerBody(tok, ":50051", fingerprint)},
		{"upper-case fingerprint", registerBody(tok, "10.0.0.5:50051", strings.ToUpper(fingerprint))},
		{"short fingerprint", registerBody(tok, "10.0.0.5:50051", fingerprint[1:])},
		{"no fingerprint", registerBody(tok, "10.0.0.5:50051", "")},
		{"negative capacity", fmt.Sprintf(`{"token":%q,"address":"10.0.0.5:50051","cert_fingerprint":%q,"capacity":{"vcpus":-1}}`, tok, fingerprint)},
		{"unknown field", fmt.Sprintf(`{"token":%q,"address":"10.0.0.5:50051","cert_fingerprint":%q,"host_id":%q}`, tok, fingerprint, id)},
	} {
		if status, body := anon.do("POST", "/v1/hosts/register", bad.body); status != 400 || errCode(body) == "" {
			t.Errorf("%s: %d %v", bad.name, status, body)
		}
	}
	if status, got := admin.do("GET", "/v1/hosts/"+id, ""); status != 200 || got["status"] != "pending" || got["registered_at"] != nil {
		t.Errorf("after refused registrations: %d %v", status, got)
	}

	status, reg := anon.do("POST", "/v1/hosts/register", registerBody(tok, "10.0.0.5:50051", fingerprint))
	if status != 201 {
		t.Fatalf("register: %d %v", status, reg)
	}
	secret, _ := reg["host_secret"].(string)
	if reg["host_id"] != id || !strings.HasPrefix(secret, "wrs_") || !strings.HasPrefix(reg["refresh_token"].(string), "wrr_") || reg["token"] == "" {
		t.Errorf("registration answer: %v", reg)
	}
	status, got := admin.do("GET", "/v1/hosts/"+id, "")
	if status != 200 || got["status"] != "online" || got["address"] != "10.0.0.5:50051" || got["cert_fingerprint"] != fingerprint ||
		got["vcpus"] != float64(8) || got["memory_mb"] != float64(16384) || got["agent_version"] != "v-test" ||
		got["registered_at"] == nil || got["last_heartbeat_at"] == nil {
		t.Errorf("registered host: %d %v", status, got)
	}

	// Single use; unknown and malformed tokens are refused alike.
	for name, body := range map[string]string{
		"the same token again": registerBody(tok, "10.0.0.6:50051", fingerprint),
		"an unknown token":     registerBody("wrh_"+strings.Repeat("0", 64), "10.0.0.6:50051", fingerprint),
		"a garbage token":      registerBody("garbage", "10.0.0.6:50051", fingerprint),
		"a refresh token":      registerBody(reg["refresh_token"].(string), "10.0.0.6:50051", fingerprint),
		"no token":             `{"address":"10.0.0.6:50051","cert_fingerprint":"` + fingerprint + `"}`,
	} {
		if status, body := anon.do("POST", "/v1/hosts/register", body); status != 401 || errCode(body) != "unauthorized" {
			t.Errorf("%s: %d %v", name, status, body)
		}
	}
	if _, got := admin.do("GET", "/v1/hosts/"+id, ""); got["address"] != "10.0.0.5:50051" {
		t.Errorf("a refused registration changed the host: %v", got)
	}

	// The secret is kept sealed: the row does not hold it, yet the control plane can
	// open it to reach the host.
	var sealed []byte
	if err := env.DB.QueryRow(ctx, `SELECT secret_sealed FROM hosts WHERE id = $1`, id).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(strings.TrimPrefix(secret, "wrs_"))
	if len(sealed) == 0 || bytes.Contains(sealed, []byte(secret)) || bytes.Contains(sealed, []byte(strings.TrimPrefix(secret, "wrs_"))) || bytes.Contains(sealed, raw) {
		t.Errorf("secret_sealed holds the secret: %x", sealed)
	}
	conn, err := env.Service.Hosts.HostConn(ctx, id)
	if err != nil || conn.Secret != secret || conn.Address != "10.0.0.5:50051" || conn.CertFingerprint != fingerprint {
		t.Errorf("HostConn: %+v %v", conn, err)
	}

	// A host deleted before its agent registers cannot be registered.
	h2 := newHost(t, admin, "rack2", true)
	if status, body := admin.do("DELETE", "/v1/hosts/"+h2["id"].(string), ""); status != 204 {
		t.Fatalf("delete a pending host: %d %v", status, body)
	}
	if status, body := anon.do("POST", "/v1/hosts/register", registerBody(h2["registration_token"].(string), "10.0.0.7:50051", fingerprint)); status != 409 || errCode(body) != "conflict" {
		t.Errorf("registering a deleted host: %d %v", status, body)
	}
}

// Refresh tokens rotate issue-then-revoke, so an agent that crashed before saving its
// new refresh token can still refresh with the old one.
func TestHostRefreshRotation(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	_, admin := platformAdmin(t, env, anon, "root@example.com")
	id, reg := registered(t, admin, anon, "rack1")

	refresh := func(tok string) (int, map[string]any) {
		t.Helper()
		return anon.do("POST", "/v1/hosts/auth/refresh", `{"refresh_token":"`+tok+`"}`)
	}
	r0 := reg["refresh_token"].(string)
	status, t1 := refresh(r0)
	if status != 200 || !strings.HasPrefix(t1["refresh_token"].(string), "wrr_") || t1["refresh_token"] == r0 || t1["token"] == "" || t1["token"] == reg["token"] {
		t.Fatalf("refresh R0: %d %v", status, t1)
	}
	r1 := t1["refresh_token"].(string)
	// The host crashed before saving R1: R0 still works and voids R1.
	status, t2 := refresh(r0)
	if status != 200 {
		t.Fatalf("refresh with R0 again: %d %v", status, t2)
	}
	r2 := t2["refresh_token"].(string)
	if status, body := refresh(r1); status != 401 || errCode(body) != "unauthorized" {
		t.Errorf("R1, voided by R0's second use: %d %v", status, body)
	}
	// R2's first use completes the rotation: R0 is revoked.
	status, t3 := refresh(r2)
	if status != 200 {
		t.Fatalf("refresh with R2: %d %v", status, t3)
	}
	if status, body := refresh(r0); status != 401 {
		t.Errorf("R0 after R2 was used: %d %v", status, body)
	}
	r3 := t3["refresh_token"].(string)
	// Every host token issued along the way is a working host token.
	for _, jwt := range []any{reg["token"], t1["token"], t2["token"], t3["token"]} {
		if status, body := anon.bearer(jwt.(string)).do("POST", "/v1/hosts/heartbeat", heartbeatBody); status != 200 {
			t.Errorf("heartbeat with a refreshed token: %d %v", status, body)
		}
	}
	for name, body := range map[string]string{
		"garbage":              `{"refresh_token":"garbage"}`,
		"unknown":              `{"refresh_token":"wrr_` + strings.Repeat("0", 64) + `"}`,
		"a host secret":        `{"refresh_token":"` + reg["host_secret"].(string) + `"}`,
		"no token":             `{}`,
		"a registration token": `{"refresh_token":"wrh_` + strings.Repeat("1", 64) + `"}`,
	} {
		if status, resp := anon.do("POST", "/v1/hosts/auth/refresh", body); status != 401 || errCode(resp) != "unauthorized" {
			t.Errorf("%s: %d %v", name, status, resp)
		}
	}
	if status, body := anon.do("POST", "/v1/hosts/auth/refresh", `{"refresh_token":"`+r3+`","host_id":"`+id+`"}`); status != 400 {
		t.Errorf("unknown field: %d %v", status, body)
	}

	// A deleted host's refresh tokens are dead.
	if status, body := admin.do("DELETE", "/v1/hosts/"+id, ""); status != 204 {
		t.Fatalf("delete host: %d %v", status, body)
	}
	if status, body := refresh(r3); status != 401 || errCode(body) != "unauthorized" {
		t.Errorf("refresh of a deleted host: %d %v", status, body)
	}
}

func TestHostHeartbeat(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	adminS, admin := platformAdmin(t, env, anon, "root@example.com")
	id, reg := registered(t, admin, anon, "rack1")
	hostC := anon.bearer(reg["token"].(string))
	ctx := context.Background()

	status, hb := hostC.do("POST", "/v1/hosts/heartbeat", heartbeatBody)
	if status != 200 || hb["status"] != "online" || hb["interval_sec"] != float64(30) {
		t.Fatalf("heartbeat: %d %v", status, hb)
	}
	// The heartbeat carries the host's current capacity and version.
	if status, _ := hostC.do("POST", "/v1/hosts/heartbeat", `{"cert_fingerprint":"`+fingerprint+`","version":"v2","capacity":{"vcpus":4,"memory_mb":2048},"sandboxes":3}`); status != 200 {
		t.Errorf("heartbeat with new capacity: %d", status)
	}
	if _, got := admin.do("GET", "/v1/hosts/"+id, ""); got["vcpus"] != float64(4) || got["memory_mb"] != float64(2048) || got["agent_version"] != "v2" {
		t.Errorf("host after heartbeat: %v", got)
	}
	// An unreachable host is online again with its next heartbeat.
	if _, err := env.DB.Exec(ctx, `UPDATE hosts SET status = 'unreachable' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	if status, hb := hostC.do("POST", "/v1/hosts/heartbeat", heartbeatBody); status != 200 || hb["status"] != "online" {
		t.Errorf("heartbeat of an unreachable host: %d %v", status, hb)
	}
	if status, body := hostC.do("POST", "/v1/hosts/heartbeat", `{"cert_fingerprint":"`+fingerprint+`","capacity":{"vcpus":-2}}`); status != 400 || errCode(body) != "invalid_request" {
		t.Errorf("negative capacity: %d %v", status, body)
	}
	if status, body := hostC.do("POST", "/v1/hosts/heartbeat", `{"load":1}`); status != 400 || errCode(body) != "invalid_json" {
		t.Errorf("unknown field: %d %v", status, body)
	}
	// The agent must still serve the pinned certificate; a re-keyed agent is refused
	// and left as it was.
	for name, fp := range map[string]string{"another certificate": strings.Repeat("cd", 32), "no fingerprint": ""} {
		if status, body := hostC.do("POST", "/v1/hosts/heartbeat", `{"cert_fingerprint":"`+fp+`","version":"evil"}`); status != 403 || errCode(body) != "forbidden" {
			t.Errorf("heartbeat with %s: %d %v", name, status, body)
		}
	}
	if _, got := admin.do("GET", "/v1/hosts/"+id, ""); got["agent_version"] != "v-test" || got["cert_fingerprint"] != fingerprint {
		t.Errorf("host after refused heartbeats: %v", got)
	}

	// Only host tokens are host tokens, and they are nothing else.
	for name, c := range map[string]call{
		"a user's token": anon.bearer(adminS["token"].(string)),
		"garbage":        anon.bearer("garbage"),
		"no credentials": anon,
		"the secret":     anon.bearer(reg["host_secret"].(string)),
	} {
		if status, body := c.do("POST", "/v1/hosts/heartbeat", heartbeatBody); status != 401 || errCode(body) != "unauthorized" {
			t.Errorf("heartbeat with %s: %d %v", name, status, body)
		}
	}
	for _, path := range []string{"/v1/sandboxes", "/v1/hosts", "/v1/api-keys"} {
		if status, body := hostC.do("GET", path, ""); status != 401 || errCode(body) != "unauthorized" {
			t.Errorf("host token on GET %s: %d %v", path, status, body)
		}
	}

	if status, body := admin.do("DELETE", "/v1/hosts/"+id, ""); status != 204 {
		t.Fatalf("delete host: %d %v", status, body)
	}
	if status, body := hostC.do("POST", "/v1/hosts/heartbeat", heartbeatBody); status != 403 || errCode(body) != "forbidden" {
		t.Errorf("heartbeat of a deleted host: %d %v", status, body)
	}
	var st string
	if err := env.DB.QueryRow(ctx, `SELECT status FROM hosts WHERE id = $1`, id).Scan(&st); err != nil || st != "offline" {
		t.Errorf("deleted host's status: %q %v", st, err)
	}
}

// Teams see and manage their own hosts only; platform administrators see all.
func TestHostVisibilityAndTags(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	_, admin := platformAdmin(t, env, anon, "root@example.com")
	ann, bob := signup(anon, "ann@example.com"), signup(anon, "bob@example.com")
	annC, bobC := anon.bearer(ann["token"].(string)), anon.bearer(bob["token"].(string))
	annTeam, bobTeam := ann["team_id"].(string), bob["team_id"].(string)
	carl := member(t, env, anon, signup(anon, "carl@example.com"), annTeam)
	setBYOC(t, admin, annTeam, true)
	setBYOC(t, admin, bobTeam, true)

	hA := newHost(t, annC, "ann-box", false)["id"].(string)
	hB := newHost(t, bobC, "bob-box", false)["id"].(string)
	hP := newHost(t, admin, "rack1", true)["id"].(string)

	if got := hostIDs(t, annC); !slices.Equal(got, []string{hA}) {
		t.Errorf("ann lists %v, want only %s", got, hA)
	}
	if got := hostIDs(t, carl); !slices.Equal(got, []string{hA}) {
		t.Errorf("a member of ann's team lists %v", got)
	}
	if got, want := hostIDs(t, admin), sorted(hA, hB, hP, env.HostID); !slices.Equal(got, want) {
		t.Errorf("admin lists %v, want %v", got, want)
	}
	if status, got := carl.do("GET", "/v1/hosts/"+hA, ""); status != 200 || got["team_id"] != annTeam || got["name"] != "ann-box" {
		t.Errorf("member gets the team's host: %d %v", status, got)
	}
	for name, path := range map[string]string{
		"bob's host": "/v1/hosts/" + hB, "a platform host": "/v1/hosts/" + hP, "the test platform host": "/v1/hosts/" + env.HostID,
		"a malformed id": "/v1/hosts/nope", "an unknown id": "/v1/hosts/00000000-0000-0000-0000-000000000000",
	} {
		for _, method := range []string{"GET", "DELETE"} {
			if status, body := annC.do(method, path, ""); status != 404 || errCode(body) != "not_found" {
				t.Errorf("ann %s %s: %d %v", method, name, status, body)
			}
		}
		if status, body := annC.do("PUT", path+"/tags/gpu", ""); status != 404 {
			t.Errorf("ann tags %s: %d %v", name, status, body)
		}
	}
	for _, id := range []string{hA, hB, hP} {
		if status, got := admin.do("GET", "/v1/hosts/"+id, ""); status != 200 || got["id"] != id {
			t.Errorf("admin gets %s: %d %v", id, status, got)
		}
	}

	// Tags.
	tags := func(c call, id string) []any {
		t.Helper()
		_, got := c.do("GET", "/v1/hosts/"+id, "")
		l, _ := got["tags"].([]any)
		return l
	}
	for range 2 { // adding twice is the same as once
		if status, body := annC.do("PUT", "/v1/hosts/"+hA+"/tags/gpu", ""); status != 204 {
			t.Errorf("tag: %d %v", status, body)
		}
	}
	if status, _ := annC.do("PUT", "/v1/hosts/"+hA+"/tags/zone-1.a_b", ""); status != 204 {
		t.Errorf("tag zone-1.a_b: %d", status)
	}
	if got := tags(annC, hA); len(got) != 2 || got[0] != "gpu" || got[1] != "zone-1.a_b" {
		t.Errorf("tags %v", got)
	}
	for _, bad := range []string{"UPPER%20case", "Upper", "-lead", strings.Repeat("t", 64)} {
		if status, body := annC.do("PUT", "/v1/hosts/"+hA+"/tags/"+bad, ""); status != 400 || errCode(body) != "invalid_request" {
			t.Errorf("tag %q: %d %v", bad, status, body)
		}
	}
	if status, body := annC.do("DELETE", "/v1/hosts/"+hA+"/tags/nope", ""); status != 404 || errCode(body) != "not_found" {
		t.Errorf("removing a tag the host does not have: %d %v", status, body)
	}
	// Members see, but do not manage.
	for _, r := range []struct{ method, path string }{
		{"PUT", "/v1/hosts/" + hA + "/tags/mine"},
		{"DELETE", "/v1/hosts/" + hA + "/tags/gpu"},
		{"DELETE", "/v1/hosts/" + hA},
		{"DELETE", "/v1/hosts/" + hA + "?force=true"},
	} {
		if status, body := carl.do(r.method, r.path, ""); status != 403 || errCode(body) != "forbidden" {
			t.Errorf("member %s %s: %d %v", r.method, r.path, status, body)
		}
	}
	if got := tags(annC, hA); len(got) != 2 {
		t.Errorf("tags after the member's tries: %v", got)
	}
	// Platform administrators manage every host.
	if status, _ := admin.do("PUT", "/v1/hosts/"+hB+"/tags/checked", ""); status != 204 {
		t.Errorf("admin tags bob's host: %d", status)
	}
	if got := tags(bobC, hB); len(got) != 1 || got[0] != "checked" {
		t.Errorf("bob's tags: %v", got)
	}
	if status, _ := annC.do("DELETE", "/v1/hosts/"+hA+"/tags/gpu", ""); status != 204 {
		t.Errorf("untag: %d", status)
	}
	if got := tags(annC, hA); len(got) != 1 || got[0] != "zone-1.a_b" {
		t.Errorf("tags after untag: %v", got)
	}

	if status, body := annC.do("DELETE", "/v1/hosts/"+hA, ""); status != 204 {
		t.Fatalf("ann deletes her host: %d %v", status, body)
	}
	if status, _ := annC.do("GET", "/v1/hosts/"+hA, ""); status != 404 {
		t.Errorf("deleted host: %d", status)
	}
	if got := hostIDs(t, annC); len(got) != 0 {
		t.Errorf("ann lists %v after deleting her host", got)
	}
	if status, _ := annC.do("DELETE", "/v1/hosts/"+hA, ""); status != 404 {
		t.Errorf("deleting twice: %d", status)
	}
}

// A host with live sandboxes is deleted only with force, which destroys them.
func TestDeleteBusyHost(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	_, admin := platformAdmin(t, env, anon, "root@example.com")
	ann := signup(anon, "ann@example.com")
	annC := anon.bearer(ann["token"].(string))
	annTeam := ann["team_id"].(string)
	carl := member(t, env, anon, signup(anon, "carl@example.com"), annTeam)
	setBYOC(t, admin, annTeam, true)
	hostID, agent := env.AddHost(t, annTeam)

	status, sb := annC.do("POST", "/v1/sandboxes", `{}`)
	if status != 201 {
		t.Fatalf("create sandbox: %d %v", status, sb)
	}
	id := sb["id"].(string)
	if got := agent.SandboxIDs(); !slices.Equal(got, []string{id}) {
		t.Fatalf("the team's host runs %v", got)
	}
	if _, h := annC.do("GET", "/v1/hosts/"+hostID, ""); h["sandboxes"] != float64(1) {
		t.Errorf("host's sandbox count: %v", h)
	}

	for _, path := range []string{"/v1/hosts/" + hostID, "/v1/hosts/" + hostID + "?force=false"} {
		status, body := annC.do("DELETE", path, "")
		list, _ := body["sandboxes"].([]any)
		if status != 409 || errCode(body) != "conflict" || len(list) != 1 || list[0] != id {
			t.Errorf("DELETE %s: %d %v", path, status, body)
		}
	}
	if status, body := carl.do("DELETE", "/v1/hosts/"+hostID+"?force=true", ""); status != 403 {
		t.Errorf("member force-deleting: %d %v", status, body)
	}
	if got := agent.SandboxIDs(); len(got) != 1 {
		t.Errorf("refused deletes touched the host: %v", got)
	}

	if status, body := annC.do("DELETE", "/v1/hosts/"+hostID+"?force=true", ""); status != 204 {
		t.Fatalf("force delete: %d %v", status, body)
	}
	if got := agent.SandboxIDs(); len(got) != 0 {
		t.Errorf("the deleted host still runs %v", got)
	}
	if status, got := annC.do("GET", "/v1/sandboxes/"+id, ""); status != 200 || got["status"] != "stopped" || got["stopped_at"] == nil {
		t.Errorf("sandbox of the deleted host: %d %v", status, got)
	}
	if status, body := annC.do("DELETE", "/v1/sandboxes/"+id, ""); status != 404 {
		t.Errorf("destroying it again: %d %v", status, body)
	}
	if status, _ := annC.do("GET", "/v1/hosts/"+hostID, ""); status != 404 {
		t.Errorf("deleted host: %d", status)
	}
	var n int
	if err := env.DB.QueryRow(context.Background(), `SELECT count(*) FROM audit_logs WHERE action = 'host.delete' AND resource_id = $1`, hostID).Scan(&n); err != nil || n != 1 {
		t.Errorf("host.delete audit entries: %d %v", n, err)
	}
}

// Sandboxes spread over the platform hosts; BYOC teams run only on their own hosts and
// nobody else does.
func TestPlacementAndBYOC(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	ctx := context.Background()
	_, admin := platformAdmin(t, env, anon, "root@example.com")
	ann, bob := signup(anon, "ann@example.com"), signup(anon, "bob@example.com")
	annC, bobC := anon.bearer(ann["token"].(string)), anon.bearer(bob["token"].(string))
	bobTeam := bob["team_id"].(string)

	h2, a2 := env.AddHost(t, "")
	h3, a3 := env.AddHost(t, "")
	platform := map[string]*agenttest.Agent{env.HostID: env.Agent, h2: a2, h3: a3}
	counts := func() map[string]int {
		out := map[string]int{}
		for id, a := range platform {
			out[id] = len(a.SandboxIDs())
		}
		return out
	}
	create := func(c call) string {
		t.Helper()
		status, sb := c.do("POST", "/v1/sandboxes", `{}`)
		if status != 201 {
			t.Fatalf("create sandbox: %d %v", status, sb)
		}
		return sb["id"].(string)
	}

	for range 6 {
		create(annC)
	}
	for id, n := range counts() {
		if n != 2 {
			t.Errorf("platform host %s runs %d sandboxes after 6 creates, want 2 each: %v", id, n, counts())
		}
	}
	_, list := admin.do("GET", "/v1/hosts", "")
	for _, h := range list["hosts"].([]any) {
		if h := h.(map[string]any); h["sandboxes"] != float64(2) {
			t.Errorf("host %v shows %v sandboxes", h["id"], h["sandboxes"])
		}
	}

	// A BYOC team with no host of its own gets 503, not a platform host.
	setBYOC(t, admin, bobTeam, true)
	_, key := bobC.do("POST", "/v1/api-keys", `{"name":"k"}`)
	bobKey := anon.with("X-API-Key", key["key"].(string))
	if status, body := bobC.do("POST", "/v1/sandboxes", `{}`); status != 503 || errCode(body) != "unavailable" {
		t.Errorf("BYOC team without hosts: %d %v", status, body)
	}
	hB, aB := env.AddHost(t, bobTeam)
	var bobs []string
	bobs = append(bobs, create(bobC), create(bobKey), create(bobC))
	if got := aB.SandboxIDs(); !slices.Equal(got, sorted(bobs...)) {
		t.Errorf("bob's host runs %v, want %v", got, bobs)
	}
	for id, n := range counts() {
		if n != 2 {
			t.Errorf("platform host %s got a BYOC team's sandbox: %v", id, counts())
		}
	}

	// Its hosts all unreachable: 503 and nothing recorded anywhere.
	if _, err := env.DB.Exec(ctx, `UPDATE hosts SET status = 'unreachable' WHERE id = $1`, hB); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]call{"token": bobC, "API key": bobKey} {
		if status, body := c.do("POST", "/v1/sandboxes", `{}`); status != 503 || errCode(body) != "unavailable" {
			t.Errorf("BYOC team with its host unreachable (%s): %d %v", name, status, body)
		}
	}
	var n int
	if err := env.DB.QueryRow(ctx, `SELECT count(*) FROM sandboxes WHERE team_id = $1`, bobTeam).Scan(&n); err != nil || n != 3 {
		t.Errorf("bob's team has %d sandboxes recorded (%v), want 3", n, err)
	}
	for id, n := range counts() {
		if n != 2 {
			t.Errorf("platform host %s after the refused creates: %v", id, counts())
		}
	}
	if got := aB.SandboxIDs(); len(got) != 3 {
		t.Errorf("bob's host after the refused creates: %v", got)
	}

	// A normal team never lands on a BYOC host, even an idle one.
	if _, err := env.DB.Exec(ctx, `UPDATE hosts SET status = 'online' WHERE id = $1`, hB); err != nil {
		t.Fatal(err)
	}
	for _, id := range bobs {
		if status, _ := bobC.do("DELETE", "/v1/sandboxes/"+id, ""); status != 204 {
			t.Fatalf("destroy %s: %d", id, status)
		}
	}
	for range 3 {
		create(annC)
	}
	if got := aB.SandboxIDs(); len(got) != 0 {
		t.Errorf("a normal team's sandbox landed on a BYOC host: %v", got)
	}
	for id, n := range counts() {
		if n != 3 {
			t.Errorf("platform host %s: %v, want 3 each", id, counts())
		}
	}

	// With every platform host unreachable, normal teams get 503 too.
	if _, err := env.DB.Exec(ctx, `UPDATE hosts SET status = 'unreachable' WHERE team_id IS NULL`); err != nil {
		t.Fatal(err)
	}
	if status, body := annC.do("POST", "/v1/sandboxes", `{}`); status != 503 || errCode(body) != "unavailable" {
		t.Errorf("no online platform host: %d %v", status, body)
	}
	if got := create(bobC); !slices.Contains(aB.SandboxIDs(), got) {
		t.Errorf("the BYOC team's host is unaffected: %s not on it", got)
	}
}

// A snapshot template is created only where its files are (template_hosts): the
// create reaches that host's agent and no other, and with that host gone it is 503.
func TestTemplateLocality(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	ctx := context.Background()
	ann := signup(anon, "ann@example.com")
	annC := anon.bearer(ann["token"].(string))
	holder, holderAgent := env.AddHost(t, "")
	var tmpl string
	if err := env.DB.QueryRow(ctx, `INSERT INTO templates (name, kind, host_name, base_template, vcpus, memory_mb, disk_mb)
		VALUES ('snap', 'snapshot', 'snap-1', 'base', 1, 512, 0) RETURNING id`).Scan(&tmpl); err != nil {
		t.Fatal(err)
	}
	if _, err := env.DB.Exec(ctx, `INSERT INTO template_hosts (template_id, host_id) VALUES ($1, $2)`, tmpl, holder); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		// The test agents have only "base", so it refuses; what matters is who was asked.
		annC.do("POST", "/v1/sandboxes", `{"template":"snap"}`)
	}
	if got, other := holderAgent.Calls("CreateSandbox"), env.Agent.Calls("CreateSandbox"); got != 3 || other != 0 {
		t.Errorf("creates from the snapshot template: %d on its host, %d elsewhere", got, other)
	}
	// base goes anywhere, so the least-loaded empty host gets it too.
	if status, _ := annC.do("POST", "/v1/sandboxes", `{}`); status != 201 {
		t.Errorf("base template: %d", status)
	}
	if _, err := env.DB.Exec(ctx, `UPDATE hosts SET status = 'unreachable' WHERE id = $1`, holder); err != nil {
		t.Fatal(err)
	}
	if status, body := annC.do("POST", "/v1/sandboxes", `{"template":"snap"}`); status != 503 || errCode(body) != "unavailable" {
		t.Errorf("snapshot template with its host unreachable: %d %v", status, body)
	}
}
