package testutil

import (
	"testing"
	"time"
)

// WaitFor polls cond until it holds, failing the test when timeout passes first; what
// says what was awaited. Polling starts every few milliseconds, so quick conditions
// do not slow a test, and backs off to 200 ms, so slow ones (HTTP round trips, other
// processes) are not hammered.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	pause := 5 * time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(pause)
		pause = min(2*pause, 200*time.Millisecond)
	}
}
