package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/wrennhq/wrenn/internal/openapitest"
	"github.com/wrennhq/wrenn/internal/server/auth"
	"github.com/wrennhq/wrenn/internal/server/servertest"
)

func TestMain(m *testing.M) { os.Exit(servertest.Run(m)) }

// call sends requests to one control plane as one caller; every request and response
// is checked against api/openapi.yaml on the way.
type call struct {
	t      *testing.T
	base   string
	header http.Header
	http   *http.Client
}

func newCall(t *testing.T, env *servertest.Env) call {
	return call{t: t, base: env.URL, http: &http.Client{Transport: openapitest.Transport(t, http.DefaultTransport)}}
}

func (c call) raw(method, path, contentType string, body io.Reader) (int, []byte, http.Header) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header = c.header.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, resp.Header
}

func (c call) do(method, path, body string) (int, map[string]any) {
	c.t.Helper()
	ct := ""
	if body != "" {
		ct = "application/json"
	}
	status, raw, _ := c.raw(method, path, ct, strings.NewReader(body))
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			c.t.Fatalf("%s %s: non-JSON body %q", method, path, raw)
		}
	}
	return status, out
}

func (c call) with(k, v string) call {
	h := http.Header{}
	h.Set(k, v)
	c.header = h
	return c
}

func (c call) bearer(token string) call { return c.with("Authorization", "Bearer "+token) }

// errCode is the error's code when the body has the documented error shape.
func errCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	code, _ := e["code"].(string)
	msg, _ := e["message"].(string)
	if msg == "" {
		return ""
	}
	return code
}

// signup creates a user (and team) and returns its session.
func signup(c call, email string) map[string]any {
	c.t.Helper()
	status, s := c.do("POST", "/v1/auth/signup", `{"email":"`+email+`","password":"correct horse battery"}`)
	if status != 201 {
		c.t.Fatalf("signup %s: %d %v", email, status, s)
	}
	return s
}

