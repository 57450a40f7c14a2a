package accounts

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// Throttling policy. Attempts are counted in Redis, so the limits hold across every
// control-plane replica, and each attempt is counted atomically BEFORE its password is
// hashed: a burst of parallel requests is limited exactly like a sequential one (the
// 11th of 40 parallel guesses is refused, whatever order they finish in).
//
//   - login, per email and client address: 10 attempts per 15 minutes; a success clears
//     the count. Guessing from one address locks that address out of the email, not
//     the email's owner, who logs in from elsewhere.
//   - login, per client address (any email): 30 attempts per 15 minutes; a success
//     gives its attempt back, so people sharing an address who log in correctly do not
//     use it up. This bounds spraying one password over many emails. Sign-ups are
//     counted here too, and give their attempt back unless answered 409 (the email is
//     taken): learning which emails have accounts costs the same through either.
//   - sign-up, per client address: 10 attempts per hour, successes included (each one
//     hashes a password and creates an account).
//
// A refused attempt stays counted but never moves a window's end (the expiry is set
// only by the first attempt). When Redis is down attempts are let through, as before,
// and the log says so: the bound on concurrent hashing still limits the damage.
var (
	loginPerPair     = limit{name: "login-failures", max: 10, window: 15 * time.Minute, why: "too many login attempts for this email from your address"}
	loginPerAddress  = limit{name: "login-address", max: 30, window: 15 * time.Minute, why: "too many login attempts from your address"}
	signupPerAddress = limit{name: "signup-address", max: 10, window: time.Hour, why: "too many sign-ups from your address"}
)

type limit struct {
	name   string
	max    int64
	window time.Duration
	why    string // the start of the 429's message
}

// counter is one limit applied to one subject (an address, or an address and email).
type counter struct {
	limit
	key string
}

// of names the counter for a client address and, optionally, an email. The address
// comes first and never contains a space, so distinct subjects never share a key.
func (l limit) of(client string, email ...string) counter {
	return counter{limit: l, key: "wrenn:" + l.name + ":" + strings.Join(append([]string{client}, email...), " ")}
}

// TooManyError is core.ErrTooMany with when to try again.
type TooManyError struct {
	RetryAfter time.Duration
	Reason     string
}

func (e *TooManyError) Error() string {
	return fmt.Sprintf("%s: try again in %s", e.Reason, e.RetryAfter.Round(time.Second))
}

func (e *TooManyError) Unwrap() error { return core.ErrTooMany }

// RetryIn is when to try again (the API's Retry-After).
func (e *TooManyError) RetryIn() time.Duration { return e.RetryAfter }

// take counts one attempt on every counter in one MULTI/EXEC, and refuses it when any
// counter is over its limit. INCR hands each concurrent attempt a distinct count, so
// exactly max attempts per window get past, however many arrive at once.
func (s *Service) take(ctx context.Context, cs ...counter) error {
	pipe := s.st.Redis.TxPipeline()
	counts := make([]*redis.IntCmd, len(cs))
	ttls := make([]*redis.DurationCmd, len(cs))
	for i, c := range cs {
		counts[i] = pipe.Incr(ctx, c.key)
		pipe.ExpireNX(ctx, c.key, c.window)
		ttls[i] = pipe.PTTL(ctx, c.key)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		s.log.Error("throttle unavailable: attempt let through", "err", err)
		return nil
	}
	var refused *TooManyError
	for i, c := range cs {
		if counts[i].Val() <= c.max {
			continue
		}
		ttl := ttls[i].Val()
		if ttl <= 0 {
			ttl = c.window
		}
		if refused == nil || ttl > refused.RetryAfter {
			refused = &TooManyError{RetryAfter: ttl, Reason: c.why}
		}
	}
	if refused != nil {
		return refused
	}
	return nil
}

// giveBack un-counts an attempt that checked no password (the server was too busy, or
// the database failed) or that succeeded. Only a live count is decremented: a count
// that expired meanwhile must not come back as a negative number without expiry.
var giveBack = redis.NewScript(`
for _, k in ipairs(KEYS) do
  if redis.call('EXISTS', k) == 1 then redis.call('DECR', k) end
end
return 0`)

func (s *Service) giveBack(ctx context.Context, cs ...counter) {
	keys := make([]string, len(cs))
	for i, c := range cs {
		keys[i] = c.key
	}
	if err := giveBack.Run(ctx, s.st.Redis, keys).Err(); err != nil {
		s.log.Error("throttle: give back an attempt", "err", err)
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
