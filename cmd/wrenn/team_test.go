package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// teamAPI is a fake control plane for the team and member routes. Ann (u1) is in
// two teams: t1, her default, which she owns and cannot leave, and t2 (3 members:
// Ann an admin, Bob an admin, Cy a member). A token "tok" acts for t1, "tok-ID" for
// team ID. It records the calls as method, request URI, body. Its CLI has no
// terminal (rm must not ask) unless a test sets a.inTTY.
type teamAPI struct {
	mu    sync.Mutex
	calls []string

	// The CLI, logged in as Ann with "tok"; env is its environment.
	a           *app
	out, errOut *bytes.Buffer
	env         map[string]string
}

func (a *teamAPI) take() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.calls
	a.calls = nil
	return c
}

func newTeamAPI(t *testing.T) *teamAPI {
	t.Helper()
	a := &teamAPI{}
	teams := map[string]map[string]any{
		"t1": {"id": "t1", "name": "Ann's team", "slug": "anns-team", "role": "owner", "is_default": true, "is_byoc": false, "created_at": "2025-01-02T03:04:05Z", "members": 1},
		"t2": {"id": "t2", "name": "Data Ünïcode team", "slug": "data-team", "role": "admin", "is_default": false, "is_byoc": true, "created_at": "2025-01-03T03:04:05Z", "members": 3},
	}
	members := map[string]map[string]any{
		"u1": {"user_id": "u1", "email": "ann@example.com", "name": "Ann", "role": "admin", "joined_at": "2025-01-03T03:04:05Z"},
		"u2": {"user_id": "u2", "email": "bob@example.com", "name": "Bob", "role": "admin", "joined_at": "2025-01-04T03:04:05Z"},
		"u3": {"user_id": "u3", "email": "cy@example.com", "name": "Cy", "role": "member", "joined_at": "2025-01-05T03:04:05Z"},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.calls = append(a.calls, strings.TrimSpace(r.Method+" "+r.URL.RequestURI()+" "+string(b)))
		a.mu.Unlock()
		var body map[string]string
		_ = json.Unmarshal(b, &body)
		w.Header().Set("Content-Type", "application/json")
		reply := func(status int, v any) {
			w.WriteHeader(status)
			if v != nil {
				json.NewEncoder(w).Encode(v)
			}
		}
		fail := func(status int, code, msg string) {
			reply(status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
		}
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer tok")
		if !ok {
			fail(http.StatusForbidden, "forbidden", "forbidden: this route needs a user's token")
			return
		}
		current := "t1"
		if tok != "" {
			current = strings.TrimPrefix(tok, "-")
		}
		// /v1/teams/{id}/members/{user} → "teams", id, "members", user
		parts := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/v1/"), "/")
		var team map[string]any
		sub := "" // "", "members" or "leave" of a team
		if len(parts) > 1 && parts[0] == "teams" {
			team = teams[parts[1]]
		}
		if len(parts) > 2 {
			sub = parts[2]
		}
		switch route := r.Method + " " + sub; {
		case r.URL.Path == "/v1/me":
			reply(200, map[string]any{"user": map[string]any{"id": "u1", "email": "ann@example.com", "name": "Ann"}, "current_team_id": current,
				"teams": []any{teams["t1"], teams["t2"]}})
		case r.URL.Path == "/v1/auth/switch-team":
			if teams[body["team_id"]] == nil {
				fail(404, "not_found", "not found: team "+body["team_id"])
				return
			}
			reply(200, map[string]any{"token": "tok-" + body["team_id"], "team_id": body["team_id"], "user_id": "u1", "role": teams[body["team_id"]]["role"]})
		case r.Method == "GET" && r.URL.Path == "/v1/teams":
			reply(200, map[string]any{"teams": []any{teams["t1"], teams["t2"]}})
		case r.Method == "POST" && r.URL.Path == "/v1/teams":
			reply(201, map[string]any{"id": "t3", "name": body["name"], "slug": "t3", "role": "owner", "created_at": "2025-01-06T03:04:05Z", "members": 1})
		case team == nil:
			fail(404, "not_found", "not found: team")
		case route == "GET ":
			reply(200, team)
		case route == "PATCH ":
			renamed := map[string]any{}
			for k, v := range team {
				renamed[k] = v
			}
			renamed["name"] = body["name"]
			reply(200, renamed)
		case route == "DELETE ":
			reply(204, nil)
		case route == "POST leave" && team["id"] == "t1":
			fail(409, "conflict", "conflict: a user's default team cannot be left")
		case route == "POST leave":
			reply(204, nil)
		case route == "GET members":
			reply(200, map[string]any{"members": []any{members["u1"], members["u2"], members["u3"]}})
		case route == "POST members":
			reply(201, map[string]any{"user_id": "u4", "email": body["email"], "name": "Dee", "role": body["role"], "joined_at": "2025-01-07T03:04:05Z"})
		case len(parts) != 4 || members[parts[3]] == nil:
			fail(404, "not_found", "not found: member")
		case route == "PATCH members":
			m := map[string]any{}
			for k, v := range members[parts[3]] {
				m[k] = v
			}
			m["role"] = body["role"]
			reply(200, m)
		case route == "DELETE members":
			reply(204, nil)
		default:
			fail(404, "not_found", "no route "+route)
		}
	}))
	t.Cleanup(srv.Close)
	a.env = map[string]string{}
	a.a, a.out, a.errOut = newTestApp(t, a.env, "")
	saveLogin(t, a.a, srv.URL, "tok")
	return a
}

