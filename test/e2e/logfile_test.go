package e2e

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// logFile (its writer and path) is where a process a test starts also writes its log: WRENN_TEST_DIR/logs/
// <test>-<name>.log, rewritten by each run. Tests keep the log in memory to print on
// failure; the file is for make test's secret scan (scripts/test-all.sh), which must
// read what the agent and the server logged in passing runs too.
func logFile(t *testing.T, name string, mem io.Writer) (io.Writer, string) {
	t.Helper()
	dir := filepath.Join(env.dir, "logs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	base := strings.NewReplacer("/", "_", " ", "_", ":", "_").Replace(t.Name() + "-" + name + ".log")
	path := filepath.Join(dir, base)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return io.MultiWriter(mem, f), path
}
