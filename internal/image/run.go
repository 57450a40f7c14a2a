package image

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Step is one stage of a build as reported to the caller: benchmarks and tests read these
// instead of parsing progress text.
type Step struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration"`
	Cached   bool          `json:"cached"`
	Detail   string        `json:"detail,omitempty"`
}

// reporter prints human progress lines ("image base: kernel … cached, 0.0s") and records
// the steps of one build.
type reporter struct {
	w      io.Writer
	prefix string
	mu     sync.Mutex
	steps  []Step
}

func newReporter(w io.Writer, name string) *reporter {
	if w == nil {
		w = io.Discard
	}
	return &reporter{w: w, prefix: "image " + name + ": "}
}

func (r *reporter) printf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.w, r.prefix+format+"\n", args...)
}

// done records a finished step and prints how long it took and whether it came from cache.
func (r *reporter) done(name string, start time.Time, cached bool, detail string) {
	d := time.Since(start)
	how := "done"
	if cached {
		how = "cached"
	}
	if detail != "" {
		r.printf("%s: %s (%s) in %s", name, how, detail, d.Round(10*time.Millisecond))
	} else {
		r.printf("%s: %s in %s", name, how, d.Round(10*time.Millisecond))
	}
	r.mu.Lock()
	r.steps = append(r.steps, Step{Name: name, Duration: d, Cached: cached, Detail: detail})
	r.mu.Unlock()
}

// heartbeat prints "STEP: still running (45s) STATUS" every interval until the returned
// stop function is called, so a person watching a long step knows it is alive.
func (r *reporter) heartbeat(step string, every time.Duration, status func() string) (stop func()) {
	if r == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				r.printf("%s: still running (%s) %s", step, time.Since(start).Round(time.Second), status())
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// runOpts tunes runCmd.
type runOpts struct {
	dir        string
	env        []string      // added to a minimal environment
	stdin      io.Reader     //
	heartbeat  time.Duration // print "still running" with the last output line this often
	step       string        // name used in heartbeat lines
	logFile    string        // full output is appended here when set
	newMountNS bool          // run in a private mount namespace (mounts vanish with it)
}

// runCmd runs a program (never a shell) and returns its combined output's last lines in the
// error when it fails. On cancellation the child gets SIGTERM first so tools like debootstrap
// can run their cleanup traps, then SIGKILL.
func runCmd(ctx context.Context, rep *reporter, o runOpts, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = o.dir
	cmd.Stdin = o.stdin
	cmd.Env = append([]string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LC_ALL=C", "LANG=C", "DEBIAN_FRONTEND=noninteractive", "HOME=/root",
	}, o.env...)
	// The child leads its own process group so cancellation reaches everything it spawned
	// (debootstrap runs dpkg and chroot underneath it).
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 15 * time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if o.newMountNS {
		// Go makes the new namespace's mounts private, so mounts the child leaves behind
		// (debootstrap's /proc and /sys on a crash) never show up on the host.
		cmd.SysProcAttr.Unshareflags = syscall.CLONE_NEWNS
	}

	var out lockedBuffer
	var sink io.Writer = &out
	if o.logFile != "" {
		lf, err := os.OpenFile(o.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open log %s: %w", o.logFile, err)
		}
		defer lf.Close()
		sink = io.MultiWriter(&out, lf)
	}
	cmd.Stdout, cmd.Stderr = sink, sink

	stop := func() {}
	if o.heartbeat > 0 {
		stop = rep.heartbeat(o.step, o.heartbeat, out.lastLine)
	}
	err := cmd.Run()
	if err != nil && cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // no orphans after a failure
	}
	stop()
	if err != nil {
		if ctx.Err() != nil {
			return out.Bytes(), fmt.Errorf("%s: %w", name, ctx.Err())
		}
		return out.Bytes(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tailLines(out.Bytes(), 15))
	}
	return out.Bytes(), nil
}

// lockedBuffer collects output written from the command's copy goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

func (b *lockedBuffer) lastLine() string {
	lines := strings.Split(strings.TrimSpace(string(b.Bytes())), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	if len(last) > 100 {
		last = last[:100] + "…"
	}
	if last == "" {
		return ""
	}
	return "— " + last
}

// tailLines returns the last n lines of command output for error messages.
func tailLines(b []byte, n int) string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
