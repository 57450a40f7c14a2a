package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/pgtest"
	"github.com/wrennhq/wrenn/internal/server/auth"
	"github.com/wrennhq/wrenn/internal/server/service"
	"github.com/wrennhq/wrenn/internal/server/store"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }

func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	ctx := context.Background()
	pool, err := store.Open(ctx, pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	log := slog.New(slog.DiscardHandler)
	if _, err := store.Migrate(ctx, pool, log); err != nil {
		t.Fatal(err)
	}
	tokens, _ := auth.NewTokens(bytes.Repeat([]byte("k"), 32), 15*time.Minute)
	srv := httptest.NewServer(New(service.New(pool, tokens, log), log))
	t.Cleanup(srv.Close)
	return srv
}

type call struct {
	t      *testing.T
	base   string
	header http.Header
}

func (c call) do(method, path, body string) (int, map[string]any) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.base+path, strings.NewReader(body))
	req.Header = c.header.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			c.t.Fatalf("%s %s: non-JSON body %q", method, path, raw)
		}
	}
	return resp.StatusCode, out
}

func with(c call, k, v string) call {
	h := http.Header{}
	h.Set(k, v)
	return call{t: c.t, base: c.base, header: h}
}

func errCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	code, _ := e["code"].(string)
	msg, _ := e["message"].(string)
	if msg == "" {
		return ""
	}
	return code
}

func TestAccountsAndAPIKeys(t *testing.T) {
	srv := newServer(t)
	anon := call{t: t, base: srv.URL}

	status, ann := anon.do("POST", "/v1/auth/signup", `{"email":"ann@example.com","name":"Ann","password":"correct horse battery"}`)
	if status != 201 || ann["token"] == "" || ann["role"] != "owner" {
		t.Fatalf("signup: %d %v", status, ann)
	}
	status, body := anon.do("POST", "/v1/auth/signup", `{"email":"ann@example.com","password":"correct horse battery"}`)
	if status != 409 || errCode(body) != "conflict" {
		t.Errorf("duplicate signup: %d %v", status, body)
	}
	for _, bad := range []string{`{"email":"x"`, `{"email":"a@b.c","password":"long enough pw","admin":true}`, `{} {}`, `{"email":"a@b.c","password":"short"}`} {
		if status, body := anon.do("POST", "/v1/auth/signup", bad); status != 400 || errCode(body) == "" {
			t.Errorf("signup %s: %d %v", bad, status, body)
		}
	}
	status, login := anon.do("POST", "/v1/auth/login", `{"email":"Ann@Example.com","password":"correct horse battery"}`)
	if status != 200 || login["team_id"] != ann["team_id"] {
		t.Fatalf("login: %d %v", status, login)
	}
	if status, body := anon.do("POST", "/v1/auth/login", `{"email":"ann@example.com","password":"nope nope nope"}`); status != 401 || errCode(body) != "unauthorized" {
		t.Errorf("wrong password: %d %v", status, body)
	}
	if status, body := anon.do("GET", "/v1/api-keys", ""); status != 401 || errCode(body) != "unauthorized" {
		t.Errorf("no credentials: %d %v", status, body)
	}
	if status, body := anon.do("GET", "/v1/nope", ""); status != 404 || errCode(body) != "not_found" {
		t.Errorf("unknown route: %d %v", status, body)
	}

	annC := with(anon, "Authorization", "Bearer "+login["token"].(string))
	status, key := annC.do("POST", "/v1/api-keys", `{"name":"ci"}`)
	if status != 201 || !auth.ValidAPIKey(key["key"].(string)) {
		t.Fatalf("create key: %d %v", status, key)
	}
	status, list := annC.do("GET", "/v1/api-keys", "")
	keys, _ := list["api_keys"].([]any)
	if status != 200 || len(keys) != 1 || keys[0].(map[string]any)["key"] != nil || keys[0].(map[string]any)["id"] != key["id"] {
		t.Fatalf("list keys: %d %v", status, list)
	}
	// Keys are managed with a user's token only.
	keyC := with(anon, "X-API-Key", key["key"].(string))
	if status, body := keyC.do("GET", "/v1/api-keys", ""); status != 403 {
		t.Errorf("api key on an account route: %d %v", status, body)
	}

	// Another team sees nothing of ann's and cannot revoke her key.
	_, bob := anon.do("POST", "/v1/auth/signup", `{"email":"bob@example.com","password":"bob's long password"}`)
	bobC := with(anon, "Authorization", "Bearer "+bob["token"].(string))
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
	if status, _ := with(anon, "Authorization", "Bearer garbage").do("GET", "/v1/api-keys", ""); status != 401 {
		t.Errorf("garbage token: %d", status)
	}
	if status, _ := annC.do("POST", "/v1/auth/switch-team", `{"team_id":"`+ann["team_id"].(string)+`"}`); status != 200 {
		t.Errorf("switch to own team: %d", status)
	}
}
