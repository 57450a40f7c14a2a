package netslot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
)

// PoolOptions configures a Pool.
type PoolOptions struct {
	// Size is how many slots with internet off are kept ready, InternetSize how many with
	// internet on. 0 keeps none of that kind: Get then switches a ready slot of the other
	// kind (two nftables transactions, 0.3–0.8 ms on the dev VM) or creates one.
	Size, InternetSize int
	// FirstIndex..LastIndex (inclusive) is the index range the pool allocates from and
	// the only range Reclaim touches. Defaults: 1 and Config.Limit().
	FirstIndex, LastIndex int
}

// Pool keeps slots ready so that a sandbox gets its network in microseconds rather than
// the tens of milliseconds Create takes.
//
// Slots are never reused: Release destroys, and the pool creates fresh ones in the
// background, so nothing (conntrack, neighbour entries, a guest's leftovers) carries over
// from one sandbox to the next. Ready slots are kept per internet setting, fully
// configured in the background, because switching the setting costs two nftables
// transactions (host set + namespace chain), several hundred microseconds here — too much
// for a Get that should cost microseconds.
//
// Indices are allocated round-robin, skipping any index the pool holds and any whose
// namespace exists (another process's, or a leftover), so a restart never collides with
// slots still running.
type Pool struct {
	cfg         Config
	first, last int

	mu       sync.Mutex
	size     [2]int // wanted ready slots, indexed by kind (0 internet off, 1 on)
	ready    [2][]*Slot
	creating [2]int
	held     map[int]bool // created, handed out, adopted or reserved by Reclaim
	cursor   int
	closed   bool
	lastErr  error

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

// NewPool validates cfg (including against the host's routes), then starts filling the
// pool in the background.
func NewPool(cfg Config, o PoolOptions) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("network ranges: %w", err)
	}
	if o.FirstIndex == 0 {
		o.FirstIndex = 1
	}
	if o.LastIndex == 0 {
		o.LastIndex = cfg.Limit()
	}
	if o.FirstIndex < 1 || o.LastIndex > cfg.Limit() || o.FirstIndex > o.LastIndex {
		return nil, fmt.Errorf("pool index range %d..%d not within 1..%d", o.FirstIndex, o.LastIndex, cfg.Limit())
	}
	if o.Size < 0 || o.InternetSize < 0 || o.Size+o.InternetSize > o.LastIndex-o.FirstIndex+1 {
		return nil, fmt.Errorf("pool sizes %d+%d do not fit index range %d..%d", o.Size, o.InternetSize, o.FirstIndex, o.LastIndex)
	}
	p := &Pool{
		cfg: cfg, first: o.FirstIndex, last: o.LastIndex, cursor: o.FirstIndex, size: [2]int{o.Size, o.InternetSize},
		held: map[int]bool{}, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go p.fill()
	return p, nil
}

// Get returns a slot with the requested internet access: a ready one of that kind when
// there is one, else a ready one of the other kind switched over, else one created now.
func (p *Pool) Get(ctx context.Context, allowInternet bool) (*Slot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errors.New("slot pool closed")
	}
	s := p.popAny(allowInternet)
	p.mu.Unlock()
	p.kick()
	for s == nil {
		var err error
		if s, err = p.create(); err == nil {
			break
		}
		// Every free index may be held by a refill that is about to make it ready:
		// wait for that slot rather than fail while one is on its way.
		p.mu.Lock()
		inFlight := p.creating[0]+p.creating[1] > 0
		p.mu.Unlock()
		if !errors.Is(err, errNoFreeSlot) || !inFlight {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		p.mu.Lock()
		s = p.popAny(allowInternet)
		p.mu.Unlock()
	}
	if s.Internet() != allowInternet {
		if err := s.SetInternet(allowInternet); err != nil {
			return nil, errors.Join(err, p.Release(s))
		}
	}
	return s, nil
}

func kind(internet bool) int {
	if internet {
		return 1
	}
	return 0
}

// popAny takes a ready slot of the wanted kind, else of the other; p.mu is held.
func (p *Pool) popAny(allowInternet bool) *Slot {
	if s := p.pop(kind(allowInternet)); s != nil {
		return s
	}
	return p.pop(kind(!allowInternet))
}

