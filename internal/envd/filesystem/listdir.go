package filesystem

import (
	"context"
	"errors"
	"fmt"
	"github.com/wrennhq/wrenn/internal/envd/streamx"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"connectrpc.com/connect"

	rpc "github.com/wrennhq/wrenn/gen/envd/filesystem"
)

// ListDir lists a directory down to the requested depth (0 means 1) in lexical
// pre-order, without following symlinks below the requested path. Entry paths keep the
// requested (unresolved) prefix, so a listing through a symlinked directory shows the
// paths the client used.
func (s *Service) ListDir(ctx context.Context, req *connect.Request[rpc.ListDirRequest]) (*connect.Response[rpc.ListDirResponse], error) {
	_, abs, err := s.userPath(req.Header(), req.Msg.GetPath())
	if err != nil {
		return nil, err
	}
	depth := req.Msg.GetDepth()
	if depth == 0 {
		depth = 1
	}

	realPath, err := filepath.EvalSymlinks(abs)
	if err != nil {
		switch {
		case missing(err):
			return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("path not found: %w", err))
		case isLinkLoop(err):
			return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("cyclic symlink or chain of more than 255 links at %q", abs))
		}
		if c := pathCode(err); c != connect.CodeInternal {
			return nil, connect.NewError(c, err)
		}
		return nil, s.internal("listdir", fmt.Errorf("error resolving symlink: %w", err))
	}
	info, err := os.Stat(realPath)
	if err != nil {
		if missing(err) {
			return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("path not found: %w", err))
		}
		return nil, s.internal("listdir", fmt.Errorf("error getting file info: %w", err))
	}
	if !info.IsDir() {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("path is not a directory: %s", abs))
	}

	w := &walker{ctx: ctx, reqRoot: abs, realRoot: realPath, depth: depth, names: s.names}
	if err := w.walk("", 1); err != nil {
		if ctx.Err() != nil {
			return nil, streamx.ContextError(ctx)
		}
		return nil, s.internal("listdir", err)
	}
	return connect.NewResponse(&rpc.ListDirResponse{Entries: w.entries}), nil
}

// isLinkLoop recognises EvalSymlinks' loop failure, which is a plain error rather than
// ELOOP.
func isLinkLoop(err error) bool {
	return errors.Is(err, syscall.ELOOP) || strings.Contains(err.Error(), "too many links")
}

type walker struct {
	ctx      context.Context
	reqRoot  string // what entries' paths start with
	realRoot string // where the directory actually is
	depth    uint32
	names    *idNames
	entries  []*rpc.EntryInfo
}

// walk appends the entries of the directory rel (relative to the root; "" = the root)
// and, depth permitting, of its subdirectories right after each one.
func (w *walker) walk(rel string, level uint32) error {
	if err := w.ctx.Err(); err != nil {
		return err // client gave up: stop walking a possibly huge tree
	}
	dir := filepath.Join(w.realRoot, rel)
	des, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		if rel != "" && missing(err) {
			return nil // removed while we walked
		}
		return fmt.Errorf("error reading directory %s: %w", dir, err)
	}
	for _, de := range des {
		child := filepath.Join(rel, de.Name())
		e, err := buildEntry(filepath.Join(w.reqRoot, child), filepath.Join(w.realRoot, child), w.names)
		if err != nil {
			if missing(err) {
				continue
			}
			return fmt.Errorf("error describing %s: %w", filepath.Join(w.realRoot, child), err)
		}
		w.entries = append(w.entries, e)
		// The dirent type is the link's own, so symlinked directories are not entered.
		if de.IsDir() && level < w.depth {
			if err := w.walk(child, level+1); err != nil {
				return err
			}
		}
	}
	return nil
}