// savedToken is the token of the saved login; the profile stays the current one,
// with its server.
func (a *teamAPI) savedToken(t *testing.T) string {
	t.Helper()
	p, current := savedProfile(t, a.a, "default")
	if current != "default" || !strings.HasPrefix(p.URL, "http://127.0.0.1:") {
		t.Errorf("the saved login moved: current %q, URL %q", current, p.URL)
	}
	return p.Token
}

// run runs the CLI with args and returns its exit status, stdout and stderr.
func (a *teamAPI) run(args ...string) (int, string, string) {
	return runApp(a.a, a.out, a.errOut, args...)
}

// runTeamCase runs the CLI with args and checks its exit code, the calls it made and
// what it printed on stdout.
func runTeamCase(t *testing.T, a *teamAPI, args []string, code int, calls []string, out ...string) {
	t.Helper()
	a.take()
	got, printed, errOut := a.run(args...)
	if got != code {
		t.Errorf("%q: exit %d, want %d (stderr %q)", args, got, code, errOut)
	}
	if sent := a.take(); strings.Join(sent, "\n") != strings.Join(calls, "\n") {
		t.Errorf("%q sent\n  %s\nwant\n  %s", args, strings.Join(sent, "\n  "), strings.Join(calls, "\n  "))
	}
	for _, want := range out {
		if !strings.Contains(printed, want) {
			t.Errorf("%q printed %q, want %q in it", args, printed, want)
		}
	}
}

