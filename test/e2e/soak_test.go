package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/wrennhq/wrenn/internal/testutil"
	"github.com/wrennhq/wrenn/internal/vmm"
	"github.com/wrennhq/wrenn/pkg/client"
)

// soakToken opens /metrics of the soak's server and agent (their go_* figures).
const soakToken = "soak-metrics-token-not-a-secret"

// TestSoak runs create → exec → pause → resume → exec → destroy cycles through the
// control plane (`wrenn server` and a registered `wrenn agent`, real VMs restored from
// the warm snapshot) from two clients at once for WRENN_SOAK_DURATION (default 60 s;
// `make soak` runs 30 min), sampling both processes' resident memory, Go heap,
// goroutines and open files along the way. Every cycle must succeed and find what it
// wrote to disk and memory before the pause, and once idle again both processes must
// be back where they were when idle after the first cycles: no file descriptor or
// goroutine may pile up, and the heap may not grow without bound.
func TestSoak(t *testing.T) {
	needVM(t)
	duration := 60 * time.Second
	if v := os.Getenv("WRENN_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("WRENN_SOAK_DURATION=%q: want a positive duration such as 30m", v)
		}
		duration = d
	}
	// Restores need the warm snapshot of the default shape; build it before anything
	// is measured (the first create of a run may have to).
	cp := startServer(t, "", "WRENN_METRICS_TOKEN="+soakToken)
	ag := cp.addAgent(t, cp.admin(t), agentOpts{extraArgs: []string{"--warm-start=true"},
		env: []string{"WRENN_AGENT_METRICS_TOKEN=" + soakToken}})
	ctx := context.Background()
	sess, err := client.New(cp.base).Signup(ctx, "soak@example.com", "Soak", "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	// An API key, not the session: the soak outlives a session token.
	key, err := client.New(cp.base, client.WithToken(sess.Token)).CreateAPIKey(ctx, "soak")
	if err != nil {
		t.Fatal(err)
	}
	api := client.New(cp.base, client.WithAPIKey(key.Key))
	procs := []soakProc{
		{name: "server", pid: cp.cmd.Process.Pid, metrics: cp.base + "/metrics"},
		// A registered agent serves TLS with a certificate its control plane vouches
		// for; the scrape only reads figures, so it does not check it.
		{name: "agent", pid: ag.cmd.Process.Pid, metrics: "https://" + ag.opts.listen + "/metrics"},
	}

	const workers = 2
	var cycles, failures atomic.Int64
	var firstErr error
	var errOnce sync.Once
	run := func(ctx context.Context, worker int, until time.Time) {
		for n := 0; n == 0 || time.Now().Before(until); n++ { // one cycle at least
			if err := soakCycle(ctx, api, fmt.Sprintf("%d-%d", worker, n)); err != nil {
				failures.Add(1)
				errOnce.Do(func() { firstErr = err })
				return
			}
			cycles.Add(1)
		}
	}
	together := func(until time.Time) {
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() { run(ctx, w, until) })
		}
		wg.Wait()
	}

	together(time.Now()) // one cycle each: warms every path
	if failures.Load() > 0 {
		t.Fatalf("a warm-up cycle failed: %v", firstErr)
	}
	cycles.Store(0)
	warm := filepath.Join(env.dir, "images", "base", "warm", "qemu-1c-512m", "snapshot")
	testutil.WaitFor(t, 3*time.Minute, "the warm snapshot of the default shape", func() bool {
		_, err := vmm.ReadSnapshotMeta(warm)
		return err == nil
	})
	idleBefore := soakIdle(t, procs)

	start := time.Now()
	var samples []soakSample
	stop := make(chan struct{})
	sampled := make(chan struct{})
	every := max(duration/30, 5*time.Second)
	go func() {
		defer close(sampled)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				samples = append(samples, soakSample{at: time.Since(start), cycles: cycles.Load(), procs: soakStats(t, procs)})
			}
		}
	}()
	together(start.Add(duration))
	close(stop)
	<-sampled
	if failures.Load() > 0 {
		t.Fatalf("%d of %d cycles failed; first: %v", failures.Load(), cycles.Load()+failures.Load(), firstErr)
	}
	idleAfter := soakIdle(t, procs)

	t.Logf("soak: %d cycles in %v from %d clients; every %v (RSS and heap in MiB):", cycles.Load(), time.Since(start).Round(time.Second), workers, every)
	t.Logf("%8s %6s | %-34s | %-34s", "at", "cycles", "server rss/heap/goroutines/fds", "agent rss/heap/goroutines/fds")
	row := func(at string, n int64, s []procStats) {
		t.Logf("%8s %6d | %-34s | %-34s", at, n, s[0], s[1])
	}
	row("idle", 0, idleBefore)
	for _, s := range samples {
		row(s.at.Round(time.Second).String(), s.cycles, s.procs)
	}
	row("idle", cycles.Load(), idleAfter)
	for i, p := range procs {
		b, a := idleBefore[i], idleAfter[i]
		if a.fds > b.fds+8 {
			t.Errorf("%s: %d open files when idle after the soak, %d before: descriptors leak; the new ones:\n%s",
				p.name, a.fds, b.fds, strings.Join(newFDs(b.fdTargets, a.fdTargets), "\n"))
		}
		if a.goroutines > b.goroutines+10 {
			t.Errorf("%s: %d goroutines when idle after the soak, %d before: goroutines leak", p.name, a.goroutines, b.goroutines)
		}
		if a.heapMiB > 2*b.heapMiB+32 {
			t.Errorf("%s: heap %.1f MiB when idle after the soak, %.1f MiB before", p.name, a.heapMiB, b.heapMiB)
		}
		if duration >= 10*time.Minute { // shorter runs are all warm-up
			t.Logf("%s: heap slope over the run's second half %+.1f MiB/h, RSS %+.1f MiB/h", p.name,
				soakSlope(samples, i, func(s procStats) float64 { return s.heapMiB }),
				soakSlope(samples, i, func(s procStats) float64 { return s.rssMiB }))
		}
	}
}

