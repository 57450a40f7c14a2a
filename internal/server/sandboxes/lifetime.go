package sandboxes

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/internal/lifecycle"
	"github.com/wrennhq/wrenn/internal/server/auth"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// A sandbox's lifetime has two models, one row carrying both. Wrenn's own: an idle
// timeout (timeout_sec), which the sandbox's agent enforces by pausing it. E2B's: an
// absolute end (end_at) set at create, moved by SetTimeout, only ever extended by
// Connect and Refresh, at which the control plane stops the sandbox or, when it was
// created to (on_timeout "pause"), pauses it. RunExpiry enforces ends.

// What happens to a sandbox at its end.
const (
	OnTimeoutKill  = "kill"
	OnTimeoutPause = "pause"
)

// EnvdAccessToken is the token the sandbox's envd requires (X-Access-Token): derived
// from its id with the install's key, so any control plane can hand it out again
// (E2B's SDKs embed it in signed file URLs, so it must not change while the sandbox
// lives) and none stores it.
func (s *Service) EnvdAccessToken(id string) string { return s.derive("envd-access-token", id) }

// TrafficAccessToken is the token that opens a private sandbox's ports
// (e2b-traffic-access-token), derived as EnvdAccessToken is; only its hash is stored,
// which the proxy compares.
func (s *Service) TrafficAccessToken(id string) string {
	return auth.TrafficTokenPrefix + s.derive("traffic-access-token", id)
}

func (s *Service) derive(purpose, id string) string {
	m := hmac.New(sha256.New, s.envdTokenKey)
	m.Write([]byte(purpose + "\x00" + id))
	return hex.EncodeToString(m.Sum(nil))
}

// checkEnd validates an end given in seconds from now.
func checkEnd(sec int) error {
	if sec < 1 || sec > maxTimeoutSec {
		return fmt.Errorf("%w: timeout %d s out of range 1..%d", core.ErrInvalid, sec, maxTimeoutSec)
	}
	return nil
}

// SetTimeout makes a live sandbox of the principal's team end sec seconds from now,
// sooner or later than it would have (E2B's setTimeout); a sandbox without an end
// gets one.
func (s *Service) SetTimeout(ctx context.Context, p *core.Principal, id string, sec int) (*Sandbox, error) {
	if err := checkEnd(sec); err != nil {
		return nil, err
	}
	row, err := s.sandboxRow(ctx, p, id)
	if err != nil {
		return nil, err
	}
	var out db.Sandbox
	err = s.st.Tx(ctx, func(q *db.Queries) error {
		var err error
		if out, err = q.SetSandboxEnd(ctx, db.SetSandboxEndParams{ID: id, TeamID: row.TeamID, EndInSec: int32(sec)}); err != nil {
			return err
		}
		return core.Audit(ctx, q, p, "sandbox.set_timeout", "sandbox", id, map[string]any{"timeout_sec": sec})
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: sandbox %s is %s", core.ErrNotFound, id, row.Status)
	}
	if err != nil {
		return nil, fmt.Errorf("set timeout of %s: %w", id, err)
	}
	s.sandboxesChanged(ctx, row.TeamID)
	return toSandbox(out), nil
}

// ExtendEnd makes a live sandbox of the principal's team with an end end no sooner
// than sec seconds from now (E2B's connect and refresh); its end never moves
// earlier, and a sandbox without one keeps none.
func (s *Service) ExtendEnd(ctx context.Context, p *core.Principal, id string, sec int) (*Sandbox, error) {
	if err := checkEnd(sec); err != nil {
		return nil, err
	}
	row, err := s.sandboxRow(ctx, p, id)
	if err != nil {
		return nil, err
	}
	if !live(stateOf(row)) {
		return nil, fmt.Errorf("%w: sandbox %s is %s", core.ErrNotFound, id, row.Status)
	}
	if row.EndAt == nil {
		return toSandbox(row), nil
	}
	out, err := s.q.ExtendSandboxEnd(ctx, db.ExtendSandboxEndParams{ID: id, TeamID: row.TeamID, EndInSec: int32(sec)})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: sandbox %s ended meanwhile", core.ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("extend end of %s: %w", id, err)
	}
	s.sandboxesChanged(ctx, row.TeamID)
	return toSandbox(out), nil
}

// live: the states in which a sandbox exists for E2B (its end can move).
func live(st lifecycle.State) bool {
	switch st {
	case lifecycle.Running, lifecycle.Pausing, lifecycle.Paused, lifecycle.Resuming, lifecycle.Missing:
		return true
	}
	return false
}

