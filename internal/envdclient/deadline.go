package envdclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"connectrpc.com/connect"
)

// A guest is not trusted to answer: its envd may be hung, or hostile, and accept a
// connection then never say a word. Every call therefore ends within a bounded time
// even when its caller set no deadline (a caller's own deadline always wins):
//
//   - a unary call (health, /init, /metrics, stat, list, mkdir, remove, input,
//     signals, resize) within the unary limit;
//   - an upload or download when it makes no progress for the idle limit, however
//     long it has run in all, so a 1 GiB file still moves;
//   - a command's stream when envd sends no event for the stream-idle limit: envd
//     sends a keepalive event every keepaliveInterval on an idle stream (the client
//     asks for it), so only a dead or hung peer is that quiet. A stream lives as long
//     as its caller wants otherwise. Its first event (start) is awaited for the unary
//     limit: starting a process is one quick step.
const (
	// DefaultUnaryTimeout: envd answers these in milliseconds; two minutes leaves room
	// for a guest starved of CPU on a loaded host, or one whose vCPUs are stopped for
	// a short snapshot.
	DefaultUnaryTimeout = 2 * time.Minute
	// DefaultIdleTimeout and DefaultStreamIdleTimeout: a snapshot of a running
	// sandbox stops its vCPUs while it writes all guest memory, minutes for a large
	// guest on a slow disk; a stream or transfer open across it must survive that, so
	// these are longer than any pause a healthy sandbox takes.
	DefaultIdleTimeout       = 5 * time.Minute
	DefaultStreamIdleTimeout = 5 * time.Minute
	// keepaliveInterval is what the client asks envd for (Keepalive-Ping-Interval):
	// well under the stream-idle limit, so a live but quiet command never trips it.
	keepaliveInterval = 30 * time.Second
)

// Option changes a Client's limits (tests use short ones).
type Option func(*limits)

type limits struct{ unary, idle, streamIdle time.Duration }

func defaultLimits() limits {
	return limits{unary: DefaultUnaryTimeout, idle: DefaultIdleTimeout, streamIdle: DefaultStreamIdleTimeout}
}

// WithUnaryTimeout bounds unary calls whose caller set no deadline.
func WithUnaryTimeout(d time.Duration) Option { return func(l *limits) { l.unary = d } }

// WithIdleTimeout bounds a pause of an upload or download.
func WithIdleTimeout(d time.Duration) Option { return func(l *limits) { l.idle = d } }

// WithStreamIdleTimeout bounds a silence of a command's stream (keepalives count).
func WithStreamIdleTimeout(d time.Duration) Option { return func(l *limits) { l.streamIdle = d } }

// TimeoutError is a call the client itself ended: envd did not answer within the
// unary limit, or a transfer or stream went silent for its idle limit. It is a
// deadline (errors.Is(err, context.DeadlineExceeded)).
type TimeoutError struct {
	Op    string // "health", "stat /x", "write /x", …
	After time.Duration
	Idle  bool // no progress for After, rather than no answer within it
}

func (e *TimeoutError) Error() string {
	if e.Idle {
		return fmt.Sprintf("envd %s: nothing moved for %v (guest hung or gone?)", e.Op, e.After)
	}
	return fmt.Sprintf("envd %s: no answer within %v (guest hung or gone?)", e.Op, e.After)
}

// Timeout marks it as a timeout for net.Error-style checks.
func (e *TimeoutError) Timeout() bool { return true }

// Is makes it a context.DeadlineExceeded.
func (e *TimeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// unary gives ctx the unary limit when it has no deadline. done turns an error the
// limit caused into a TimeoutError for op, and releases the context.
func (c *Client) unary(ctx context.Context, op string) (context.Context, func(error) error) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func(err error) error { return err }
	}
	te := &TimeoutError{Op: op, After: c.lim.unary}
	ctx, cancel := context.WithTimeoutCause(ctx, c.lim.unary, te)
	return ctx, func(err error) error {
		defer cancel()
		if err != nil && errors.Is(context.Cause(ctx), te) {
			return fmt.Errorf("%w: %w", te, err)
		}
		return err
	}
}

