package accounts

import (
	"context"
	"fmt"
	"time"

	"github.com/wrennhq/wrenn/internal/server/core"
)

// Password hashing (bcrypt, ≈0.26 s of one CPU each) is bounded to GOMAXPROCS at once
// across logins and sign-ups, so a flood of them queues instead of starving the rest of
// the control plane. A request that waits longer than defaultHashWait for a slot is
// answered 503 with Retry-After: busyRetryAfter.
const (
	defaultHashWait = 10 * time.Second
	busyRetryAfter  = 5 * time.Second
)

// BusyError is core.ErrUnavailable with when to try again: every password-hashing slot
// stayed taken for longer than the wait.
type BusyError struct{ RetryAfter time.Duration }

func (e *BusyError) Error() string {
	return fmt.Sprintf("the server is busy checking passwords: try again in %s", e.RetryAfter.Round(time.Second))
}

func (e *BusyError) Unwrap() error { return core.ErrUnavailable }

// RetryIn is when to try again (the API's Retry-After).
func (e *BusyError) RetryIn() time.Duration { return e.RetryAfter }

// hashing runs fn, which hashes or compares a password, in one of the bounded slots.
func (s *Service) hashing(ctx context.Context, fn func()) error {
	wait := time.NewTimer(s.hashWait)
	defer wait.Stop()
	select {
	case s.hashSlots <- struct{}{}:
	case <-wait.C:
		return &BusyError{RetryAfter: busyRetryAfter}
	case <-ctx.Done():
		return fmt.Errorf("waiting to check a password: %w", ctx.Err())
	}
	defer func() { <-s.hashSlots }()
	fn()
	return nil
}
