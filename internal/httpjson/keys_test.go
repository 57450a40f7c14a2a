package httpjson_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/wrennhq/wrenn/internal/httpjson"
)

type inner struct {
	Enabled bool `json:"enabled"`
}

type base struct {
	ID string `json:"templateID"`
}

type request struct {
	base
	Timeout *int              `json:"timeout"`
	Inner   *inner            `json:"inner"`
	List    []inner           `json:"list"`
	ByName  map[string]inner  `json:"byName"`
	Labels  map[string]string `json:"labels"`
	Skipped string            `json:"-"`
	NoTag   string
}

func TestCheckKeys(t *testing.T) {
	typ := reflect.TypeOf(&request{})
	for _, tc := range []struct{ body, refused string }{
		{`{"templateID":"a","timeout":1,"inner":{"enabled":true},"list":[{"enabled":true}],"byName":{"X":{"enabled":true}},"labels":{"Any":"x"},"NoTag":"n"}`, ""},
		{`{"brandNew":1,"inner":{"alsoNew":true}}`, ""}, // unknown keys are the caller's policy
		{`{"templateId":"a"}`, `"templateId" (field names are case-sensitive: "templateID")`},
		{`{"TIMEOUT":1}`, `"TIMEOUT"`},
		{`{"inner":{"Enabled":true}}`, `"Enabled"`},
		{`{"list":[{"enabled":true},{"ENABLED":true}]}`, `"ENABLED"`},
		{`{"byName":{"k":{"Enabled":true}}}`, `"Enabled"`},
		{`{"notag":"n"}`, `"notag"`},
	} {
		var v request
		if err := json.Unmarshal([]byte(tc.body), &v); err != nil {
			t.Fatalf("%s: %v", tc.body, err)
		}
		err := httpjson.CheckKeys(json.RawMessage(tc.body), typ)
		switch {
		case tc.refused == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.body, err)
		case tc.refused != "" && (err == nil || !strings.Contains(err.Error(), tc.refused)):
			t.Errorf("%s: %v, want it refused naming %s", tc.body, err, tc.refused)
		}
	}
}
