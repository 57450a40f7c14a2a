package accounts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// Failed logins per email are counted in Redis so password guessing is throttled
// across every control-plane replica: after loginMaxFailures within loginWindow the
// email is refused until the window passes (a success clears the count).
const (
	loginMaxFailures = 10
	loginWindow      = 15 * time.Minute
)

// TooManyError is core.ErrTooMany with when to try again.
type TooManyError struct{ RetryAfter time.Duration }

func (e *TooManyError) Error() string {
	return fmt.Sprintf("too many failed logins for this email: try again in %s", e.RetryAfter.Round(time.Second))
}

func (e *TooManyError) Unwrap() error { return core.ErrTooMany }

func loginFailKey(email string) string { return "wrenn:login-failures:" + email }

// loginAllowed refuses an email that failed too often. When Redis is down it lets the
// attempt through (bcrypt still bounds the guessing rate) and says so in the log.
func (s *Service) loginAllowed(ctx context.Context, email string) error {
	n, err := s.st.Redis.Get(ctx, loginFailKey(email)).Int()
	if err != nil {
		if !errors.Is(err, redis.Nil) {
			s.log.Error("login throttle unavailable", "err", err)
		}
		return nil
	}
	if n < loginMaxFailures {
		return nil
	}
	ttl, err := s.st.Redis.TTL(ctx, loginFailKey(email)).Result()
	if err != nil || ttl <= 0 {
		ttl = loginWindow
	}
	return &TooManyError{RetryAfter: ttl}
}

func (s *Service) loginFailed(ctx context.Context, email string) {
	key := loginFailKey(email)
	pipe := s.st.Redis.TxPipeline()
	pipe.Incr(ctx, key)
	pipe.ExpireNX(ctx, key, loginWindow)
	if _, err := pipe.Exec(ctx); err != nil {
		s.log.Error("count failed login", "err", err)
	}
}

// apiKeyUseInterval is how often a key's last_used is written: once per interval per
// key, not on every request, so busy keys cost no database write per call.
const apiKeyUseInterval = time.Minute

// shouldRecordKeyUse reports whether this request is the first use of the key in the
// interval (always true when Redis cannot say).
func (s *Service) shouldRecordKeyUse(ctx context.Context, keyID string) bool {
	// This replica recorded it within the interval: no need to ask Redis either.
	now := s.now()
	if last, ok := s.keyUses.Load(keyID); ok && now.Sub(last.(time.Time)) < apiKeyUseInterval {
		return false
	}
	s.keyUses.Store(keyID, now)
	ok, err := s.st.Redis.SetNX(ctx, "wrenn:api-key-used:"+keyID, 1, apiKeyUseInterval).Result()
	if err != nil {
		s.log.Warn("api key use debounce unavailable", "err", err)
		return true
	}
	return ok
}
