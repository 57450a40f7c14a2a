package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/server/servertest"
	"github.com/wrennhq/wrenn/pkg/client"
)

// The SDK's audit log calls against a real control plane: pages follow Next to the
// end without repeats, filters reach the server, an API key and a non-administrator
// are refused.
func TestAuditLogs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv := servertest.New(t)
	team := srv.NewTeam(t, "ann@example.com")
	ann := client.New(srv.URL, client.WithToken(team.Session.Token))
	for _, name := range []string{"a", "b", "c", "d"} {
		if _, err := ann.CreateAPIKey(ctx, name); err != nil {
			t.Fatal(err)
		}
	}

	seen := map[int64]bool{}
	q := &client.AuditLogQuery{Limit: 2}
	pages := 0
	for ; q != nil; pages++ {
		page, err := ann.AuditLogs(ctx, *q)
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		for _, e := range page.AuditLogs {
			if seen[e.ID] || e.TeamID == nil || *e.TeamID != team.Session.TeamID {
				t.Errorf("page %d: %+v", pages, e)
			}
			seen[e.ID] = true
		}
		q = page.Next(*q)
	}
	// signup, the test key, four keys: six entries on three pages.
	if len(seen) != 6 || pages != 3 {
		t.Errorf("%d entries on %d pages, want 6 on 3", len(seen), pages)
	}

	page, err := ann.AuditLogs(ctx, client.AuditLogQuery{Actions: []string{"api_key.create", "user.signup"}, Actors: []string{team.Session.UserID}})
	if err != nil || len(page.AuditLogs) != 6 || page.NextBefore != nil {
		t.Fatalf("filtered: %+v %v", page, err)
	}
	if a := page.AuditLogs[0].Actor; a.Type != "user" || a.ID != team.Session.UserID || a.Email != "ann@example.com" {
		t.Errorf("actor: %+v", a)
	}
	if page, err := ann.AuditLogs(ctx, client.AuditLogQuery{Actors: []string{"system"}}); err != nil || len(page.AuditLogs) != 0 {
		t.Errorf("system entries: %+v %v", page, err)
	}

	var apiErr *client.Error
	if _, err := ann.AuditLogs(ctx, client.AuditLogQuery{Limit: 500}); !errors.As(err, &apiErr) || apiErr.Status != 400 {
		t.Errorf("limit 500: %v", err)
	}
	if _, err := team.Client.AuditLogs(ctx, client.AuditLogQuery{}); !errors.As(err, &apiErr) || apiErr.Status != 403 {
		t.Errorf("with an API key: %v", err)
	}
	if _, err := ann.AdminAuditLogs(ctx, client.AuditLogQuery{}); !errors.As(err, &apiErr) || apiErr.Status != 403 {
		t.Errorf("platform-wide as a non-administrator: %v", err)
	}
	if _, err := srv.DB.Exec(ctx, `UPDATE users SET is_admin = true WHERE id = $1`, team.Session.UserID); err != nil {
		t.Fatal(err)
	}
	other := srv.NewTeam(t, "bob@example.com")
	all, err := ann.AdminAuditLogs(ctx, client.AuditLogQuery{Teams: []string{other.Session.TeamID}})
	if err != nil || len(all.AuditLogs) != 2 || *all.AuditLogs[0].TeamID != other.Session.TeamID {
		t.Errorf("platform-wide, bob's team: %+v %v", all, err)
	}
}
