package bench

import (
	"os"
	"testing"

	"github.com/wrennhq/wrenn/internal/server/servertest"
)

// TestMain gives the control-plane benchmarks a private PostgreSQL and Redis (each
// skips itself with the reason when they cannot start, e.g. not root).
func TestMain(m *testing.M) { os.Exit(servertest.Run(m)) }
