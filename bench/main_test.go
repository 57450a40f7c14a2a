package bench

import (
	"os"
	"testing"

	"github.com/wrennhq/wrenn/internal/server/servertest"
	"github.com/wrennhq/wrenn/internal/uffd/uffdtest"
)

// TestMain gives the control-plane benchmarks a private PostgreSQL and Redis (each
// skips itself with the reason when they cannot start, e.g. not root).
// The uffd benchmark's child process (uffdtest) runs before any of that.
func TestMain(m *testing.M) {
	uffdtest.Main()
	os.Exit(servertest.Run(m))
}
