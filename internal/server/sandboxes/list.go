package sandboxes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/redis/go-redis/v9"
	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/internal/lifecycle"
	"github.com/wrennhq/wrenn/internal/server/core"
	"golang.org/x/sync/singleflight"
)

// knownStates lists the states a filter may name, for its error message.
var knownStates = func() string {
	names := make([]string, len(lifecycle.All))
	for i, st := range lifecycle.All {
		names[i] = string(st)
	}
	return strings.Join(names, ", ")
}()

// MaxList bounds one listing.
const MaxList = 1000

// ListFilter selects sandboxes to list.
type ListFilter struct {
	// States to include; empty means the team's live sandboxes: every state but
	// stopped and error (failed creates and sandboxes whose VM died are listed when
	// asked for, by "error" or "all").
	States []string
	Limit  int // 1..MaxList; 0 = MaxList
}

func (f ListFilter) normalise() (ListFilter, error) {
	out := ListFilter{Limit: f.Limit}
	if out.Limit == 0 {
		out.Limit = MaxList
	}
	if out.Limit < 1 || out.Limit > MaxList {
		return out, fmt.Errorf("%w: limit %d out of range 1..%d", core.ErrInvalid, f.Limit, MaxList)
	}
	switch {
	case len(f.States) == 0:
		for _, st := range lifecycle.All {
			if st != lifecycle.Stopped && st != lifecycle.Error {
				out.States = append(out.States, string(st))
			}
		}
	case slices.Contains(f.States, "all"):
		out.States = nil // no filter
	default:
		for _, st := range f.States {
			if !lifecycle.Known(st) {
				return out, fmt.Errorf("%w: unknown state %q (one of %s, or all)", core.ErrInvalid, st, knownStates)
			}
		}
		out.States = slices.Compact(slices.Sorted(slices.Values(f.States)))
	}
	return out, nil
}

// SandboxList is a listing; it may be shared by concurrent requests, so it is
// read-only, and its JSON is encoded once.
type SandboxList struct {
	Sandboxes []*Sandbox
	encode    sync.Once
	json      []byte
	err       error
}

// JSON is the listing as a JSON array.
func (l *SandboxList) JSON() ([]byte, error) {
	l.encode.Do(func() { l.json, l.err = json.Marshal(l.Sandboxes) })
	return l.json, l.err
}

// ListSandboxes lists the team's sandboxes, newest first. Identical listings are
// answered from a cache keyed by the team's sandbox version in Redis, which every
// change bumps before it is acknowledged, so a caller always sees its own writes.
func (s *Service) ListSandboxes(ctx context.Context, p *core.Principal, f ListFilter) (*SandboxList, error) {
	f, err := f.normalise()
	if err != nil {
		return nil, err
	}
	teamID, err := core.ParseUUID(p.TeamID)
	if err != nil {
		return nil, err
	}
	load := func() (*SandboxList, error) {
		// A shared load outlives the request that started it: others wait on it.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		rows, err := s.q.ListSandboxes(ctx, db.ListSandboxesParams{TeamID: teamID, Statuses: f.States, MaxRows: int32(f.Limit)})
		if err != nil {
			return nil, fmt.Errorf("list sandboxes: %w", err)
		}
		out := &SandboxList{Sandboxes: make([]*Sandbox, 0, len(rows))}
		for _, r := range rows {
			out.Sandboxes = append(out.Sandboxes, toSandbox(r))
		}
		return out, nil
	}
	version, err := s.st.Redis.Get(ctx, sandboxesVersionKey(p.TeamID)).Int64()
	if errors.Is(err, redis.Nil) {
		version, err = 0, nil
	}
	if err != nil {
		s.log.Warn("sandbox list cache unavailable", "err", err)
		return load()
	}
	key := listKey{team: p.TeamID, filter: strings.Join(f.States, ",") + "/" + strconv.Itoa(f.Limit), version: version}
	return s.lists.get(key, s.now(), load)
}

func sandboxesVersionKey(teamID string) string { return "wrenn:sandboxes-version:" + teamID }

// sandboxesChanged bumps the team's sandbox version after a committed change. If
// Redis cannot be told, cached listings still expire within listMaxAge.
func (s *Service) sandboxesChanged(ctx context.Context, teamID pgtype.UUID) {
	if err := s.st.Redis.Incr(context.WithoutCancel(ctx), sandboxesVersionKey(core.UUIDString(teamID))).Err(); err != nil {
		s.log.Error("bump sandbox list version", "team", core.UUIDString(teamID), "err", err)
	}
}

// listMaxAge bounds how long a cached listing is used even when its version is
// current (a safety net for a missed version bump).
const listMaxAge = 2 * time.Second

// maxCachedLists bounds the cache; past it, the cache starts over.
const maxCachedLists = 4096

type listKey struct {
	team, filter string
	version      int64
}

type cachedList struct {
	list *SandboxList
	at   time.Time
}

// listCache holds recent listings; concurrent identical misses share one query.
type listCache struct {
	mu      sync.Mutex
	entries map[listKey]cachedList
	loads   singleflight.Group
}

func (c *listCache) get(key listKey, now time.Time, load func() (*SandboxList, error)) (*SandboxList, error) {
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < listMaxAge {
		return e.list, nil
	}
	v, err, _ := c.loads.Do(fmt.Sprintf("%s/%s/%d", key.team, key.filter, key.version), func() (any, error) {
		list, err := load()
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.entries == nil || len(c.entries) >= maxCachedLists {
			c.entries = map[listKey]cachedList{}
		}
		c.entries[key] = cachedList{list: list, at: now}
		return list, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*SandboxList), nil
}
