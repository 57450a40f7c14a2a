package envd

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The clock may only be set when envd was told it runs inside a VM; on a developer's
// machine or in CI /init must never touch it.
func TestInitSetsClockOnlyInVM(t *testing.T) {
	past := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		inVM bool
		ts   time.Time
		want bool
	}{
		{inVM: false, ts: past, want: false},
		{inVM: true, ts: past, want: true},
		{inVM: true, ts: time.Now(), want: false},                      // in sync: left alone
		{inVM: true, ts: time.Now().Add(10 * time.Second), want: true}, // guest behind
	} {
		var set []time.Time
		srv := New(Config{InVM: tc.inVM, RunDir: t.TempDir(), SetClock: func(ts time.Time) error { set = append(set, ts); return nil }})
		body := `{"timestamp":"` + tc.ts.Format(time.RFC3339Nano) + `"}`
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/init", strings.NewReader(body)))
		if rec.Code != http.StatusNoContent {
			t.Fatalf("inVM=%v: status %d %s", tc.inVM, rec.Code, rec.Body)
		}
		if got := len(set) == 1 && set[0].Equal(tc.ts); got != tc.want {
			t.Errorf("inVM=%v ts=%v: clock set %v, want %v", tc.inVM, tc.ts, set, tc.want)
		}
		srv.Close()
	}
}