// connectWait bounds how long Connect waits for a pause or resume under way.
const connectWait = 2 * time.Minute

// Connect returns a sandbox of the principal's team ready for use, resuming it when
// paused (resumed true), as E2B's connect: a running sandbox's end is only extended
// to sec from now, a resumed one's is set to it. A pause or resume under way is
// waited for; a sandbox being stopped is a conflict; a stopped or failed one is not
// found.
func (s *Service) Connect(ctx context.Context, p *core.Principal, id string, sec int) (sb *Sandbox, resumed bool, err error) {
	if err := checkEnd(sec); err != nil {
		return nil, false, err
	}
	deadline := time.Now().Add(connectWait)
	for {
		row, err := s.sandboxRow(ctx, p, id)
		if err != nil {
			return nil, false, err
		}
		switch st := stateOf(row); st {
		case lifecycle.Running, lifecycle.Missing:
			sb, err := s.ExtendEnd(ctx, p, id, sec)
			return sb, false, err
		case lifecycle.Paused:
			n := int32(sec)
			sb, err := s.resume(ctx, p, id, 0, &n)
			if errors.Is(err, core.ErrConflict) {
				continue // resumed or destroyed by someone else meanwhile: look again
			}
			return sb, err == nil, err
		case lifecycle.Stopping:
			return nil, false, fmt.Errorf("%w: sandbox %s is being stopped", core.ErrConflict, id)
		case lifecycle.Stopped, lifecycle.Error:
			return nil, false, fmt.Errorf("%w: sandbox %s is %s", core.ErrNotFound, id, st)
		}
		// Starting, pausing, resuming: wait for where it lands.
		if time.Now().After(deadline) {
			return nil, false, fmt.Errorf("%w: sandbox %s is still %s", core.ErrConflict, id, row.Status)
		}
		select {
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Expiry runs often (every ExpiryInterval): an end is honoured within about that.
const (
	ExpiryInterval = 250 * time.Millisecond
	expiryBatch    = 100
	expiryWorkers  = 8
)

// RunExpiry stops, or pauses, running sandboxes whose end has come, until ctx ends.
// With several control planes, a Redis lease lets one of them look each round; a
// sandbox being handled is not picked again until its handling is over.
func (s *Service) RunExpiry(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = ExpiryInterval
	}
	var (
		mu       sync.Mutex
		handling = map[string]bool{}
		wg       sync.WaitGroup
	)
	defer wg.Wait()
	slots := make(chan struct{}, expiryWorkers)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if ok, err := s.st.Redis.SetNX(ctx, "wrenn:expiry-lease", 1, interval*9/10).Result(); err != nil || !ok {
			if err != nil && ctx.Err() == nil {
				s.log.Warn("expiry lease", "err", err)
			}
			continue
		}
		rows, err := s.q.ListExpiredSandboxes(ctx, expiryBatch)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("list expired sandboxes", "err", err)
			}
			continue
		}
		for _, row := range rows {
			mu.Lock()
			busy := handling[row.ID]
			handling[row.ID] = true
			mu.Unlock()
			if busy {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				slots <- struct{}{}
				defer func() { <-slots }()
				s.expire(context.WithoutCancel(ctx), row)
				mu.Lock()
				delete(handling, row.ID)
				mu.Unlock()
			}()
		}
	}
}

// expire ends one sandbox: pauses it when it was created to, stopping it should the
// pause fail (its end is not moved, so it would be tried again and again), and
// otherwise stops it. Both are recorded in the audit log without an actor.
func (s *Service) expire(ctx context.Context, row db.Sandbox) {
	p := &core.Principal{TeamID: core.UUIDString(row.TeamID)}
	meta := map[string]any{"reason": "end_at", "end_at": row.EndAt}
	if row.OnTimeout == OnTimeoutPause {
		_, err := s.pause(ctx, p, row.ID, meta)
		if err == nil || errors.Is(err, core.ErrConflict) || errors.Is(err, core.ErrNotFound) {
			return // paused, or no longer running (destroyed, paused by another)
		}
		s.log.Warn("pause at the sandbox's end failed: stopping it", "sandbox", row.ID, "err", err)
	}
	if err := s.destroy(ctx, p, row.ID, meta); err != nil && !errors.Is(err, core.ErrNotFound) {
		s.log.Error("stop sandbox at its end", "sandbox", row.ID, "err", err)
		return
	}
	s.log.Info("sandbox ended: its timeout passed", "sandbox", row.ID, "on_timeout", row.OnTimeout)
}