// errNoFreeSlot: every index of the pool's range is taken.
var errNoFreeSlot = errors.New("no free network slot")

// pop takes the newest ready slot of kind k, or nil; p.mu is held.
func (p *Pool) pop(k int) *Slot {
	n := len(p.ready[k])
	if n == 0 {
		return nil
	}
	s := p.ready[k][n-1]
	p.ready[k] = p.ready[k][:n-1]
	return s
}

// Release destroys a slot from Get or Adopt and frees its index. A slot that fails to
// be destroyed keeps its index reserved, so it is never handed out half-removed.
func (p *Pool) Release(s *Slot) error {
	if err := s.Destroy(); err != nil {
		return err
	}
	p.mu.Lock()
	delete(p.held, s.Index)
	p.mu.Unlock()
	p.kick()
	return nil
}

// Adopt takes over the existing slot i (after an agent restart) and reserves its index.
// ErrOutOfRange: a slot index is not this pool's (another agent's, or a changed range).
var ErrOutOfRange = errors.New("outside the pool's range")

// Owns reports whether slot index i is in the pool's range.
func (p *Pool) Owns(i int) bool { return i >= p.first && i <= p.last }

func (p *Pool) Adopt(i int) (*Slot, error) {
	if i < p.first || i > p.last {
		return nil, fmt.Errorf("adopt slot %d: %w %d..%d", i, ErrOutOfRange, p.first, p.last)
	}
	p.mu.Lock()
	for _, r := range slices.Concat(p.ready[0], p.ready[1]) {
		if r.Index == i {
			p.mu.Unlock()
			return nil, fmt.Errorf("adopt slot %d: it is one of the pool's own ready slots", i)
		}
	}
	wasHeld := p.held[i]
	p.held[i] = true
	p.mu.Unlock()
	s, err := p.cfg.Adopt(i)
	if err != nil {
		if !wasHeld {
			p.mu.Lock()
			delete(p.held, i)
			p.mu.Unlock()
		}
		return nil, err
	}
	return s, nil
}

// Reclaim removes the namespaces in the pool's range that neither the pool holds nor
// isInUse claims — leftovers of a previous run — together with stray host veths and host
// egress entries of those indices. Indices isInUse claims are reserved (never allocated)
// until Adopt+Release. The agent calls it after re-adopting its sandboxes.
func (p *Pool) Reclaim(isInUse func(index int) bool) error {
	var errs []error
	present := map[int]bool{}
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("reclaim: %w", err)
	}
	for _, e := range entries {
		if i, ok := p.indexOf(e.Name(), nsPrefix); ok {
			present[i] = true
		}
	}
	// A veth whose namespace is gone but whose peer lives on (some process still holds
	// the namespace) counts as a leftover too.
	links, err := retryDump(netlink.LinkList)
	if err != nil {
		return fmt.Errorf("reclaim: list links: %w", err)
	}
	for _, l := range links {
		if i, ok := p.indexOf(l.Attrs().Name, vethPrefix); ok {
			present[i] = true
		}
	}
	stale, err := p.staleEgress()
	if err != nil {
		errs = append(errs, err)
	}
	for _, i := range stale {
		present[i] = true
	}
	for i := range present {
		// Held while being destroyed too, so reserve cannot hand the index out meanwhile.
		p.mu.Lock()
		held := p.held[i]
		p.held[i] = true
		p.mu.Unlock()
		if held || isInUse(i) {
			continue
		}
		a, err := p.cfg.Addrs(i)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s := &Slot{Addrs: a, internet: true} // internet: also clear the host egress entry
		if err := s.Destroy(); err != nil {
			errs = append(errs, fmt.Errorf("reclaim slot %d: %w", i, err))
			continue // stays held: never handed out half-removed
		}
		p.mu.Lock()
		delete(p.held, i)
		p.mu.Unlock()
	}
	p.kick()
	return errors.Join(errs...)
}

