package filesystem

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"connectrpc.com/connect"

	rpc "github.com/wrennhq/wrenn/gen/envd/filesystem"
)

// maxBufferedEvents bounds the events a polling watcher keeps between two
// GetWatcherEvents calls. A watcher nobody polls would otherwise grow without limit;
// when the bound is hit the watcher fails (resource_exhausted, reported by the next
// poll) and releases its inotify descriptor, rather than silently dropping events —
// the same choice inotify makes on queue overflow. 10 000 events with entries are a
// few megabytes at most.
const maxBufferedEvents = 10_000

// pollWatcher is a watch whose events are buffered for GetWatcherEvents (the Python
// SDK's synchronous watch_dir), instead of streamed.
type pollWatcher struct {
	id     string
	limit  int // maxBufferedEvents, lowered by tests
	d      *dirWatch
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	events []*rpc.FilesystemEvent
	err    error // sticky once set: the watch has stopped
}

// run consumes inotify events until ctx ends or the watch fails, then releases it.
func (p *pollWatcher) run(ctx context.Context) {
	defer close(p.done)
	defer p.d.close()
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-p.d.errs:
			p.fail(connect.NewError(connect.CodeInternal, fmt.Errorf("watcher error: %w", err)))
			return
		case ev, ok := <-p.d.events():
			if !ok {
				p.fail(connect.NewError(connect.CodeInternal, errors.New("watcher event channel closed")))
				return
			}
			evs, herr := p.d.handle(ev)
			if !p.buffer(evs) {
				return
			}
			if herr != nil {
				p.fail(connect.NewError(connect.CodeInternal, fmt.Errorf("watcher error: %w", herr)))
				return
			}
		}
	}
}

// buffer appends events, failing the watcher instead when they exceed the bound.
func (p *pollWatcher) buffer(evs []*rpc.FilesystemEvent) bool {
	if len(evs) == 0 {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.events)+len(evs) > p.limit {
		p.events = nil
		p.err = connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
			"watcher %s buffered more than %d events without being polled; events were lost and the watcher stopped",
			p.id, p.limit))
		p.log.Warn("polling watcher overflowed", "watcher", p.id, "limit", p.limit)
		return false
	}
	p.events = append(p.events, evs...)
	return true
}

func (p *pollWatcher) fail(err error) {
	p.log.Error("polling watcher failed", "watcher", p.id, "err", err)
	p.mu.Lock()
	p.err = err
	p.events = nil
	p.mu.Unlock()
}

// drain returns and clears the buffered events, or the watcher's failure.
func (p *pollWatcher) drain() ([]*rpc.FilesystemEvent, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return nil, p.err
	}
	evs := p.events
	p.events = nil
	return evs, nil
}

// stop ends the watch and waits until its goroutine and inotify descriptor are gone.
func (p *pollWatcher) stop() {
	p.cancel()
	<-p.done
}

// newWatcherID returns E2B's watcher id shape: "w" followed by a random id.
func newWatcherID() string {
	return "w" + strings.ToLower(rand.Text())
}

// CreateWatcher starts a watch whose events are collected until polled.
func (s *Service) CreateWatcher(_ context.Context, req *connect.Request[rpc.CreateWatcherRequest]) (*connect.Response[rpc.CreateWatcherResponse], error) {
	root, err := s.watchTarget(req.Header(), req.Msg.GetPath(), req.Msg.GetAllowNetworkMounts())
	if err != nil {
		return nil, err
	}
	d, err := openDirWatch(root, req.Msg.GetRecursive(), req.Msg.GetIncludeEntry(), s.names)
	if err != nil {
		return nil, s.internal("createwatcher", err)
	}
	// The watcher outlives this request; it ends on RemoveWatcher or Close.
	ctx, cancel := context.WithCancel(s.ctx)
	p := &pollWatcher{
		id:     newWatcherID(),
		limit:  s.maxBuffered,
		d:      d,
		log:    s.log,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go p.run(ctx)

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		p.stop()
		return nil, errShuttingDown()
	}
	s.watchers[p.id] = p
	s.mu.Unlock()
	s.log.Debug("polling watcher created", "watcher", p.id, "path", root, "recursive", req.Msg.GetRecursive())
	return connect.NewResponse(&rpc.CreateWatcherResponse{WatcherId: p.id}), nil
}

func (s *Service) watcher(id string) (*pollWatcher, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.watchers[id]
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("watcher with id %s not found", id))
	}
	return p, nil
}

// GetWatcherEvents returns and clears the events buffered since the last call.
func (s *Service) GetWatcherEvents(_ context.Context, req *connect.Request[rpc.GetWatcherEventsRequest]) (*connect.Response[rpc.GetWatcherEventsResponse], error) {
	if err := s.checkNamedUser(req.Header()); err != nil {
		return nil, err
	}
	p, err := s.watcher(req.Msg.GetWatcherId())
	if err != nil {
		return nil, err
	}
	evs, err := p.drain()
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&rpc.GetWatcherEventsResponse{Events: evs}), nil
}

// RemoveWatcher stops and forgets a polling watcher.
func (s *Service) RemoveWatcher(_ context.Context, req *connect.Request[rpc.RemoveWatcherRequest]) (*connect.Response[rpc.RemoveWatcherResponse], error) {
	if err := s.checkNamedUser(req.Header()); err != nil {
		return nil, err
	}
	id := req.Msg.GetWatcherId()
	s.mu.Lock()
	p, ok := s.watchers[id]
	delete(s.watchers, id)
	s.mu.Unlock()
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("watcher with id %s not found", id))
	}
	p.stop()
	s.log.Debug("polling watcher removed", "watcher", id)
	return connect.NewResponse(&rpc.RemoveWatcherResponse{}), nil
}
