package envd

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/envd/envdapi"
)

// postInit sends one /init to srv in-process and returns the status code.
func postInit(t *testing.T, srv *Server, req envdapi.InitRequest) int {
	t.Helper()
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/init", strings.NewReader(string(body))))
	if rec.Code != http.StatusNoContent {
		t.Logf("/init: %d %s", rec.Code, rec.Body)
	}
	return rec.Code
}

// clockRecorder stands in for clock_settime: setting the clock of the machine the tests
// run on is never acceptable.
type clockRecorder struct{ set []time.Time }

func (c *clockRecorder) setClock(t time.Time) error {
	c.set = append(c.set, t)
	return nil
}

// The clock may only be set when envd was told it runs inside a VM, and then only when it
// is off by more than the thresholds; when it is set, it is set to the host's timestamp
// plus the time the request spent in envd, never to the bare timestamp.
func TestInitSetsClockOnlyInVMAndBeyondThresholds(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inVM   bool
		offset time.Duration // host timestamp minus the guest's clock at sending time
		want   bool
	}{
		{name: "not in a VM", inVM: false, offset: -25 * 365 * 24 * time.Hour, want: false},
		{name: "in sync", inVM: true, offset: 0, want: false},
		{name: "20ms behind (under the 50ms threshold)", inVM: true, offset: 20 * time.Millisecond, want: false},
		{name: "500ms ahead (request latency)", inVM: true, offset: -500 * time.Millisecond, want: false},
		{name: "200ms behind", inVM: true, offset: 200 * time.Millisecond, want: true},
		{name: "frozen for 5 minutes", inVM: true, offset: 5 * time.Minute, want: true},
		{name: "3s ahead", inVM: true, offset: -3 * time.Second, want: true},
		{name: "decades ahead", inVM: true, offset: -25 * 365 * 24 * time.Hour, want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var clock clockRecorder
			srv := New(Config{InVM: tc.inVM, RunDir: t.TempDir(), SetClock: clock.setClock})
			defer srv.Close()
			sent := time.Now()
			ts := sent.Add(tc.offset).Round(0)
			if code := postInit(t, srv, envdapi.InitRequest{Timestamp: &ts}); code != http.StatusNoContent {
				t.Fatalf("status %d", code)
			}
			elapsed := time.Since(sent)
			if !tc.want {
				if len(clock.set) != 0 {
					t.Fatalf("clock set to %v, want it left alone", clock.set)
				}
				return
			}
			if len(clock.set) != 1 {
				t.Fatalf("clock set %d times (%v), want once", len(clock.set), clock.set)
			}
			// The value set is the timestamp plus the time since the request arrived, which
			// is at least zero and at most the whole round trip measured here.
			if d := clock.set[0].Sub(ts); d < 0 || d > elapsed {
				t.Errorf("clock set to timestamp%+v, want within [0, %v]", d, elapsed)
			}
		})
	}
}

// A guest frozen for minutes is stepped to timestamp + the time since the request
// arrived: whatever delays /init (here a slow reseed) must not leave the clock behind.
func TestInitClockAddsTimeSinceArrival(t *testing.T) {
	const delay = 300 * time.Millisecond
	var clock clockRecorder
	srv := New(Config{
		InVM: true, RunDir: t.TempDir(), SetClock: clock.setClock,
		// The reseed runs after the request arrived and before the clock step.
		Reseed: func([]byte) error { time.Sleep(delay); return nil },
	})
	defer srv.Close()
	sent := time.Now()
	ts := sent.Add(5 * time.Minute).Round(0)
	if code := postInit(t, srv, envdapi.InitRequest{Timestamp: &ts, RandomSeed: []byte("seed")}); code != http.StatusNoContent {
		t.Fatalf("status %d", code)
	}
	elapsed := time.Since(sent)
	if len(clock.set) != 1 {
		t.Fatalf("clock set %d times, want once", len(clock.set))
	}
	if d := clock.set[0].Sub(ts); d < delay || d > elapsed {
		t.Errorf("clock set to timestamp%+v, want within [%v, %v]", d, delay, elapsed)
	}
}

// After a resume the agent calls /init again with a newer timestamp: the clock is checked
// and stepped again; a replay of the older request is not applied.
func TestInitStepsClockAgainAfterResume(t *testing.T) {
	var clock clockRecorder
	srv := New(Config{InVM: true, RunDir: t.TempDir(), SetClock: clock.setClock})
	defer srv.Close()
	first := time.Now().Add(time.Minute).Round(0)
	second := first.Add(10 * time.Minute) // paused for ten minutes: the guest clock stood still
	for i, ts := range []time.Time{first, second, first} {
		if code := postInit(t, srv, envdapi.InitRequest{Timestamp: &ts}); code != http.StatusNoContent {
			t.Fatalf("/init %d: status %d", i, code)
		}
	}
	if len(clock.set) != 2 || clock.set[0].Before(first) || clock.set[1].Before(second) {
		t.Errorf("clock set to %v, want once for each of %v and %v (not for the replay)", clock.set, first, second)
	}
}
