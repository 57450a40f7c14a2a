package testutil

import (
	"os"
	"testing"
)

// NotRoot says why something that needs root (for the reason why) cannot run in this
// process, or returns "" when it runs as root. It is for setups outside a single test,
// such as a TestMain that records the reason and skips each test later; tests call
// RequireRoot.
func NotRoot(why string) string {
	if os.Geteuid() == 0 {
		return ""
	}
	return "needs root: " + why + " (run the tests as root, as CI does)"
}

// RequireRoot skips the test unless it runs as root, saying why it needs root, so a
// skipped run tells a developer what it did not cover.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if msg := NotRoot(why); msg != "" {
		t.Skip("skipped: " + msg)
	}
}
