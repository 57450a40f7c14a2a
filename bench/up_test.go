package bench

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/testutil"
)

// BenchmarkMakeUpWarm times a warm `make up DETACH=1` (nothing to build, template and
// warm snapshot in place, everything stopped by `make down` before) to "sandbox
// answered", and each of its steps from the timing line it prints, against the part a
// warm start cannot avoid before Wrenn's own work: PostgreSQL and Redis started from
// stopped (scripts/services.sh start) and one wrenn process started (bin/wrenn version).
//
// It runs the real make up, on the machine-wide WRENN_DIR (/var/lib/wrenn) and port 8080,
// so it runs only when asked: as root with WRENN_BENCH_MAKE_UP=1, and never while a make
// up is running (it would replace that one). It ends with make down.
func BenchmarkMakeUpWarm(b *testing.B) {
	testutil.RequireRoot(b, "make up runs VMs and its own PostgreSQL and Redis")
	if os.Getenv("WRENN_BENCH_MAKE_UP") != "1" {
		b.Skip("set WRENN_BENCH_MAKE_UP=1 to run it: it runs make up and make down on this machine's /var/lib/wrenn and port 8080")
	}
	port := os.Getenv("WRENN_PORT")
	if port == "" {
		port = "8080"
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second); err == nil {
		c.Close()
		b.Skipf("port %s answers: a make up (or something else) runs there; make down first", port)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		b.Fatal(err)
	}
	wrennDir := os.Getenv("WRENN_DIR")
	if wrennDir == "" {
		wrennDir = "/var/lib/wrenn"
	}
	run := func(name string, args ...string) string {
		cmd := exec.Command(name, args...)
		cmd.Dir = root
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			b.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
		}
		return out.String()
	}
	b.Cleanup(func() {
		if out, err := exec.Command("make", "-C", root, "down").CombinedOutput(); err != nil {
			b.Errorf("make down: %v\n%s", err, out)
		}
	})

	// Warm-up: whatever is missing gets built (template, warm snapshot, admin, host).
	run("make", "up", "DETACH=1")
	run("make", "down")

	services := filepath.Join(wrennDir, "services")
	base := timeIt(func() {
		cmd := exec.Command("bash", "scripts/services.sh", "start")
		cmd.Dir, cmd.Env = root, append(os.Environ(), "DATA_DIR="+services)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("services.sh start: %v\n%s", err, out)
		}
		run("bin/wrenn", "version")
	})
	stop := exec.Command("bash", "scripts/services.sh", "stop")
	stop.Dir, stop.Env = root, append(os.Environ(), "DATA_DIR="+services)
	if out, err := stop.CombinedOutput(); err != nil {
		b.Fatalf("services.sh stop: %v\n%s", err, out)
	}

	var out string
	wall := timeIt(func() { out = run("make", "up", "DETACH=1") })
	steps, total, err := parseUpTiming(out)
	if err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	var line []string
	for _, s := range steps {
		b.ReportMetric(s.secs, s.name+"-s")
		line = append(line, fmt.Sprintf("%s %.2f", s.name, s.secs))
	}
	b.ReportMetric(total, "to-answered-s")
	b.ReportMetric(base.Seconds(), "baseline-s")
	b.ReportMetric(total/base.Seconds(), "x-baseline")
	b.Logf("warm make up DETACH=1: to \"sandbox answered\" %.2f s (make's whole run %v); steps (s): %s; baseline (services.sh start from stopped + bin/wrenn version) %v; ratio %.1f",
		total, wall.Round(10*time.Millisecond), strings.Join(line, ", "), base.Round(10*time.Millisecond), total/base.Seconds())
}

type upStep struct {
	name string
	secs float64
}

// parseUpTiming reads make up's "timing (s): deps 0.10 build 0.40 … total 4.07" line.
func parseUpTiming(out string) (steps []upStep, total float64, err error) {
	const prefix = "timing (s): "
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		f := strings.Fields(strings.TrimPrefix(l, prefix))
		if len(f)%2 != 0 {
			return nil, 0, fmt.Errorf("timing line %q: not name-seconds pairs", l)
		}
		for i := 0; i < len(f); i += 2 {
			s, err := strconv.ParseFloat(f[i+1], 64)
			if err != nil {
				return nil, 0, fmt.Errorf("timing line %q: %v", l, err)
			}
			if f[i] == "total" {
				return steps, s, nil
			}
			steps = append(steps, upStep{f[i], s})
		}
	}
	return nil, 0, fmt.Errorf("no %q line with a total in make up's output", strings.TrimSpace(prefix))
}
