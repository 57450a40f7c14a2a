package api

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/wrennhq/wrenn/internal/server/core"
)

// A host that cannot do what was asked (pause without snapshots) answers 501
// not_implemented with the service's message, not a 409 or a bare 500.
func TestFailNotImplemented(t *testing.T) {
	s := &Server{log: slog.New(slog.DiscardHandler)}
	rec := httptest.NewRecorder()
	s.fail(rec, httptest.NewRequest("POST", "/v1/sandboxes/sb0123456789abcdefgh/pause", nil),
		fmt.Errorf("%w: sandbox sb0123456789abcdefgh cannot pause: its host cannot snapshot VMs", core.ErrNotImplemented))
	var body errorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if rec.Code != 501 || body.Error.Code != "not_implemented" || body.Error.Message != "not implemented: sandbox sb0123456789abcdefgh cannot pause: its host cannot snapshot VMs" {
		t.Errorf("%d %+v", rec.Code, body)
	}
}
