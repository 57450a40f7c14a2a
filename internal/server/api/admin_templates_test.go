package api_test

import (
	"context"
	"net/url"
	"slices"
	"testing"

	"github.com/wrennhq/wrenn/internal/server/servertest"
)

// snapshotFiles is how many snapshots' files the test's first host holds.
func snapshotFiles(t *testing.T, env *servertest.Env) int {
	t.Helper()
	files, err := env.Agent.Manager.ListSnapshots()
	if err != nil {
		t.Fatal(err)
	}
	return len(files)
}

// Templates as platform administrators see them: the platform's (a base template and
// a snapshot every team may use) and a team's snapshots; deleting either removes the
// files from their host, then the record, while sandboxes made from them run on, and
// is audited with the administrator as actor. A host that cannot remove the files
// fails the delete and the template stays.
func TestAdminTemplates(t *testing.T) {
	env := servertest.New(t)
	ctx := context.Background()
	anon := newCall(t, env)
	root, admin := platformAdmin(t, env, anon, "root@example.com")
	ann := signup(anon, "ann@example.com")
	annTeam := ann["team_id"].(string)
	annC := anon.bearer(ann["token"].(string))
	bobC := anon.bearer(signup(anon, "bob@example.com")["token"].(string))

	_, sb := annC.do("POST", "/v1/sandboxes", `{"vcpus":2,"memory_mb":256}`)
	for _, name := range []string{"prepared", "golden"} {
		if status, body := annC.do("POST", "/v1/snapshots", `{"sandbox_id":"`+sb["id"].(string)+`","name":"`+name+`"}`); status != 201 {
			t.Fatalf("snapshot %s: %d %v", name, status, body)
		}
	}
	// golden becomes the platform's (as an operator would publish one); base is the
	// platform's base template, whose files are every host's own.
	if _, err := env.DB.Exec(ctx, `UPDATE templates SET team_id = NULL WHERE name = 'golden'`); err != nil {
		t.Fatal(err)
	}
	if _, err := env.DB.Exec(ctx, `INSERT INTO templates (name, kind) VALUES ('base', 'base')`); err != nil {
		t.Fatal(err)
	}
	// bob's sandbox from the platform's snapshot runs on after the delete.
	status, fromGolden := bobC.do("POST", "/v1/sandboxes", `{"template":"golden"}`)
	if status != 201 {
		t.Fatalf("create from the platform's snapshot: %d %v", status, fromGolden)
	}

	templates := func(query string) map[string]map[string]any {
		t.Helper()
		status, body := admin.do("GET", "/v1/admin/templates"+query, "")
		if status != 200 {
			t.Fatalf("GET /v1/admin/templates%s: %d %v", query, status, body)
		}
		out := map[string]map[string]any{}
		for _, r := range body["templates"].([]any) {
			out[r.(map[string]any)["name"].(string)] = r.(map[string]any)
		}
		return out
	}
	platform := templates("")
	if g := platform["golden"]; len(platform) != 2 || g["team_id"] != nil || g["kind"] != "snapshot" || g["base_template"] != "base" ||
		g["vcpus"] != 2.0 || g["memory_mb"] != 256.0 || !slices.Equal(g["hosts"].([]any), []any{env.HostID}) {
		t.Errorf("the platform's templates: %v", platform)
	}
	if b := platform["base"]; b["kind"] != "base" || b["vcpus"] != nil || b["base_template"] != nil || len(b["hosts"].([]any)) != 0 {
		t.Errorf("the platform's base template: %v", b)
	}
	if mine := templates("?team_id=" + annTeam); len(mine) != 1 || mine["prepared"]["team_id"] != annTeam {
		t.Errorf("ann's templates: %v", mine)
	}
	if none := templates("?team_id=00000000-0000-0000-0000-000000000000"); len(none) != 0 {
		t.Errorf("an unknown team's templates: %v", none)
	}
	if status, body := admin.do("GET", "/v1/admin/templates/prepared?team_id="+annTeam, ""); status != 200 || body["name"] != "prepared" || body["team_id"] != annTeam {
		t.Errorf("get ann's snapshot: %d %v", status, body)
	}
	if status, body := admin.do("GET", "/v1/admin/templates/golden", ""); status != 200 || body["team_id"] != nil {
		t.Errorf("get the platform's snapshot: %d %v", status, body)
	}
	for _, path := range []string{
		"/v1/admin/templates/prepared", // a team's, addressed without its team
		"/v1/admin/templates/golden?team_id=" + annTeam,
		"/v1/admin/templates/prepared?team_id=not-a-team",
		"/v1/admin/templates/Not%20A%20Name",
		"/v1/admin/templates/nothing",
	} {
		for _, method := range []string{"GET", "DELETE"} {
			if status, body := admin.do(method, path, ""); status != 404 || errCode(body) != "not_found" {
				t.Errorf("%s %s: %d %v, want 404", method, path, status, body)
			}
		}
	}

	files, deletes := snapshotFiles(t, env), env.Agent.Calls("DeleteSnapshot")
	if status, body := admin.do("DELETE", "/v1/admin/templates/golden", ""); status != 204 {
		t.Fatalf("delete the platform's snapshot: %d %v", status, body)
	}
	if snapshotFiles(t, env) != files-1 || env.Agent.Calls("DeleteSnapshot") != deletes+1 {
		t.Errorf("the host's snapshots after the delete: %d (was %d)", snapshotFiles(t, env), files)
	}
	if _, got := bobC.do("GET", "/v1/sandboxes/"+fromGolden["id"].(string), ""); got["status"] != "running" {
		t.Errorf("a sandbox made from the deleted template: %v, want it running", got)
	}
	if status, body := bobC.do("POST", "/v1/sandboxes", `{"template":"golden"}`); status == 201 {
		t.Errorf("a create from the deleted template: %v", body)
	}
	if status, body := admin.do("DELETE", "/v1/admin/templates/prepared?team_id="+annTeam, ""); status != 204 {
		t.Fatalf("delete ann's snapshot: %d %v", status, body)
	}
	if status, _ := annC.do("GET", "/v1/snapshots/prepared", ""); status != 404 || snapshotFiles(t, env) != files-2 {
		t.Errorf("ann's snapshot after the delete: %d, %d files", status, snapshotFiles(t, env))
	}
	if status, body := admin.do("DELETE", "/v1/admin/templates/base", ""); status != 204 {
		t.Errorf("delete the base template's record: %d %v", status, body)
	}
	if status, _ := admin.do("DELETE", "/v1/admin/templates/golden", ""); status != 404 {
		t.Errorf("delete twice: %d", status)
	}

	entries := auditList(t, admin, "/v1/admin/audit-logs?action=template.delete")
	want := []struct {
		name, team, kind string
		hosts, live      float64
	}{{"base", "", "base", 0, 1}, {"prepared", annTeam, "snapshot", 1, 0}, {"golden", "", "snapshot", 1, 1}} // ann's source sandbox is base's
	if len(entries) != len(want) {
		t.Fatalf("template.delete entries: %v", entries)
	}
	for i, w := range want {
		e, md := entries[i], entries[i]["metadata"].(map[string]any)
		team, _ := md["team_id"].(string)
		if e["resource_id"] != w.name || e["resource_type"] != "template" || actorOf(e)["id"] != root["user_id"] || team != w.team ||
			md["kind"] != w.kind || float64(len(md["hosts"].([]any))) != w.hosts || md["live_sandboxes"] != w.live {
			t.Errorf("entry of %s: %v", w.name, e)
		}
	}

	// A host holding the files that cannot be reached fails the delete; nothing goes.
	var tmpl, lost string
	if err := env.DB.QueryRow(ctx, `INSERT INTO hosts (name) VALUES ('gone') RETURNING id`).Scan(&lost); err != nil {
		t.Fatal(err)
	}
	if err := env.DB.QueryRow(ctx, `INSERT INTO templates (name, kind, host_name, base_template, vcpus, memory_mb, disk_mb)
		VALUES ('stuck', 'snapshot', 'snap-stuck', 'base', 1, 512, 0) RETURNING id`).Scan(&tmpl); err != nil {
		t.Fatal(err)
	}
	if _, err := env.DB.Exec(ctx, `INSERT INTO template_hosts (template_id, host_id) VALUES ($1, $2), ($1, $3)`, tmpl, env.HostID, lost); err != nil {
		t.Fatal(err)
	}
	if status, body := admin.do("DELETE", "/v1/admin/templates/stuck", ""); status != 503 || errCode(body) != "unavailable" {
		t.Errorf("delete with a host that does not answer: %d %v, want 503", status, body)
	}
	if status, body := admin.do("GET", "/v1/admin/templates/stuck", ""); status != 200 || len(body["hosts"].([]any)) != 2 {
		t.Errorf("the template after a failed delete: %d %v", status, body)
	}
	if got := auditList(t, admin, "/v1/admin/audit-logs?action=template.delete"); len(got) != len(want) {
		t.Errorf("a failed delete was audited: %v", got)
	}
	if status, body := admin.do("GET", "/v1/admin/templates?team_id=bad", ""); status != 400 || errCode(body) != "invalid_request" {
		t.Errorf("listing with a malformed team: %d %v, want 400", status, body)
	}
}

