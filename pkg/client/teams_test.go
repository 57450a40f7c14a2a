package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/pkg/client"
)

// teamRequest is one request the fake team API received.
type teamRequest struct {
	method, uri, auth string
	body              map[string]any // nil: no body
}

// fakeTeamAPI answers every request with status and answer (JSON; "" for none),
// recording the request.
func fakeTeamAPI(t *testing.T, status int, answer string) (*client.Client, func() []teamRequest) {
	t.Helper()
	var mu sync.Mutex
	var got []teamRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := teamRequest{method: r.Method, uri: r.URL.RequestURI(), auth: r.Header.Get("Authorization")}
		if b, _ := io.ReadAll(r.Body); len(b) > 0 {
			if err := json.Unmarshal(b, &req.body); err != nil {
				t.Errorf("%s %s: body %q is not a JSON object: %v", r.Method, req.uri, b, err)
			}
		}
		mu.Lock()
		got = append(got, req)
		mu.Unlock()
		if answer == "" {
			w.WriteHeader(status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, answer)
	}))
	t.Cleanup(srv.Close)
	return client.New(srv.URL, client.WithToken("tok")), func() []teamRequest {
		mu.Lock()
		defer mu.Unlock()
		r := got
		got = nil
		return r
	}
}

const (
	teamJSON   = `{"id":"t1","name":"Ann's team","slug":"anns-team","role":"owner","is_default":true,"is_byoc":false,"created_at":"2025-01-02T03:04:05Z","members":3}`
	memberJSON = `{"user_id":"u2","email":"bob@example.com","name":"Bob","role":"admin","joined_at":"2025-01-02T03:04:06Z"}`
)

var (
	wantTeam   = client.Team{ID: "t1", Name: "Ann's team", Slug: "anns-team", Role: "owner", IsDefault: true, CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Members: 3}
	wantMember = client.Member{UserID: "u2", Email: "bob@example.com", Name: "Bob", Role: "admin", JoinedAt: time.Date(2025, 1, 2, 3, 4, 6, 0, time.UTC)}
)

// Each team and member call sends its route's method, path (ids escaped as one
// segment each) and body with the user's token, and decodes the answer.
func TestTeamCalls(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		status int
		answer string
		call   func(*client.Client) (any, error)
		want   teamRequest
		result any
	}{
		{"Teams", 200, `{"teams":[` + teamJSON + `]}`,
			func(c *client.Client) (any, error) { return c.Teams(ctx) },
			teamRequest{method: "GET", uri: "/v1/teams"}, []client.Team{wantTeam}},
		{"CreateTeam", 201, teamJSON,
			func(c *client.Client) (any, error) { return c.CreateTeam(ctx, "Équipe d'Ann / 2") },
			teamRequest{method: "POST", uri: "/v1/teams", body: map[string]any{"name": "Équipe d'Ann / 2"}}, &wantTeam},
		{"Team", 200, teamJSON,
			func(c *client.Client) (any, error) { return c.Team(ctx, "t1") },
			teamRequest{method: "GET", uri: "/v1/teams/t1"}, &wantTeam},
		{"Team escaped", 200, teamJSON,
			func(c *client.Client) (any, error) { return c.Team(ctx, "a/b c?é") },
			teamRequest{method: "GET", uri: "/v1/teams/a%2Fb%20c%3F%C3%A9"}, &wantTeam},
		{"RenameTeam", 200, teamJSON,
			func(c *client.Client) (any, error) { return c.RenameTeam(ctx, "t1", "New name") },
			teamRequest{method: "PATCH", uri: "/v1/teams/t1", body: map[string]any{"name": "New name"}}, &wantTeam},
		{"DeleteTeam", 204, "",
			func(c *client.Client) (any, error) { return nil, c.DeleteTeam(ctx, "t/1") },
			teamRequest{method: "DELETE", uri: "/v1/teams/t%2F1"}, nil},
		{"Members", 200, `{"members":[` + memberJSON + `]}`,
			func(c *client.Client) (any, error) { return c.Members(ctx, "t1") },
			teamRequest{method: "GET", uri: "/v1/teams/t1/members"}, []client.Member{wantMember}},
		{"AddMember", 201, memberJSON,
			func(c *client.Client) (any, error) { return c.AddMember(ctx, "t1", "bob@example.com", "admin") },
			teamRequest{method: "POST", uri: "/v1/teams/t1/members", body: map[string]any{"email": "bob@example.com", "role": "admin"}}, &wantMember},
		{"AddMember default role", 201, memberJSON,
			func(c *client.Client) (any, error) { return c.AddMember(ctx, "t1", "bob@example.com", "") },
			teamRequest{method: "POST", uri: "/v1/teams/t1/members", body: map[string]any{"email": "bob@example.com"}}, &wantMember},
		{"SetMemberRole", 200, memberJSON,
			func(c *client.Client) (any, error) { return c.SetMemberRole(ctx, "t1", "u/2", "admin") },
			teamRequest{method: "PATCH", uri: "/v1/teams/t1/members/u%2F2", body: map[string]any{"role": "admin"}}, &wantMember},
		{"RemoveMember", 204, "",
			func(c *client.Client) (any, error) { return nil, c.RemoveMember(ctx, "t1", "u2") },
			teamRequest{method: "DELETE", uri: "/v1/teams/t1/members/u2"}, nil},
		{"LeaveTeam", 204, "",
			func(c *client.Client) (any, error) { return nil, c.LeaveTeam(ctx, "t1") },
			teamRequest{method: "POST", uri: "/v1/teams/t1/leave"}, nil},
		{"SearchUsers", 200, `{"users":[{"id":"u2","email":"bob@example.com","name":"Bob"}]}`,
			func(c *client.Client) (any, error) { return c.SearchUsers(ctx, "bob+x@") },
			teamRequest{method: "GET", uri: "/v1/users/search?email=bob%2Bx%40"}, []client.UserMatch{{ID: "u2", Email: "bob@example.com", Name: "Bob"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl, requests := fakeTeamAPI(t, c.status, c.answer)
			res, err := c.call(cl)
			if err != nil {
				t.Fatal(err)
			}
			c.want.auth = "Bearer tok"
			if got := requests(); len(got) != 1 || !reflect.DeepEqual(got[0], c.want) {
				t.Errorf("sent %+v, want %+v", got, c.want)
			}
			if c.result != nil && !reflect.DeepEqual(res, c.result) {
				t.Errorf("decoded %+v, want %+v", res, c.result)
			}
		})
	}
}

