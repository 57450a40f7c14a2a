// Package e2e holds Wrenn's end-to-end tests across programs: real guest images, real
// microVMs (QEMU; TCG on hosts without a usable KVM), real network namespaces. They run
// one at a time — parallel TCG boots on two cores only stretch every timeout.
package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/image"
	"github.com/wrennhq/wrenn/internal/leakcheck"
	"github.com/wrennhq/wrenn/internal/pgtest"
	"github.com/wrennhq/wrenn/internal/redistest"
	"github.com/wrennhq/wrenn/internal/testutil"
)

// env is what every VM test needs, prepared once in TestMain.
var env struct {
	skip     string // why VM tests cannot run here, if they cannot
	dir      string // WRENN_DIR of the tests
	tmpl     *image.Template
	buildErr error
}

func TestMain(m *testing.M) {
	prepare()
	var before *leakcheck.Snapshot
	if env.skip == "" {
		var err error
		if before, err = leakcheck.Take(leakOptions()); err != nil {
			fmt.Fprintln(os.Stderr, "leak check:", err)
			os.Exit(1)
		}
	}
	// A private PostgreSQL and Redis for the control-plane tests, for the whole run.
	code := pgtest.Run(redistest.Around(m))
	if wrennBin != "" {
		os.RemoveAll(filepath.Dir(wrennBin)) // the binary built for this run
	}
	if before != nil && !leftNothing(before) {
		code = 1
	}
	os.Exit(code)
}

// leakOptions: every host-wide kind, and the shared test WRENN_DIR's sandboxes.
func leakOptions() leakcheck.Options {
	return leakcheck.Options{Dirs: []string{filepath.Join(env.dir, "sandboxes")}}
}

// leftNothing reports whether the whole run left no namespace, link, nftables table,
// VMM or envd process, mount, cgroup or sandbox file behind, printing what it left.
func leftNothing(before *leakcheck.Snapshot) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	left, err := leakcheck.Wait(ctx, before, leakOptions())
	if err != nil {
		fmt.Fprintln(os.Stderr, "leak check:", err)
		return false
	}
	if len(left) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: the e2e tests left %d things behind:\n  %s\n", len(left), strings.Join(left, "\n  "))
		return false
	}
	fmt.Fprintln(os.Stderr, "leak check: the e2e tests left nothing behind")
	return true
}

// prepare builds (or finds up to date) the `base` template the VM tests boot. The test
// WRENN_DIR persists across runs (default /var/lib/wrenn-test), so only the first run
// on a machine pays for debootstrap.
func prepare() {
	if env.skip = testutil.NotRoot("VM tests make network namespaces and TAP devices"); env.skip != "" {
		return
	}
	for _, tool := range []string{"qemu-system-x86_64", "debootstrap", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			env.skip = fmt.Sprintf("%s is not installed (scripts/install-deps.sh installs it)", tool)
			return
		}
	}
	env.dir = os.Getenv("WRENN_TEST_DIR")
	if env.dir == "" {
		env.dir = "/var/lib/wrenn-test"
	}
	os.RemoveAll(filepath.Join(env.dir, "logs")) // the last run's (logFile)
	envd, err := envdBinary()
	if err != nil {
		env.buildErr = err
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	env.tmpl, env.buildErr = image.Build(ctx, image.Options{Dir: env.dir, Name: "base", EnvdPath: envd, Progress: os.Stderr})
	if env.buildErr == nil {
		slog.Info("template ready", "dir", env.dir, "took", time.Since(start).Round(time.Millisecond), "up_to_date", env.tmpl.UpToDate)
	}
}

// envdBinary is $WRENN_ENVD_BIN (make test) or a fresh static build of cmd/envd.
func envdBinary() (string, error) {
	if p := os.Getenv("WRENN_ENVD_BIN"); p != "" {
		return p, nil
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	dir, err := os.MkdirTemp("", "e2e-envd-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "envd")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/envd")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build envd: %v\n%s", err, out)
	}
	return bin, nil
}

// needVM skips when the machine cannot run VM tests at all, and fails when it could but
// the template did not build.
func needVM(t *testing.T) *image.Template {
	t.Helper()
	if env.skip != "" {
		t.Skip(env.skip)
	}
	if env.buildErr != nil {
		t.Fatalf("build the base template: %v", env.buildErr)
	}
	return env.tmpl
}