func TestAccountsAndAPIKeys(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)

	status, ann := anon.do("POST", "/v1/auth/signup", `{"email":"ann@example.com","name":"Ann","password":"correct horse battery"}`)
	if status != 201 || ann["token"] == "" || ann["role"] != "owner" {
		t.Fatalf("signup: %d %v", status, ann)
	}
	status, body := anon.do("POST", "/v1/auth/signup", `{"email":"ann@example.com","password":"correct horse battery"}`)
	if status != 409 || errCode(body) != "conflict" {
		t.Errorf("duplicate signup: %d %v", status, body)
	}
	for _, bad := range []string{`{"email":"x"`, `{"email":"a@b.c","password":"long enough pw","admin":true}`, `{} {}`, `{"email":"a@b.c","password":"short"}`, `{"email":"not an email","password":"long enough pw"}`, `[]`} {
		if status, body := anon.do("POST", "/v1/auth/signup", bad); status != 400 || errCode(body) == "" {
			t.Errorf("signup %s: %d %v", bad, status, body)
		}
	}
	if status, body := anon.do("POST", "/v1/auth/signup", `{"email":"big@example.com","password":"`+strings.Repeat("x", 2<<20)+`"}`); status != 413 || errCode(body) != "too_large" {
		t.Errorf("2 MiB body: %d %v", status, body)
	}
	status, login := anon.do("POST", "/v1/auth/login", `{"email":"Ann@Example.com","password":"correct horse battery"}`)
	if status != 200 || login["team_id"] != ann["team_id"] {
		t.Fatalf("login: %d %v", status, login)
	}
	if status, body := anon.do("POST", "/v1/auth/login", `{"email":"ann@example.com","password":"nope nope nope"}`); status != 401 || errCode(body) != "unauthorized" {
		t.Errorf("wrong password: %d %v", status, body)
	}
	if status, body := anon.do("POST", "/v1/auth/login", `{"email":"nobody@example.com","password":"nope nope nope"}`); status != 401 || errCode(body) != "unauthorized" {
		t.Errorf("unknown email: %d %v", status, body)
	}
	if status, body := anon.do("GET", "/v1/api-keys", ""); status != 401 || errCode(body) != "unauthorized" {
		t.Errorf("no credentials: %d %v", status, body)
	}

	annC := anon.bearer(login["token"].(string))
	status, key := annC.do("POST", "/v1/api-keys", `{"name":"ci"}`)
	if status != 201 || !auth.ValidAPIKey(key["key"].(string)) {
		t.Fatalf("create key: %d %v", status, key)
	}
	if status, body := annC.do("POST", "/v1/api-keys", `{"name":"`+strings.Repeat("n", 101)+`"}`); status != 400 {
		t.Errorf("101-character name: %d %v", status, body)
	}
	status, list := annC.do("GET", "/v1/api-keys", "")
	keys, _ := list["api_keys"].([]any)
	if status != 200 || len(keys) != 1 || keys[0].(map[string]any)["key"] != nil || keys[0].(map[string]any)["id"] != key["id"] {
		t.Fatalf("list keys: %d %v", status, list)
	}
	// Only the key's hash is stored.
	var stored string
	if err := env.DB.QueryRow(context.Background(), "SELECT encode(key_hash, 'hex') FROM team_api_keys").Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stored, strings.TrimPrefix(key["key"].(string), "wrn_")) || len(stored) != 64 {
		t.Errorf("stored key material %q", stored)
	}
	// Keys are managed with a user's token only.
	keyC := anon.with("X-API-Key", key["key"].(string))
	if status, body := keyC.do("GET", "/v1/api-keys", ""); status != 403 || errCode(body) != "forbidden" {
		t.Errorf("api key on an account route: %d %v", status, body)
	}

	// Another team sees nothing of ann's and cannot revoke her key.
	bob := signup(anon, "bob@example.com")
	bobC := anon.bearer(bob["token"].(string))
	if status, list := bobC.do("GET", "/v1/api-keys", ""); status != 200 || len(list["api_keys"].([]any)) != 0 {
		t.Errorf("bob's list: %d %v", status, list)
	}
	if status, _ := bobC.do("DELETE", "/v1/api-keys/"+key["id"].(string), ""); status != 404 {
		t.Errorf("bob revoking ann's key: %d", status)
	}
	if status, _ := bobC.do("POST", "/v1/auth/switch-team", `{"team_id":"`+ann["team_id"].(string)+`"}`); status != 404 {
		t.Errorf("bob switching into ann's team: %d", status)
	}
	if status, body := bobC.do("DELETE", "/v1/api-keys/not-a-uuid", ""); status != 404 {
		t.Errorf("malformed key id: %d %v", status, body)
	}
	if status, _ := annC.do("DELETE", "/v1/api-keys/"+key["id"].(string), ""); status != 204 {
		t.Errorf("revoke: %d", status)
	}
	if status, _ := annC.do("DELETE", "/v1/api-keys/"+key["id"].(string), ""); status != 404 {
		t.Errorf("revoke twice: %d", status)
	}
	if status, _ := keyC.do("GET", "/v1/sandboxes", ""); status != 401 {
		t.Errorf("revoked key still works: %d", status)
	}
	if status, _ := anon.bearer("garbage").do("GET", "/v1/api-keys", ""); status != 401 {
		t.Errorf("garbage token: %d", status)
	}
	if status, _ := annC.do("POST", "/v1/auth/switch-team", `{"team_id":"`+ann["team_id"].(string)+`"}`); status != 200 {
		t.Errorf("switch to own team: %d", status)
	}
	if status, body := annC.do("POST", "/v1/auth/switch-team", `{"team_id":"nope"}`); status != 404 && status != 400 {
		t.Errorf("switch to a malformed team: %d %v", status, body)
	}
}

