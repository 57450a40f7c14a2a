// Package streamx holds what envd's server-streaming RPCs share: keepalive timing from
// the Keepalive-Ping-Interval header and mapping a finished stream context to a Connect
// error.
package streamx

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
)

// Keepalive interval bounds (spec §1.5).
const (
	// DefaultKeepalive applies when the header is missing, unparsable or not positive.
	DefaultKeepalive = 90 * time.Second
	// MaxKeepalive caps absurd values (and keeps n*time.Second from overflowing).
	MaxKeepalive = 24 * time.Hour
)

// KeepaliveInterval reads Keepalive-Ping-Interval (whole seconds).
func KeepaliveInterval(h http.Header) time.Duration {
	n, err := strconv.ParseInt(strings.TrimSpace(h.Get("Keepalive-Ping-Interval")), 10, 64)
	if err != nil || n <= 0 {
		return DefaultKeepalive
	}
	if n > int64(MaxKeepalive/time.Second) {
		return MaxKeepalive
	}
	return time.Duration(n) * time.Second
}

// Keepalive fires when a stream has been idle for the client's ping interval.
type Keepalive struct {
	interval time.Duration
	timer    *time.Timer
}

// NewKeepalive starts the idle timer of one stream.
func NewKeepalive(h http.Header) *Keepalive {
	d := KeepaliveInterval(h)
	return &Keepalive{interval: d, timer: time.NewTimer(d)}
}

// C fires when a keepalive is due.
func (k *Keepalive) C() <-chan time.Time { return k.timer.C }

// Reset restarts the idle period after something was sent.
func (k *Keepalive) Reset() { k.timer.Reset(k.interval) }

// Stop releases the timer.
func (k *Keepalive) Stop() { k.timer.Stop() }

// ContextError turns the end of a stream's context into the Connect error clients expect:
// deadline_exceeded when Connect-Timeout-Ms elapsed, canceled when the client left.
func ContextError(ctx context.Context) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return connect.NewError(connect.CodeDeadlineExceeded, errors.New("stream deadline exceeded"))
	}
	return connect.NewError(connect.CodeCanceled, err)
}