// staleEgress lists indices in range with an entry in the host's egress set.
func (p *Pool) staleEgress() ([]int, error) {
	conn, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("reclaim: nftables: %w", err)
	}
	// Without the host table there is no set; asking for the set's elements then fails
	// with an error nftables does not wrap, so look for the table first.
	if _, err := conn.ListTableOfFamily(tableName, nftables.TableFamilyINet); isNotExist(err) {
		return nil, nil
	}
	els, err := conn.GetSetElements(&nftables.Set{Table: hostTable(), Name: egressSet, KeyType: nftables.TypeIFName})
	if isNotExist(err) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("reclaim: host egress set: %w", err)
	}
	var out []int
	for _, e := range els {
		if i, ok := p.indexOf(strings.TrimRight(string(e.Key), "\x00"), vethPrefix); ok {
			out = append(out, i)
		}
	}
	return out, nil
}

// indexOf parses "<prefix><index>" within the pool's range.
func (p *Pool) indexOf(name, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(rest)
	return i, err == nil && i >= p.first && i <= p.last && strconv.Itoa(i) == rest
}

// Ready is the number of slots ready now with the given internet setting.
func (p *Pool) Ready(internet bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ready[kind(internet)])
}

// Err is the last background creation error, or nil.
func (p *Pool) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErr
}

// Close stops refilling and destroys the ready slots. Slots handed out are left alone:
// their sandboxes outlive an agent restart.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	close(p.stop)
	<-p.done
	p.mu.Lock()
	ready := slices.Concat(p.ready[0], p.ready[1])
	p.ready = [2][]*Slot{}
	p.mu.Unlock()
	var errs []error
	for _, s := range ready {
		if err := p.Release(s); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (p *Pool) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// fill keeps the ready lists at their sizes, topping up the kind furthest below its
// size first, and backs off after failures so a broken host does not spin.
func (p *Pool) fill() {
	defer close(p.done)
	backoff := time.Duration(0)
	for {
		p.mu.Lock()
		k, deficit := 0, 0
		for i := range 2 {
			if d := p.size[i] - len(p.ready[i]) - p.creating[i]; d > deficit {
				k, deficit = i, d
			}
		}
		need := !p.closed && deficit > 0
		if need {
			p.creating[k]++
		}
		p.mu.Unlock()
		if !need {
			select {
			case <-p.wake:
				continue
			case <-p.stop:
				return
			}
		}
		s, err := p.create()
		if err == nil && k == 1 {
			if err = s.SetInternet(true); err != nil {
				err = errors.Join(err, p.Release(s))
			}
		}
		p.mu.Lock()
		p.creating[k]--
		if err == nil {
			p.ready[k] = append(p.ready[k], s) // Close destroys it if it closed meanwhile
			backoff = 0
		} else {
			p.lastErr = err
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
		}
		p.mu.Unlock()
		if backoff > 0 {
			select {
			case <-time.After(backoff):
			case <-p.stop:
				return
			}
		}
	}
}

// create allocates an index and creates its slot. An index whose namespace appeared
// meanwhile (another process) is skipped, a bounded number of times.
func (p *Pool) create() (*Slot, error) {
	for range 16 {
		i, err := p.reserve()
		if err != nil {
			return nil, err
		}
		s, err := p.cfg.Create(i)
		if err == nil {
			return s, nil
		}
		p.mu.Lock()
		delete(p.held, i)
		p.mu.Unlock()
		if !errors.Is(err, os.ErrExist) {
			return nil, err
		}
	}
	return nil, errors.New("no free network slot: every index tried was taken concurrently")
}

// reserve picks the next index round-robin that the pool does not hold and that has no
// namespace, and marks it held.
func (p *Pool) reserve() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.last - p.first + 1
	for range n {
		i := p.cursor
		p.cursor++
		if p.cursor > p.last {
			p.cursor = p.first
		}
		if p.held[i] {
			continue
		}
		if _, err := os.Stat(netnsDir + "/" + nsPrefix + strconv.Itoa(i)); err == nil {
			continue
		}
		p.held[i] = true
		return i, nil
	}
	return 0, fmt.Errorf("%w in %d..%d", errNoFreeSlot, p.first, p.last)
}