// Every team's sandboxes, each with its team, by state, team and host, paged.
func TestAdminSandboxes(t *testing.T) {
	env := servertest.New(t)
	ctx := context.Background()
	anon := newCall(t, env)
	_, admin := platformAdmin(t, env, anon, "root@example.com")
	ann := signup(anon, "ann@example.com")
	bob := signup(anon, "bob@example.com")
	annTeam, bobTeam := ann["team_id"].(string), bob["team_id"].(string)
	annC, bobC := anon.bearer(ann["token"].(string)), anon.bearer(bob["token"].(string))
	second, _ := env.AddHost(t, "")

	team := map[string]string{} // sandbox → team
	for i, c := range []call{annC, bobC, annC, bobC, annC} {
		status, sb := c.do("POST", "/v1/sandboxes", `{}`)
		if status != 201 {
			t.Fatalf("create %d: %d %v", i, status, sb)
		}
		team[sb["id"].(string)] = map[bool]string{true: annTeam, false: bobTeam}[i%2 == 0]
	}
	var stopped string
	for id, tm := range team {
		if tm == bobTeam {
			stopped = id
			break
		}
	}
	if status, _ := bobC.do("DELETE", "/v1/sandboxes/"+stopped, ""); status != 204 {
		t.Fatalf("destroy: %d", status)
	}
	onHost := map[string][]string{}
	rows, err := env.DB.Query(ctx, `SELECT id, host_id::text FROM sandboxes WHERE status <> 'stopped'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, host string
		if err := rows.Scan(&id, &host); err != nil {
			t.Fatal(err)
		}
		onHost[host] = append(onHost[host], id)
	}
	if rows.Err() != nil || len(onHost[second]) == 0 || len(onHost[env.HostID]) == 0 {
		t.Fatalf("sandboxes by host: %v (%v)", onHost, rows.Err())
	}

	ids := func(query string) []string {
		t.Helper()
		list, next := pageOf(t, admin, "/v1/admin/sandboxes"+query, "sandboxes")
		if next != "" {
			t.Errorf("%s: a next page of %d sandboxes", query, len(list))
		}
		var out []string
		for _, sb := range list {
			if sb["team_id"] != team[sb["id"].(string)] {
				t.Errorf("%s: sandbox %v, want team %s", query, sb, team[sb["id"].(string)])
			}
			out = append(out, sb["id"].(string))
		}
		slices.Sort(out)
		return out
	}
	var live, annLive []string
	for id, tm := range team {
		if id != stopped {
			live = append(live, id)
			if tm == annTeam {
				annLive = append(annLive, id)
			}
		}
	}
	all := append(slices.Clone(live), stopped)
	for _, c := range []struct {
		query string
		want  []string
	}{
		{"", sorted(live...)},
		{"?state=all", sorted(all...)},
		{"?state=stopped", []string{stopped}},
		{"?state=running,stopped&team_id=" + bobTeam, sorted(stopped, otherOf(team, bobTeam, stopped))},
		{"?team_id=" + annTeam, sorted(annLive...)},
		{"?host_id=" + second, sorted(onHost[second]...)},
		{"?host_id=" + env.HostID + "&state=running", sorted(onHost[env.HostID]...)},
		{"?team_id=00000000-0000-0000-0000-000000000000", nil},
	} {
		if got := ids(c.query); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.query, got, c.want)
		}
	}
	// The sandbox is shown as GET /v1/sandboxes/{id} shows it, plus its team.
	list, _ := pageOf(t, admin, "/v1/admin/sandboxes?team_id="+annTeam, "sandboxes")
	_, own := annC.do("GET", "/v1/sandboxes/"+list[0]["id"].(string), "")
	own["team_id"] = annTeam
	for k, v := range own {
		if k != "metadata" && list[0][k] != v {
			t.Errorf("%s: %v in the admin listing, %v in the team's", k, list[0][k], v)
		}
	}
	if len(own) != len(list[0]) {
		t.Errorf("fields: %v, want those of %v", list[0], own)
	}

	// Pages of two: newest first, each sandbox once.
	var paged []string
	path := "/v1/admin/sandboxes?state=all&limit=2"
	for path != "" {
		list, next := pageOf(t, admin, path, "sandboxes")
		for _, sb := range list {
			paged = append(paged, sb["id"].(string))
		}
		path = ""
		if next != "" {
			path = "/v1/admin/sandboxes?state=all&limit=2&cursor=" + url.QueryEscape(next)
		}
	}
	var newestFirst []string
	if err := func() error {
		rows, err := env.DB.Query(ctx, `SELECT id FROM sandboxes ORDER BY created_at DESC, id DESC`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			newestFirst = append(newestFirst, id)
		}
		return rows.Err()
	}(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(paged, newestFirst) {
		t.Errorf("paged %v, want %v", paged, newestFirst)
	}
}

// otherOf is the one sandbox of team other than not.
func otherOf(team map[string]string, of, not string) string {
	for id, tm := range team {
		if tm == of && id != not {
			return id
		}
	}
	return ""
}