// `wrenn team …` sends the routes' requests, with names as one argument however
// they are spelt, and prints tables or, with --json or -o, the API's answers.
func TestTeamCommands(t *testing.T) {
	a := newTeamAPI(t)
	for _, c := range []struct {
		args  []string
		code  int
		calls []string
		out   []string
	}{
		{[]string{"team", "ls"}, 0, []string{"GET /v1/teams", "GET /v1/me"},
			[]string{"ID  NAME", "t1  Ann's team", "anns-team  owner  1        current,default\n", "data-team  admin  3        \n"}},
		{[]string{"team", "ls", "-o", "wide"}, 0, []string{"GET /v1/teams", "GET /v1/me"},
			[]string{"BYOC   CREATED", "anns-team  owner  1        false  2025-01-02T03:04:05Z  current,default\n"}},
		{[]string{"team", "ls", "--json"}, 0, []string{"GET /v1/teams"}, []string{`"is_default": true`, `"name": "Data Ünïcode team"`}},
		{[]string{"team", "ls", "-o", "yaml"}, 0, []string{"GET /v1/teams"}, []string{"is_default: true", "name: Data Ünïcode team"}},
		{[]string{"team", "ls", "-q"}, 0, []string{"GET /v1/teams"}, []string{"t1\nt2\n"}},
		{[]string{"team", "create", "Équipe de données"}, 0, []string{`POST /v1/teams {"name":"Équipe de données"}`}, []string{"t3", "Équipe de données", "owner"}},
		{[]string{"team", "show"}, 0, []string{"GET /v1/me", "GET /v1/teams/t1"}, []string{"anns-team", "2025-01-02T03:04:05Z"}},
		{[]string{"team", "show", "--json", "t2"}, 0, []string{"GET /v1/teams/t2"}, []string{`"is_byoc": true`, `"members": 3`}},
		{[]string{"team", "show", "a/b"}, 1, []string{"GET /v1/teams/a%2Fb"}, nil},
		{[]string{"team", "rename", "t2", "New  name ✓"}, 0, []string{`PATCH /v1/teams/t2 {"name":"New  name ✓"}`}, []string{"New  name ✓"}},
		{[]string{"team", "rename", "t9", "x"}, 1, []string{`PATCH /v1/teams/t9 {"name":"x"}`}, nil},
		{[]string{"team", "rm", "--yes", "t2"}, 0, []string{"GET /v1/me", "DELETE /v1/teams/t2"}, nil},
		{[]string{"team", "leave", "t2"}, 0, []string{"GET /v1/me", "POST /v1/teams/t2/leave"}, nil},
	} {
		runTeamCase(t, a, c.args, c.code, c.calls, c.out...)
	}
	if _, out, _ := a.run("team", "create", "-q", "x"); out != "t3\n" {
		t.Errorf("team create -q printed %q, want the id alone", out)
	}
	if tok := a.savedToken(t); tok != "tok" {
		t.Errorf("the login changed to %q", tok)
	}
}

// Deleting a team asks for its name on a terminal and refuses anything else; without
// a terminal it needs --yes, and sends nothing.
func TestTeamRemoveConfirms(t *testing.T) {
	a := newTeamAPI(t)
	runTeamCase(t, a, []string{"team", "rm", "t2"}, 1, nil)
	if _, _, errOut := a.run("team", "rm", "t2"); !strings.Contains(errOut, "--yes") || !strings.Contains(errOut, "sandboxes and snapshots") {
		t.Errorf("without a terminal: %q", errOut)
	}
	a.take()

	a.a.inTTY = true
	for _, typed := range []string{"Ann's team\n", "data ünïcode team\n", ""} {
		a.a.in = strings.NewReader(typed)
		code, _, errOut := a.run("team", "rm", "t2")
		if code != 1 || !strings.Contains(errOut, "not deleting team t2") {
			t.Errorf("typed %q: exit %d, %q", typed, code, errOut)
		}
		if !strings.Contains(errOut, `"Data Ünïcode team" (t2)`) || !strings.Contains(errOut, "destroys its sandboxes and snapshots and revokes its API keys") {
			t.Errorf("prompt: %q", errOut)
		}
		if calls := a.take(); strings.Join(calls, ",") != "GET /v1/me,GET /v1/teams/t2" {
			t.Errorf("typed %q: sent %q", typed, calls)
		}
	}
	a.a.in = strings.NewReader("  Data Ünïcode team\r\n")
	if code, _, errOut := a.run("team", "rm", "t2"); code != 0 {
		t.Fatalf("confirmed: exit %d: %s", code, errOut)
	}
	if calls := a.take(); strings.Join(calls, ",") != "GET /v1/me,GET /v1/teams/t2,DELETE /v1/teams/t2" {
		t.Errorf("confirmed: sent %q", calls)
	}
	// --yes asks nothing, terminal or not.
	a.a.in = strings.NewReader("")
	if code, _, errOut := a.run("team", "rm", "t2", "--yes"); code != 0 || errOut != "" {
		t.Fatalf("--yes on a terminal: exit %d, stderr %q", code, errOut)
	}
	if calls := a.take(); strings.Join(calls, ",") != "GET /v1/me,DELETE /v1/teams/t2" {
		t.Errorf("--yes on a terminal: sent %q", calls)
	}
}

