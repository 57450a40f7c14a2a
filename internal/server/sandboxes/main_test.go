package sandboxes_test

import (
	"os"
	"testing"

	"github.com/wrennhq/wrenn/internal/server/servertest"
)

func TestMain(m *testing.M) { os.Exit(servertest.Run(m)) }