// Roles come from the database on every request: a token keeps working only as far
// as the membership it names does.
func TestRolesFromDatabase(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	ctx := context.Background()
	ann := signup(anon, "ann@example.com")
	bob := signup(anon, "bob@example.com")
	annTeam := ann["team_id"].(string)
	if _, err := env.DB.Exec(ctx, `INSERT INTO users_teams (user_id, team_id, role, is_default) VALUES ($1, $2, 'member', false)`, bob["user_id"], annTeam); err != nil {
		t.Fatal(err)
	}
	status, sess := anon.bearer(bob["token"].(string)).do("POST", "/v1/auth/switch-team", `{"team_id":"`+annTeam+`"}`)
	if status != 200 || sess["role"] != "member" {
		t.Fatalf("switch into ann's team as a member: %d %v", status, sess)
	}
	bobInAnn := anon.bearer(sess["token"].(string))
	if status, body := bobInAnn.do("POST", "/v1/api-keys", `{"name":"x"}`); status != 403 || errCode(body) != "forbidden" {
		t.Errorf("member creating a key: %d %v", status, body)
	}
	if status, _ := bobInAnn.do("GET", "/v1/sandboxes", ""); status != 200 {
		t.Errorf("member listing sandboxes: %d", status)
	}
	// Promoted in the database: the same token can now manage keys.
	if _, err := env.DB.Exec(ctx, `UPDATE users_teams SET role = 'admin' WHERE user_id = $1 AND team_id = $2`, bob["user_id"], annTeam); err != nil {
		t.Fatal(err)
	}
	if status, body := bobInAnn.do("POST", "/v1/api-keys", `{"name":"x"}`); status != 201 {
		t.Errorf("admin creating a key: %d %v", status, body)
	}
	// Removed: the token, still unexpired and validly signed, is refused.
	if _, err := env.DB.Exec(ctx, `DELETE FROM users_teams WHERE user_id = $1 AND team_id = $2`, bob["user_id"], annTeam); err != nil {
		t.Fatal(err)
	}
	if status, body := bobInAnn.do("GET", "/v1/sandboxes", ""); status != 401 {
		t.Errorf("removed member: %d %v", status, body)
	}
	// A correctly signed token naming a team the user is not in is refused too.
	forged, _, err := env.Tokens.Issue(bob["user_id"].(string), annTeam)
	if err != nil {
		t.Fatal(err)
	}
	if status, _ := anon.bearer(forged).do("GET", "/v1/sandboxes", ""); status != 401 {
		t.Errorf("token for a team the user left: %d", status)
	}
}

// Password guessing is throttled per email (in Redis), and a success clears the count.
func TestLoginThrottle(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	signup(anon, "ann@example.com")
	for i := 0; i < 10; i++ {
		if status, _ := anon.do("POST", "/v1/auth/login", `{"email":"ann@example.com","password":"wrong guess `+string(rune('a'+i))+`"}`); status != 401 {
			t.Fatalf("guess %d: %d", i, status)
		}
	}
	status, raw, hdr := anon.raw("POST", "/v1/auth/login", "application/json", strings.NewReader(`{"email":"ann@example.com","password":"correct horse battery"}`))
	if status != 429 || hdr.Get("Retry-After") == "" || !strings.Contains(string(raw), "too_many_requests") {
		t.Fatalf("after 10 failures: %d %s retry-after %q", status, raw, hdr.Get("Retry-After"))
	}
	// Other emails are unaffected; once the window is cleared the right password works.
	signup(anon, "bob@example.com")
	if status, _ := anon.do("POST", "/v1/auth/login", `{"email":"bob@example.com","password":"correct horse battery"}`); status != 200 {
		t.Errorf("bob: %d", status)
	}
	if err := env.Redis.FlushDB(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if status, _ := anon.do("POST", "/v1/auth/login", `{"email":"ann@example.com","password":"correct horse battery"}`); status != 200 {
		t.Errorf("after the window: %d", status)
	}
}

func TestHealthzAndRouting(t *testing.T) {
	env := servertest.New(t)
	anon := newCall(t, env)
	if status, body := anon.do("GET", "/healthz", ""); status != 200 || body["status"] != "ok" {
		t.Errorf("healthz: %d %v", status, body)
	}
	// Unknown routes and methods answer in the error shape (not validated: they are
	// not in the document by definition).
	plain := anon
	plain.http = http.DefaultClient
	if status, body := plain.do("GET", "/v1/nope", ""); status != 404 || errCode(body) != "not_found" {
		t.Errorf("unknown route: %d %v", status, body)
	}
	if status, body := plain.do("PUT", "/v1/sandboxes", ""); status != 405 || errCode(body) != "method_not_allowed" {
		t.Errorf("wrong method: %d %v", status, body)
	}
	// Redis down → 503, and the answer does not leak addresses.
	env.Redis.Close()
	status, raw, _ := anon.raw("GET", "/healthz", "", nil)
	if status != 503 || strings.Contains(string(raw), "unix") || strings.Contains(string(raw), "/tmp") {
		t.Errorf("healthz with redis down: %d %s", status, raw)
	}
}

// newUserSandbox signs up ann@example.com and creates a running sandbox of the base
// template; it returns ann's client and the sandbox's id.
func newUserSandbox(t *testing.T, env *servertest.Env) (call, string) {
	t.Helper()
	anon := newCall(t, env)
	ann := signup(anon, "ann@example.com")
	annC := anon.bearer(ann["token"].(string))
	status, sb := annC.do("POST", "/v1/sandboxes", `{"template":"base"}`)
	if status != 201 {
		t.Fatalf("create: %d %v", status, sb)
	}
	return annC, sb["id"].(string)
}