// `wrenn team switch` saves the new team's token in the profile; leaving, deleting or
// being removed from the team the login acts for first moves the login to another
// team (the server refuses a token whose team the user is no longer in), and keeps
// it where it was when the server refuses.
func TestTeamSwitchKeepsLogin(t *testing.T) {
	a := newTeamAPI(t)
	runTeamCase(t, a, []string{"team", "switch", "t2"}, 0, []string{`POST /v1/auth/switch-team {"team_id":"t2"}`}, "team t2 (admin)", `profile "default"`)
	if tok := a.savedToken(t); tok != "tok-t2" {
		t.Fatalf("after switch: token %q", tok)
	}
	runTeamCase(t, a, []string{"team", "ls"}, 0, []string{"GET /v1/teams", "GET /v1/me"}, "owner  1        default\n", "admin  3        current\n")
	runTeamCase(t, a, []string{"team", "switch", "t9"}, 1, []string{`POST /v1/auth/switch-team {"team_id":"t9"}`})

	runTeamCase(t, a, []string{"team", "leave", "t2"}, 0, []string{"GET /v1/me", `POST /v1/auth/switch-team {"team_id":"t1"}`, "POST /v1/teams/t2/leave"})
	if tok := a.savedToken(t); tok != "tok-t1" {
		t.Errorf("after leaving the current team: token %q", tok)
	}
	if errOut := a.errOut.String(); !strings.Contains(errOut, "your login acted for team t2; it now acts for team t1 (owner)") {
		t.Errorf("after leaving the current team, stderr: %q", errOut)
	}
	// t1 cannot be left: the login stays with it.
	runTeamCase(t, a, []string{"team", "leave", "t1"}, 1, []string{"GET /v1/me", `POST /v1/auth/switch-team {"team_id":"t2"}`, "POST /v1/teams/t1/leave"})
	if tok := a.savedToken(t); tok != "tok-t1" {
		t.Errorf("after a refused leave: token %q", tok)
	}
	runTeamCase(t, a, []string{"team", "rm", "--yes", "t1"}, 0, []string{"GET /v1/me", `POST /v1/auth/switch-team {"team_id":"t2"}`, "DELETE /v1/teams/t1"})
	if tok := a.savedToken(t); tok != "tok-t2" {
		t.Errorf("after deleting the current team: token %q", tok)
	}
	runTeamCase(t, a, []string{"member", "rm", "ann@example.com"}, 0, []string{"GET /v1/me", "GET /v1/teams/t2/members",
		`POST /v1/auth/switch-team {"team_id":"t1"}`, "DELETE /v1/teams/t2/members/u1"})
	if tok := a.savedToken(t); tok != "tok-t1" {
		t.Errorf("after removing oneself from the current team: token %q", tok)
	}
}

