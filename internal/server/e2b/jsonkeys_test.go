package e2b_test

import (
	"strings"
	"testing"

	"github.com/wrennhq/wrenn/internal/server/servertest"
)

// TestFieldNamesAreExact: a key that only case-folds to one of E2B's fields is not
// taken for it (encoding/json alone would), at any depth; a key E2B's API does not
// know at all is still ignored, so newer SDKs keep working.
func TestFieldNamesAreExact(t *testing.T) {
	env := servertest.New(t)
	c := newCaller(t, env.URL, env.NewTeam(t, "keys@example.com").Key)
	id := c.create(`{"templateID":"base","someFieldFromANewerSDK":{"x":1}}`)["sandboxID"].(string)
	for _, tc := range []struct{ method, path, body, says string }{
		{"POST", "/v2/sandboxes", `{"templateId":"base"}`, `"templateID"`},
		{"POST", "/sandboxes", `{"templateid":"base"}`, `"templateID"`},
		{"POST", "/v2/sandboxes", `{"templateID":"base","Timeout":30}`, `"timeout"`},
		{"POST", "/v2/sandboxes", `{"templateID":"base","autoResume":{"Enabled":true}}`, `"enabled"`},
		{"POST", "/v2/sandboxes", `{"templateID":"base","network":{"allowpublictraffic":false}}`, `"allowPublicTraffic"`},
		{"POST", "/v2/sandboxes", `{"templateID":"base","Allow_Internet_Access":false}`, `"allow_internet_access"`},
		{"POST", "/sandboxes/" + id + "/timeout", `{"Timeout":30}`, `"timeout"`},
		{"POST", "/sandboxes/" + id + "/refreshes", `{"DURATION":30}`, `"duration"`},
		{"POST", "/v2/sandboxes/" + id + "/connect", `{"TimeOut":30}`, `"timeout"`},
	} {
		status, _, v := c.do(tc.method, tc.path, tc.body)
		msg, _ := obj(t, v)["message"].(string)
		if status != 400 || !strings.Contains(msg, "case-sensitive") || !strings.Contains(msg, tc.says) {
			t.Errorf("%s %s %s: %d %q, want 400 naming %s", tc.method, tc.path, tc.body, status, msg, tc.says)
		}
	}
	if n := len(env.Agent.Manager.List()); n != 1 {
		t.Errorf("case-folded keys left %d sandboxes on the host, want 1", n)
	}
	// The exact names still work, as the SDKs send them.
	if status, _, v := c.do("POST", "/sandboxes/"+id+"/timeout", `{"timeout":30}`); status != 204 {
		t.Errorf("timeout with its exact name: %d %v", status, v)
	}
}
