package api_test

import (
	"context"
	"testing"

	"github.com/wrennhq/wrenn/internal/server/servertest"
)

// Snapshots through the API: made from a running and a paused sandbox, sandboxes
// created from them in their shape, overwrite, delete, the audit log, and another
// team seeing, using and touching none of it.
func TestSnapshots(t *testing.T) {
	env := servertest.New(t)
	ctx := context.Background()
	anon := newCall(t, env)
	ann := anon.bearer(signup(anon, "ann@example.com")["token"].(string))
	bob := anon.bearer(signup(anon, "bob@example.com")["token"].(string))

	status, sb := ann.do("POST", "/v1/sandboxes", `{"vcpus":2,"memory_mb":256}`)
	if status != 201 {
		t.Fatalf("create: %d %v", status, sb)
	}
	src := sb["id"].(string)
	status, snap := ann.do("POST", "/v1/snapshots", `{"sandbox_id":"`+src+`","name":"prepared"}`)
	if status != 201 || snap["name"] != "prepared" || snap["sandbox_id"] != src || snap["template"] != "base" || snap["vcpus"] != 2.0 || snap["memory_mb"] != 256.0 {
		t.Fatalf("snapshot: %d %v", status, snap)
	}
	if _, got := ann.do("GET", "/v1/sandboxes/"+src, ""); got["status"] != "running" {
		t.Errorf("the source after its snapshot: %v", got)
	}

	// Bad requests are refused, before any work.
	for _, c := range []struct{ path, body string }{
		{"/v1/snapshots", `{"sandbox_id":"` + src + `","name":"../escape"}`},
		{"/v1/snapshots", `{"sandbox_id":"` + src + `","name":"Upper"}`},
		{"/v1/snapshots", `{"sandbox_id":"` + src + `","name":"base"}`},
		{"/v1/snapshots", `{"name":"x"}`},
		{"/v1/snapshots?overwrite=maybe", `{"sandbox_id":"` + src + `","name":"x"}`},
	} {
		if status, body := ann.do("POST", c.path, c.body); status != 400 || errCode(body) != "invalid_request" {
			t.Errorf("POST %s %s: %d %v, want 400", c.path, c.body, status, body)
		}
	}
	if status, body := ann.do("POST", "/v1/snapshots", `{"sandbox_id":"`+src+`","name":"prepared"}`); status != 409 {
		t.Errorf("a taken name: %d %v, want 409", status, body)
	}

	// Sandboxes from it have its shape; asking for another is refused.
	for range 3 {
		status, made := ann.do("POST", "/v1/sandboxes", `{"template":"prepared"}`)
		if status != 201 || made["template"] != "prepared" || made["vcpus"] != 2.0 || made["memory_mb"] != 256.0 {
			t.Fatalf("create from the snapshot: %d %v", status, made)
		}
		info, err := env.Agent.Manager.Get(made["id"].(string))
		if err != nil || info.Spec.Snapshot == "" {
			t.Errorf("the agent's sandbox was not restored from a snapshot: %+v %v", info, err)
		}
	}
	if status, body := ann.do("POST", "/v1/sandboxes", `{"template":"prepared","vcpus":1}`); status != 400 {
		t.Errorf("another shape from the snapshot: %d %v, want 400", status, body)
	}

	// Overwrite from the source paused: it stays paused, the old version's files go.
	if status, body := ann.do("POST", "/v1/sandboxes/"+src+"/pause", ""); status != 200 {
		t.Fatalf("pause: %d %v", status, body)
	}
	status, again := ann.do("POST", "/v1/snapshots?overwrite=true", `{"sandbox_id":"`+src+`","name":"prepared"}`)
	if status != 201 || again["created_at"] != snap["created_at"] || again["updated_at"] == snap["updated_at"] {
		t.Errorf("overwrite: %d %v (first %v)", status, again, snap)
	}
	if _, got := ann.do("GET", "/v1/sandboxes/"+src, ""); got["status"] != "paused" {
		t.Errorf("the paused source after its snapshot: %v", got)
	}
	if files, err := env.Agent.Manager.ListSnapshots(); err != nil || len(files) != 1 {
		t.Errorf("snapshots on the host after an overwrite: %d %v, want the new version only", len(files), err)
	}
	if status, body := ann.do("POST", "/v1/sandboxes", `{"template":"prepared"}`); status != 201 {
		t.Errorf("create from the overwritten snapshot: %d %v", status, body)
	}

	// Another team: sees nothing, uses nothing, touches nothing.
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/v1/snapshots/prepared", ""},
		{"DELETE", "/v1/snapshots/prepared", ""},
		{"POST", "/v1/snapshots", `{"sandbox_id":"` + src + `","name":"mine"}`},
	} {
		if status, body := bob.do(c.method, c.path, c.body); status != 404 {
			t.Errorf("another team's %s %s: %d %v, want 404", c.method, c.path, status, body)
		}
	}
	if _, list := bob.do("GET", "/v1/snapshots", ""); len(list["snapshots"].([]any)) != 0 {
		t.Errorf("another team lists %v", list)
	}
	if status, body := bob.do("POST", "/v1/sandboxes", `{"template":"prepared"}`); status == 201 {
		t.Errorf("another team created a sandbox from the snapshot: %v", body)
	}
	// The name is the team's own: another team may use it too.
	_, bobSB := bob.do("POST", "/v1/sandboxes", `{}`)
	if status, body := bob.do("POST", "/v1/snapshots", `{"sandbox_id":"`+bobSB["id"].(string)+`","name":"prepared"}`); status != 201 {
		t.Errorf("another team's own snapshot of the same name: %d %v", status, body)
	}

	if _, list := ann.do("GET", "/v1/snapshots", ""); len(list["snapshots"].([]any)) != 1 {
		t.Errorf("list: %v", list)
	}
	if status, _ := ann.do("DELETE", "/v1/snapshots/prepared", ""); status != 204 {
		t.Fatalf("delete: %d", status)
	}
	if status, _ := ann.do("GET", "/v1/snapshots/prepared", ""); status != 404 {
		t.Errorf("get after delete: %d", status)
	}
	if status, _ := ann.do("DELETE", "/v1/snapshots/prepared", ""); status != 404 {
		t.Errorf("delete twice: %d", status)
	}
	if files, _ := env.Agent.Manager.ListSnapshots(); len(files) != 1 {
		t.Errorf("snapshots on the host after a delete: %d, want bob's only", len(files))
	}
	if status, body := ann.do("POST", "/v1/sandboxes", `{"template":"prepared"}`); status == 201 {
		t.Errorf("create from a deleted snapshot: %v", body)
	}
	if status, body := ann.do("POST", "/v1/snapshots", `{"sandbox_id":"sb000000000000000000","name":"x"}`); status != 404 {
		t.Errorf("snapshot of a missing sandbox: %d %v", status, body)
	}

	var creates, deletes int
	if err := env.DB.QueryRow(ctx, `SELECT count(*) FILTER (WHERE action = 'snapshot.create'), count(*) FILTER (WHERE action = 'snapshot.delete')
		FROM audit_logs WHERE resource_type = 'snapshot' AND resource_id = 'prepared'`).Scan(&creates, &deletes); err != nil {
		t.Fatal(err)
	}
	if creates != 3 || deletes != 1 {
		t.Errorf("audit: %d creates, %d deletes; want 3 (two of ann's, one of bob's), 1", creates, deletes)
	}
}