// `wrenn member …` defaults to the login's team, resolves emails to user ids through
// the member list and refuses unknown roles before any request.
func TestMemberCommands(t *testing.T) {
	a := newTeamAPI(t)
	for _, c := range []struct {
		args  []string
		code  int
		calls []string
		out   []string
	}{
		{[]string{"member", "ls"}, 0, []string{"GET /v1/me", "GET /v1/teams/t1/members"},
			[]string{"USER ID  EMAIL", "u2       bob@example.com  Bob   admin   2025-01-04T03:04:05Z"}},
		{[]string{"member", "ls", "--team", "t2", "--json"}, 0, []string{"GET /v1/teams/t2/members"}, []string{`"user_id": "u3"`, `"email": "cy@example.com"`}},
		{[]string{"member", "ls", "--team", "t2", "-q"}, 0, []string{"GET /v1/teams/t2/members"}, []string{"u1\nu2\nu3\n"}},
		{[]string{"member", "add", "dee@example.com"}, 0, []string{"GET /v1/me", `POST /v1/teams/t1/members {"email":"dee@example.com","role":"member"}`},
			[]string{"u4", "dee@example.com", "member"}},
		{[]string{"member", "add", "dee@example.com", "--role", "admin", "--team", "t2"}, 0,
			[]string{`POST /v1/teams/t2/members {"email":"dee@example.com","role":"admin"}`}, []string{"admin"}},
		{[]string{"member", "role", "--team", "t2", "Bob@Example.com", "member", "--json"}, 0,
			[]string{"GET /v1/teams/t2/members", `PATCH /v1/teams/t2/members/u2 {"role":"member"}`}, []string{`"role": "member"`, `"user_id": "u2"`}},
		{[]string{"member", "role", "u3", "owner", "--team", "t2"}, 0, []string{`PATCH /v1/teams/t2/members/u3 {"role":"owner"}`}, []string{"owner"}},
		{[]string{"member", "role", "nobody@example.com", "admin", "--team", "t2"}, 1, []string{"GET /v1/teams/t2/members"}, nil},
		{[]string{"member", "rm", "cy@example.com", "--team", "t2"}, 0, []string{"GET /v1/me", "GET /v1/teams/t2/members", "DELETE /v1/teams/t2/members/u3"}, nil},
		{[]string{"member", "rm", "u9", "--team", "t2"}, 1, []string{"GET /v1/me", "DELETE /v1/teams/t2/members/u9"}, nil},
		{[]string{"member", "role", "u2", "boss"}, exitUsage, nil, nil},
		{[]string{"member", "add", "--role", "Admin", "dee@example.com"}, exitUsage, nil, nil},
	} {
		runTeamCase(t, a, c.args, c.code, c.calls, c.out...)
	}
	for _, args := range [][]string{{"member", "role", "u2", "superuser"}, {"member", "add", "--role", "root", "dee@example.com"}} {
		_, _, errOut := a.run(args...)
		if !strings.Contains(errOut, "unknown role") || !strings.Contains(errOut, "member, admin or owner") {
			t.Errorf("%q: %q", args, errOut)
		}
	}
	if _, _, errOut := a.run("member", "rm", "nobody@example.com", "--team", "t2"); !strings.Contains(errOut, "nobody@example.com is not a member of team t2") {
		t.Errorf("an unknown email: %q", errOut)
	}
}

// Wrong arguments exit 2 with the usage line and -h exits 0, both before any
// request; a bare group prints its help; an API key is refused here, not by the
// server.
func TestTeamUsageErrors(t *testing.T) {
	a := newTeamAPI(t)
	for _, args := range [][]string{
		{"team", "bogus"}, {"team", "ls", "x"}, {"team", "create"}, {"team", "create", "Data", "team"},
		{"team", "show", "t1", "t2"}, {"team", "rename", "t2"}, {"team", "rm"}, {"team", "switch"}, {"team", "leave"},
		{"member", "bogus"}, {"member", "ls", "x"}, {"member", "add"}, {"member", "role", "u2"}, {"member", "rm"},
		{"member", "rm", "u2", "u3"}, {"team", "ls", "-o", "xml"}, {"member", "ls", "--role", "admin"},
	} {
		runTeamCase(t, a, args, exitUsage, nil)
	}
	if _, _, errOut := a.run("team", "rename", "t2"); !strings.Contains(errOut, "usage: wrenn team rename ID NAME") {
		t.Errorf("rename's usage error: %q", errOut)
	}
	for _, args := range [][]string{{"team"}, {"member"}, {"team", "-h"}, {"team", "rm", "-h"}, {"member", "--help"}, {"member", "role", "-h"}} {
		runTeamCase(t, a, args, 0, nil)
	}
	if _, out, _ := a.run("team", "rm", "--help"); !strings.Contains(out, "wrenn team rm [--yes] ID") || !strings.Contains(out, "--yes is needed") {
		t.Errorf("rm's help: %q", out)
	}
	if _, out, _ := a.run("member", "role", "--help"); !strings.Contains(out, "ROLE is member, admin or owner") {
		t.Errorf("role's help: %q", out)
	}

	a.env["WRENN_API_KEY"] = "wrn_0123456789abcdef0123456789abcdef"
	runTeamCase(t, a, []string{"team", "ls"}, 1, nil)
	if _, _, errOut := a.run("member", "ls"); !strings.Contains(errOut, "not an API key") {
		t.Errorf("with an API key: %q", errOut)
	}
}
