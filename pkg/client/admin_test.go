package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/server/servertest"
	"github.com/wrennhq/wrenn/pkg/client"
)

// The SDK's platform administration against a real control plane: pages of teams,
// users and sandboxes follow Next to the end, BYOC is set with PUT, a team's snapshot
// is read and deleted, and a non-administrator is refused.
func TestAdmin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv := servertest.New(t)
	rootTeam := srv.NewTeam(t, "root@example.com")
	if _, err := srv.DB.Exec(ctx, `UPDATE users SET is_admin = true WHERE id = $1`, rootTeam.Session.UserID); err != nil {
		t.Fatal(err)
	}
	root := client.New(srv.URL, client.WithToken(rootTeam.Session.Token))
	ann := srv.NewTeam(t, "ann@example.com")
	srv.NewTeam(t, "bob@example.com")
	var sandboxes []string
	for range 3 {
		sb, err := ann.Client.CreateSandbox(ctx, client.CreateSandboxRequest{})
		if err != nil {
			t.Fatal(err)
		}
		sandboxes = append(sandboxes, sb.ID)
	}

	teams := map[string]client.AdminTeam{}
	pages := 0
	for q := &(client.AdminTeamsQuery{Limit: 2}); q != nil; pages++ {
		page, err := root.AdminTeams(ctx, *q)
		if err != nil {
			t.Fatalf("teams page %d: %v", pages, err)
		}
		for _, tm := range page.Teams {
			if _, dup := teams[tm.ID]; dup {
				t.Errorf("team %s on two pages", tm.ID)
			}
			teams[tm.ID] = tm
		}
		q = page.Next(*q)
	}
	if len(teams) != 3 || pages != 2 || teams[ann.Session.TeamID].Sandboxes != 3 || teams[ann.Session.TeamID].Members != 1 {
		t.Errorf("%d teams on %d pages: %+v", len(teams), pages, teams)
	}

	users, err := root.AdminUsers(ctx, client.AdminUsersQuery{Email: "ANN@"})
	if err != nil || len(users.Users) != 1 || users.Users[0].Email != "ann@example.com" || users.Users[0].Admin || users.NextCursor != nil {
		t.Errorf("users ann@: %+v %v", users, err)
	}

	if err := root.SetTeamBYOC(ctx, ann.Session.TeamID, true); err != nil {
		t.Fatal(err)
	}
	if page, err := root.AdminTeams(ctx, client.AdminTeamsQuery{}); err != nil || !page.Teams[1].BYOC || page.Teams[1].ID != ann.Session.TeamID {
		t.Errorf("ann's team after SetTeamBYOC: %+v %v", page, err)
	}
	if err := root.SetTeamBYOC(ctx, ann.Session.TeamID, false); err != nil {
		t.Fatal(err)
	}

	var seen []string
	for q := &(client.AdminSandboxesQuery{TeamID: ann.Session.TeamID, States: []string{"running"}, Limit: 2}); q != nil; {
		page, err := root.AdminSandboxes(ctx, *q)
		if err != nil {
			t.Fatal(err)
		}
		for _, sb := range page.Sandboxes {
			if sb.TeamID != ann.Session.TeamID || sb.Status != "running" {
				t.Errorf("sandbox %+v", sb)
			}
			seen = append(seen, sb.ID)
		}
		q = page.Next(*q)
	}
	if len(seen) != 3 || seen[0] != sandboxes[2] {
		t.Errorf("ann's sandboxes, newest first: %v, made %v", seen, sandboxes)
	}

	if _, err := ann.Client.CreateSnapshot(ctx, sandboxes[0], "prepared", false); err != nil {
		t.Fatal(err)
	}
	list, err := root.AdminTemplates(ctx, ann.Session.TeamID)
	if err != nil || len(list) != 1 || list[0].Name != "prepared" || list[0].TeamID == nil || *list[0].TeamID != ann.Session.TeamID ||
		list[0].VCPUs == nil || len(list[0].Hosts) != 1 {
		t.Fatalf("ann's templates: %+v %v", list, err)
	}
	if platform, err := root.AdminTemplates(ctx, ""); err != nil || len(platform) != 0 {
		t.Errorf("the platform's templates: %+v %v", platform, err)
	}
	if got, err := root.AdminTemplate(ctx, "prepared", ann.Session.TeamID); err != nil || got.Kind != "snapshot" {
		t.Errorf("get ann's snapshot: %+v %v", got, err)
	}
	if _, err := root.AdminTemplate(ctx, "prepared", ""); !client.IsNotFound(err) {
		t.Errorf("ann's snapshot as the platform's: %v, want 404", err)
	}
	if err := root.DeleteAdminTemplate(ctx, "prepared", ann.Session.TeamID); err != nil {
		t.Fatal(err)
	}
	if _, err := ann.Client.GetSnapshot(ctx, "prepared"); !client.IsNotFound(err) {
		t.Errorf("ann's snapshot after the delete: %v", err)
	}

	var apiErr *client.Error
	annUser := client.New(srv.URL, client.WithToken(ann.Session.Token))
	if _, err := annUser.AdminTeams(ctx, client.AdminTeamsQuery{}); !errors.As(err, &apiErr) || apiErr.Status != 403 {
		t.Errorf("a non-administrator: %v", err)
	}
	if _, err := ann.Client.AdminSandboxes(ctx, client.AdminSandboxesQuery{}); !errors.As(err, &apiErr) || apiErr.Status != 403 {
		t.Errorf("an API key: %v", err)
	}
	if _, err := root.AdminUsers(ctx, client.AdminUsersQuery{Limit: 500}); !errors.As(err, &apiErr) || apiErr.Status != 400 {
		t.Errorf("limit 500: %v", err)
	}
}