// deadlineInterceptor applies the unary limit to the Connect services' unary calls;
// streams are left to their watchdog (Run).
type deadlineInterceptor struct{ c *Client }

func (d deadlineInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		ctx, done := d.c.unary(ctx, req.Spec().Procedure)
		resp, err := next(ctx, req)
		if err = done(err); err != nil {
			var te *TimeoutError
			if errors.As(err, &te) {
				// Keep it a Connect error: callers read its code.
				return nil, connect.NewError(connect.CodeDeadlineExceeded, te)
			}
		}
		return resp, err
	}
}

func (d deadlineInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (d deadlineInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// watchdog cancels a context when it is armed and not fed for its limit: an idle
// transfer or a silent stream. Safe for concurrent use (the transport reads an
// upload's body on its own goroutine).
type watchdog struct {
	mu     sync.Mutex
	timer  *time.Timer
	cause  *TimeoutError // what firing means now; its After is the limit
	done   bool
	cancel context.CancelCauseFunc
}

// newWatchdog returns ctx ending with cause when w, armed at once, is not fed for
// cause.After.
func newWatchdog(ctx context.Context, cause *TimeoutError) (context.Context, *watchdog) {
	ctx, cancel := context.WithCancelCause(ctx)
	w := &watchdog{cancel: cancel, cause: cause}
	w.timer = time.AfterFunc(cause.After, func() {
		w.mu.Lock()
		c := w.cause
		w.mu.Unlock()
		cancel(c)
	})
	return ctx, w
}

// arm restarts the countdown (progress was made, or a wait on the peer begins).
func (w *watchdog) arm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.timer.Reset(w.cause.After)
	}
}

// rearm changes what the countdown means and restarts it (a stream's start is
// awaited for one limit, its later silences for another).
func (w *watchdog) rearm(cause *TimeoutError) {
	w.mu.Lock()
	w.cause = cause
	w.mu.Unlock()
	w.arm()
}

// disarm stops the countdown while the wait is on our side (the caller's source or
// sink), not the peer's.
func (w *watchdog) disarm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.timer.Stop()
}

// stop ends the watch for good and releases the context.
func (w *watchdog) stop() {
	w.mu.Lock()
	w.done = true
	w.timer.Stop()
	w.mu.Unlock()
	w.cancel(context.Canceled)
}

// ours is the TimeoutError that ended ctx, if a watchdog did.
func ours(ctx context.Context) *TimeoutError {
	var te *TimeoutError
	if errors.As(context.Cause(ctx), &te) {
		return te
	}
	return nil
}

// explain turns an error a watchdog caused into its TimeoutError.
func explain(ctx context.Context, err error) error {
	if te := ours(ctx); err != nil && te != nil {
		return fmt.Errorf("%w: %w", te, err)
	}
	return err
}

// uploadBody counts only the time the transport waits to send more, not the time
// the caller's source takes to produce it: a slow client of the agent is the agent
// server's business (its own stream limits), a guest that stops taking bytes is ours.
type uploadBody struct {
	r io.Reader
	w *watchdog
}

func (b *uploadBody) Read(p []byte) (int, error) {
	b.w.disarm()
	n, err := b.r.Read(p)
	b.w.arm() // the transport now writes to the guest, or awaits its answer (EOF)
	return n, err
}

// downloadBody counts only the time a read waits for the guest, not the time the
// caller takes between reads.
type downloadBody struct {
	rc  io.ReadCloser
	w   *watchdog
	ctx context.Context
}

func (b *downloadBody) Read(p []byte) (int, error) {
	b.w.arm()
	n, err := b.rc.Read(p)
	b.w.disarm()
	if err != nil && !errors.Is(err, io.EOF) {
		err = explain(b.ctx, err)
	}
	return n, err
}

func (b *downloadBody) Close() error {
	err := b.rc.Close()
	b.w.stop()
	return err
}