// An error answer is an *Error with the server's status, code and message, and no
// result; ids that are no path segment are refused before any request.
func TestTeamErrors(t *testing.T) {
	ctx := context.Background()
	cl, requests := fakeTeamAPI(t, 404, `{"error":{"code":"not_found","message":"not found: team t9"}}`)
	var apiErr *client.Error
	team, err := cl.Team(ctx, "t9")
	if !errors.As(err, &apiErr) || apiErr.Status != 404 || apiErr.Code != "not_found" || apiErr.Message != "not found: team t9" || !client.IsNotFound(err) || team != nil {
		t.Errorf("404: %+v %v", team, err)
	}
	if list, err := cl.Members(ctx, "t9"); !client.IsNotFound(err) || list != nil {
		t.Errorf("members of a 404 team: %+v %v", list, err)
	}
	if err := cl.LeaveTeam(ctx, "t9"); !client.IsNotFound(err) {
		t.Errorf("leave a 404 team: %v", err)
	}

	cl, requests = fakeTeamAPI(t, 403, `{"error":{"code":"forbidden","message":"forbidden: owners only"}}`)
	if m, err := cl.SetMemberRole(ctx, "t1", "u2", "owner"); !errors.As(err, &apiErr) || apiErr.Status != 403 || apiErr.Code != "forbidden" || m != nil {
		t.Errorf("403: %+v %v", m, err)
	}
	requests()

	for _, call := range []func() error{
		func() error { _, err := cl.Team(ctx, ""); return err },
		func() error { return cl.DeleteTeam(ctx, "..") },
		func() error { _, err := cl.Members(ctx, "."); return err },
		func() error { return cl.RemoveMember(ctx, "t1", "") },
		func() error { _, err := cl.SetMemberRole(ctx, "", "u2", "admin"); return err },
	} {
		if err := call(); err == nil || errors.As(err, &apiErr) {
			t.Errorf("a bad id: %v, want a local error", err)
		}
	}
	if got := requests(); len(got) != 0 {
		t.Errorf("bad ids sent %+v", got)
	}
}