// soakCycle is one sandbox's life, checking that the pause kept its disk and memory.
func soakCycle(ctx context.Context, api *client.Client, tag string) (err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	sb, err := api.CreateSandbox(ctx, client.CreateSandboxRequest{})
	if err != nil {
		return fmt.Errorf("cycle %s: create: %w", tag, err)
	}
	defer func() {
		if derr := api.DestroySandbox(ctx, sb.ID); derr != nil && err == nil {
			err = fmt.Errorf("cycle %s: destroy %s: %w", tag, sb.ID, derr)
		}
	}()
	sh := func(script string) (string, error) {
		res, err := api.Exec(ctx, sb.ID, "/bin/sh", []string{"-c", script}, time.Minute)
		if err == nil && res.ExitCode != 0 {
			err = fmt.Errorf("exit %d: %s", res.ExitCode, res.Stderr)
		}
		if err != nil {
			return "", fmt.Errorf("cycle %s: exec %q in %s: %w", tag, script, sb.ID, err)
		}
		return string(res.Stdout), nil
	}
	if _, err := sh("echo " + tag + " > /home/user/soak && sync && echo " + tag + " > /dev/shm/soak"); err != nil {
		return err
	}
	if _, err := api.Pause(ctx, sb.ID); err != nil {
		return fmt.Errorf("cycle %s: pause %s: %w", tag, sb.ID, err)
	}
	if _, err := api.Resume(ctx, sb.ID, 0); err != nil {
		return fmt.Errorf("cycle %s: resume %s: %w", tag, sb.ID, err)
	}
	out, err := sh("cat /home/user/soak /dev/shm/soak")
	if err != nil {
		return err
	}
	if want := tag + "\n" + tag + "\n"; out != want {
		return fmt.Errorf("cycle %s: after the pause %s reads %q, want %q", tag, sb.ID, out, want)
	}
	return nil
}

// soakProc is a process the soak watches.
type soakProc struct {
	name    string
	pid     int
	metrics string // its /metrics, opened by soakToken
}

// procStats is one look at a process: /proc's resident memory and open files, and
// the Go runtime's heap in use and goroutines from its /metrics.
type procStats struct {
	rssMiB, heapMiB float64
	goroutines, fds int
	fdTargets       []string // what each open file is (readlink of /proc/PID/fd/N)
}

// newFDs lists what after holds open more often than before did.
func newFDs(before, after []string) []string {
	seen := map[string]int{}
	for _, f := range before {
		seen[f]++
	}
	var out []string
	for _, f := range after {
		if seen[f] > 0 {
			seen[f]--
			continue
		}
		out = append(out, f)
	}
	return out
}

func (s procStats) String() string {
	return fmt.Sprintf("%6.1f %6.1f %5d %5d", s.rssMiB, s.heapMiB, s.goroutines, s.fds)
}

type soakSample struct {
	at     time.Duration
	cycles int64
	procs  []procStats
}

func soakStats(t *testing.T, procs []soakProc) []procStats {
	out := make([]procStats, len(procs))
	for i, p := range procs {
		s := &out[i]
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
		if err != nil {
			t.Errorf("%s: %v", p.name, err)
			continue
		}
		for line := range strings.Lines(string(status)) {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kib, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
				s.rssMiB = kib / 1024
			}
		}
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid))
		if err != nil {
			t.Errorf("%s: %v", p.name, err)
		}
		s.fds = len(fds)
		for _, fd := range fds {
			target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", p.pid, fd.Name()))
			s.fdTargets = append(s.fdTargets, target)
		}
		m, err := scrape(p.metrics)
		if err != nil {
			t.Errorf("%s: %v", p.name, err)
		}
		s.heapMiB = m["go_memstats_heap_inuse_bytes"] / (1 << 20)
		s.goroutines = int(m["go_goroutines"])
	}
	return out
}

// soakIdle waits for the processes to settle (no sandbox left, their idle HTTP
// connections closed) and then looks at them.
func soakIdle(t *testing.T, procs []soakProc) []procStats {
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(3 * time.Second)
	return soakStats(t, procs)
}

var scraper = &http.Client{Timeout: 10 * time.Second,
	Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}

// scrape reads a /metrics answer's unlabelled samples.
func scrape(url string) (map[string]float64, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+soakToken)
	resp, err := scraper.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: status %d", url, resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		if ms := f.GetMetric(); len(ms) == 1 && len(ms[0].GetLabel()) == 0 {
			out[name] = ms[0].GetGauge().GetValue() + ms[0].GetCounter().GetValue() + ms[0].GetUntyped().GetValue()
		}
	}
	return out, nil
}

// soakSlope is the least-squares slope, per hour, of one figure of process i over
// the second half of the samples (the first half holds the warm-up's growth).
func soakSlope(samples []soakSample, i int, figure func(procStats) float64) float64 {
	half := samples[len(samples)/2:]
	var n, sx, sy, sxx, sxy float64
	for _, s := range half {
		x, y := s.at.Hours(), figure(s.procs[i])
		n++
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	if d := n*sxx - sx*sx; d != 0 {
		return (n*sxy - sx*sy) / d
	}
	return 0
}
