package cliout

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Progress reports the steps of a slow operation on stderr. On a terminal a step is
// one line redrawn in place with its elapsed time (and a bar when its size is known);
// elsewhere each step is a plain line when it ends, so logs stay readable. Quiet
// progress prints nothing.
type Progress struct {
	W        io.Writer
	Terminal bool
	Quiet    bool
	Color    bool
	// Tick is how often a terminal line is redrawn; 0 is 100 ms.
	Tick time.Duration
}

// Step shows msg while fn runs and says how it ended and how long it took.
func (p *Progress) Step(msg string, fn func() error) error {
	s := p.Start(msg)
	err := fn()
	s.End(err)
	return err
}

// Start begins a step that the caller ends with End; Update and Add change what it
// shows meanwhile.
func (p *Progress) Start(msg string) *Step {
	s := &Step{p: p, msg: msg, start: time.Now(), done: make(chan struct{})}
	if p.Quiet || !p.Terminal {
		return s
	}
	tick := p.Tick
	if tick == 0 {
		tick = 100 * time.Millisecond
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(tick)
		defer t.Stop()
		s.draw()
		for {
			select {
			case <-s.done:
				return
			case <-t.C:
				s.draw()
			}
		}
	}()
	return s
}

// Step is one running step.
type Step struct {
	p     *Progress
	start time.Time
	done  chan struct{}
	wg    sync.WaitGroup

	mu       sync.Mutex
	msg      string
	n, total int64
	ended    bool
	frame    int
}

// Update changes the step's message (e.g. "booting" after "placing").
func (s *Step) Update(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.msg != msg && !s.p.Terminal && !s.p.Quiet {
		// A plain log gets each phase as it ends.
		fmt.Fprintf(s.p.W, "%s (%s)\n", s.msg, s.elapsed())
	}
	s.msg = msg
}

// SetTotal makes the step a bar of total units (bytes).
func (s *Step) SetTotal(total int64) {
	s.mu.Lock()
	s.total = total
	s.mu.Unlock()
}

// Write counts bytes toward the bar, so a Step can sit in an io.Copy.
func (s *Step) Write(b []byte) (int, error) {
	s.mu.Lock()
	s.n += int64(len(b))
	s.mu.Unlock()
	return len(b), nil
}

func (s *Step) elapsed() string {
	return fmtElapsed(time.Since(s.start))
}

func fmtElapsed(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

var spinner = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

func (s *Step) draw() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	line := spinner[s.frame%len(spinner)] + " " + s.msg + " " + s.elapsed()
	s.frame++
	switch {
	case s.total > 0:
		line += " " + bar(s.n, s.total)
	case s.n > 0:
		line += " " + Size(s.n)
	}
	// \r and clear-to-end: one line, redrawn.
	fmt.Fprint(s.p.W, "\r"+line+"\x1b[K")
}

// bar is a 20-cell bar with the percentage and sizes.
func bar(n, total int64) string {
	n = min(n, total)
	full := int(20 * n / total)
	return fmt.Sprintf("[%s%s] %3d%% %s/%s", strings.Repeat("█", full), strings.Repeat("░", 20-full),
		100*n/total, Size(n), Size(total))
}

// Size is a byte count for people: 512 B, 1.5 KiB, 3.2 MiB, 1.0 GiB.
func Size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 3; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGT"[exp])
}

// End finishes the step: ✓ or ✗ with the elapsed time.
func (s *Step) End(err error) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	s.mu.Unlock()
	close(s.done)
	s.wg.Wait()
	if s.p.Quiet {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	mark, col := "✓", green
	if err != nil {
		mark, col = "✗", red
	}
	switch {
	case !s.p.Terminal && err == nil:
		fmt.Fprintf(s.p.W, "%s (%s)\n", s.msg, s.elapsed())
	case !s.p.Terminal:
		fmt.Fprintf(s.p.W, "%s: failed (%s)\n", s.msg, s.elapsed())
	default:
		if s.p.Color {
			mark = col + mark + reset
		}
		fmt.Fprintf(s.p.W, "\r%s %s (%s)\x1b[K\n", mark, s.msg, s.elapsed())
	}
}
