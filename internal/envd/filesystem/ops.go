package filesystem

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"connectrpc.com/connect"

	rpc "github.com/wrennhq/wrenn/gen/envd/filesystem"
	"github.com/wrennhq/wrenn/internal/envd/fsx"
)

// missing reports whether err means "no such path". ENOTDIR counts: `/file.txt/x`
// does not exist, and the SDK's exists() must answer false rather than throw.
func missing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// pathCode picks the code for a filesystem error that is neither "missing" nor
// specifically handled by the RPC: caller mistakes get 4xx codes, the rest `internal`.
func pathCode(err error) connect.Code {
	switch {
	case errors.Is(err, syscall.ENAMETOOLONG), errors.Is(err, syscall.EINVAL):
		return connect.CodeInvalidArgument
	case errors.Is(err, syscall.ELOOP):
		return connect.CodeFailedPrecondition
	case errors.Is(err, fs.ErrPermission):
		return connect.CodePermissionDenied
	default:
		return connect.CodeInternal
	}
}

// Stat describes one path without following a final symlink.
func (s *Service) Stat(_ context.Context, req *connect.Request[rpc.StatRequest]) (*connect.Response[rpc.StatResponse], error) {
	_, abs, err := s.userPath(req.Header(), req.Msg.GetPath())
	if err != nil {
		return nil, err
	}
	e, err := buildEntry(abs, abs, s.names)
	if err != nil {
		if missing(err) {
			return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("file not found: %w", errors.Unwrap(err)))
		}
		if c := pathCode(err); c != connect.CodeInternal {
			return nil, connect.NewError(c, err)
		}
		return nil, s.internal("stat", fmt.Errorf("error getting file info: %w", err))
	}
	return connect.NewResponse(&rpc.StatResponse{Entry: e}), nil
}

// MakeDir creates a directory and its missing parents (0755, owned by the user).
func (s *Service) MakeDir(_ context.Context, req *connect.Request[rpc.MakeDirRequest]) (*connect.Response[rpc.MakeDirResponse], error) {
	u, abs, err := s.userPath(req.Header(), req.Msg.GetPath())
	if err != nil {
		return nil, err
	}
	// Stat, not Lstat: a symlink to a directory already is a directory for the SDK's
	// makeDir() (which answers false on already_exists).
	info, err := os.Stat(abs)
	switch {
	case err == nil && info.IsDir():
		return nil, connect.NewError(connect.CodeAlreadyExists, fmt.Errorf("directory already exists: %s", abs))
	case err == nil:
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("path already exists but it is not a directory: %s", abs))
	case errors.Is(err, syscall.ENOTDIR):
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("a parent of %s is not a directory", abs))
	case !errors.Is(err, fs.ErrNotExist):
		if c := pathCode(err); c != connect.CodeInternal {
			return nil, connect.NewError(c, err)
		}
		return nil, s.internal("mkdir", fmt.Errorf("error getting file info: %w", err))
	}
	// Stat says "missing" for a dangling symlink too, but mkdir cannot create a
	// directory where the link is.
	if _, err := os.Lstat(abs); err == nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("path already exists but it is not a directory: %s", abs))
	}

	if err := fsx.MkdirAllOwned(abs, u.UID, u.GID); err != nil {
		if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EEXIST) {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("cannot create directory %s: %w", abs, err))
		}
		if c := pathCode(err); c != connect.CodeInternal {
			return nil, connect.NewError(c, fmt.Errorf("cannot create directory %s: %w", abs, err))
		}
		return nil, s.internal("mkdir", fmt.Errorf("error creating directory %s: %w", abs, err))
	}
	e, err := buildEntry(abs, abs, s.names)
	if err != nil {
		// Created but gone again (a concurrent remove): report what was made.
		s.log.Warn("describe new directory", "path", abs, "err", err)
		e = &rpc.EntryInfo{Name: filepath.Base(abs), Type: rpc.FileType_FILE_TYPE_DIRECTORY, Path: abs}
	}
	return connect.NewResponse(&rpc.MakeDirResponse{Entry: e}), nil
}

// Move renames source to destination (overwriting it), first creating the
// destination's missing parents owned by the user, and describes the destination.
func (s *Service) Move(_ context.Context, req *connect.Request[rpc.MoveRequest]) (*connect.Response[rpc.MoveResponse], error) {
	u, err := s.user(req.Header())
	if err != nil {
		return nil, err
	}
	// An empty path would resolve to the default directory (spec §6); moving the
	// user's whole home by accident is never what a client meant.
	if req.Msg.GetSource() == "" || req.Msg.GetDestination() == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("source and destination must not be empty"))
	}
	src, err := s.resolve(req.Msg.GetSource(), u)
	if err != nil {
		return nil, err
	}
	dst, err := s.resolve(req.Msg.GetDestination(), u)
	if err != nil {
		return nil, err
	}
	// Checked before creating the destination's parents so that a failed rename
	// leaves no directories behind.
	if _, err := os.Lstat(src); err != nil {
		if missing(err) {
			return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("source file not found: %w", err))
		}
		return nil, connect.NewError(pathCode(err), fmt.Errorf("error getting source info: %w", err))
	}
	if err := fsx.MkdirAllOwned(filepath.Dir(dst), u.UID, u.GID); err != nil {
		if errors.Is(err, syscall.ENOTDIR) {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("cannot create parent directories of %s: %w", dst, err))
		}
		if c := pathCode(err); c != connect.CodeInternal {
			return nil, connect.NewError(c, fmt.Errorf("cannot create parent directories of %s: %w", dst, err))
		}
		return nil, s.internal("move", fmt.Errorf("error creating parent directories of %s: %w", dst, err))
	}
	if err := os.Rename(src, dst); err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("source file not found: %w", err))
		case errors.Is(err, syscall.EINVAL):
			// Moving a directory into itself.
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("error renaming: %w", err))
		case errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EISDIR),
			errors.Is(err, syscall.ENOTEMPTY), errors.Is(err, syscall.EEXIST):
			// The destination's current state forbids replacing it.
			return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("error renaming: %w", err))
		}
		if c := pathCode(err); c != connect.CodeInternal {
			return nil, connect.NewError(c, fmt.Errorf("error renaming: %w", err))
		}
		return nil, s.internal("move", fmt.Errorf("error renaming: %w", err))
	}
	e, err := buildEntry(dst, dst, s.names)
	if err != nil {
		if missing(err) {
			return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("file not found: %w", errors.Unwrap(err)))
		}
		return nil, s.internal("move", fmt.Errorf("error getting file info: %w", err))
	}
	return connect.NewResponse(&rpc.MoveResponse{Entry: e}), nil
}

// Remove deletes a path recursively; a path that does not exist is success.
func (s *Service) Remove(_ context.Context, req *connect.Request[rpc.RemoveRequest]) (*connect.Response[rpc.RemoveResponse], error) {
	u, err := s.user(req.Header())
	if err != nil {
		return nil, err
	}
	// An empty path would resolve to the default directory (spec §6): refuse rather
	// than delete the user's home because a client forgot to fill in the path.
	if req.Msg.GetPath() == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("path must not be empty"))
	}
	abs, err := s.resolve(req.Msg.GetPath(), u)
	if err != nil {
		return nil, err
	}
	// Every failure is `internal`, as in E2B (the SDK shows it as a SandboxError).
	if err := os.RemoveAll(abs); err != nil && !missing(err) {
		return nil, s.internal("remove", fmt.Errorf("error removing file or directory: %w", err))
	}
	return connect.NewResponse(&rpc.RemoveResponse{}), nil
}
