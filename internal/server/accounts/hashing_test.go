package accounts

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/server/core"
)

// When every hashing slot stays busy past the wait, login and sign-up answer
// BusyError (503 with Retry-After) without checking the password, and the attempt
// is given back: a busy server must not eat into anyone's limit.
func TestHashingBusy(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	s.hashSlots = make(chan struct{}, 1)
	s.hashWait = 20 * time.Millisecond
	s.hashSlots <- struct{}{} // the only slot is taken
	var busy *BusyError
	if _, err := s.Login(ctx, "ann@example.com", "correct horse battery", "192.0.2.1"); !errors.As(err, &busy) || !errors.Is(err, core.ErrUnavailable) || busy.RetryIn() <= 0 {
		t.Fatalf("login with no free slot: %v", err)
	}
	if _, err := s.Signup(ctx, "ann@example.com", "", "correct horse battery", "192.0.2.1"); !errors.As(err, &busy) {
		t.Fatalf("sign-up with no free slot: %v", err)
	}
	for _, c := range []counter{loginPerAddress.of("192.0.2.1"), loginPerPair.of("192.0.2.1", "ann@example.com"), signupPerAddress.of("192.0.2.1")} {
		if n, _ := s.st.Redis.Get(ctx, c.key).Int(); n != 0 {
			t.Errorf("%s after a busy refusal: %d, want 0", c.key, n)
		}
	}
	<-s.hashSlots
	if _, err := s.Signup(ctx, "ann@example.com", "", "correct horse battery", "192.0.2.1"); err != nil {
		t.Fatalf("sign-up once a slot is free: %v", err)
	}
}
