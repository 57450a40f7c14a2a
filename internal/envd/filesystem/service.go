// Package filesystem implements envd's Connect `filesystem.Filesystem` service: stat,
// mkdir, move, list, remove and directory watching (streamed or polled) inside the
// sandbox, with the field values, ordering and error codes the official E2B SDKs expect
// (see the envd protocol spec, section 4).
package filesystem

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"connectrpc.com/connect"

	"github.com/wrennhq/wrenn/gen/envd/filesystem/filesystemconnect"
	"github.com/wrennhq/wrenn/internal/envd/state"
)

var _ filesystemconnect.FilesystemHandler = (*Service)(nil)

// Service implements filesystemconnect.FilesystemHandler. It is safe for concurrent use.
type Service struct {
	st    *state.State
	log   *slog.Logger
	names *idNames // uid/gid → name, shared by all requests with a short TTL
	// fsType reports a path's filesystem magic; a field so tests can fake a network
	// mount.
	fsType func(path string) (uint32, error)
	// maxBuffered is the polling watchers' buffer bound (maxBufferedEvents); a field so
	// tests can make it small.
	maxBuffered int

	// ctx is cancelled by Close so that open WatchDir streams and polling watchers end.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	watchers map[string]*pollWatcher
	closed   bool
}

// New returns the service acting on behalf of the users and defaults in st.
func New(st *state.State, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{
		st:          st,
		log:         log.With("service", "filesystem"),
		names:       newIDNames(nameCacheTTL),
		fsType:      statfsType,
		maxBuffered: maxBufferedEvents,
		ctx:         ctx,
		cancel:      cancel,
		watchers:    map[string]*pollWatcher{},
	}
}

// Close stops every polling watcher and ends open WatchDir streams; it waits until the
// polling watchers' goroutines and inotify descriptors are gone. Later CreateWatcher
// and WatchDir calls fail with `unavailable`. Close is idempotent.
func (s *Service) Close() {
	s.mu.Lock()
	s.closed = true
	ws := s.watchers
	s.watchers = map[string]*pollWatcher{}
	s.mu.Unlock()

	s.cancel()
	for _, w := range ws {
		w.stop()
	}
}

// errShuttingDown is returned to requests that arrive after (or are cut by) Close.
func errShuttingDown() error {
	return connect.NewError(connect.CodeUnavailable, errors.New("envd filesystem service is shutting down"))
}

// user resolves the Unix user a request acts as (Basic header, else the default user).
func (s *Service) user(h http.Header) (*state.User, error) {
	u, err := s.st.UserFromHeader(h)
	if err != nil {
		return nil, userError(err)
	}
	return u, nil
}

// userPath resolves the acting user and the request's path against them.
func (s *Service) userPath(h http.Header, p string) (*state.User, string, error) {
	u, err := s.user(h)
	if err != nil {
		return nil, "", err
	}
	abs, err := s.resolve(p, u)
	if err != nil {
		return nil, "", err
	}
	return u, abs, nil
}

// checkNamedUser rejects a Basic header naming an unknown user on RPCs that do not act
// as a user (GetWatcherEvents, RemoveWatcher): E2B rejects such requests everywhere.
func (s *Service) checkNamedUser(h http.Header) error {
	name, ok, err := state.BasicUsername(h)
	if err != nil {
		return userError(err)
	}
	if !ok || name == "" {
		return nil
	}
	if _, err := s.st.NamedUser(name); err != nil {
		return userError(err)
	}
	return nil
}

// userError maps a user-resolution failure to `unauthenticated`. The state package
// prefixes its messages with the sentinel's text; the SDK-visible message is E2B's bare
// `invalid username: '<name>'`, so the prefix is dropped.
func userError(err error) error {
	if !errors.Is(err, state.ErrUnknownUser) {
		return connect.NewError(connect.CodeInternal, fmt.Errorf("resolve user: %w", err))
	}
	msg := strings.TrimPrefix(err.Error(), state.ErrUnknownUser.Error()+": ")
	return connect.NewError(connect.CodeUnauthenticated, errors.New(msg))
}

// resolve turns a request path into an absolute one for user u.
func (s *Service) resolve(p string, u *state.User) (string, error) {
	abs, err := s.st.ResolvePath(p, u)
	if err != nil {
		if errors.Is(err, state.ErrBadPath) {
			return "", connect.NewError(connect.CodeInvalidArgument, err)
		}
		return "", connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("invalid path %q: %w", p, err))
	}
	return abs, nil
}

// internal builds an `internal` error and logs it, since it points at a server-side
// problem rather than at the request.
func (s *Service) internal(op string, err error) error {
	s.log.Error("filesystem request failed", "op", op, "err", err)
	return connect.NewError(connect.CodeInternal, err)
}
