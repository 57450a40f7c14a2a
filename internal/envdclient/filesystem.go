package envdclient

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"connectrpc.com/connect"
	fspb "github.com/wrennhq/wrenn/gen/envd/filesystem"
)

// EntryType is what a directory entry is.
type EntryType string

// The entry types; a dangling symlink (envd reports no type for it) is a symlink.
const (
	TypeFile    EntryType = "file"
	TypeDir     EntryType = "dir"
	TypeSymlink EntryType = "symlink"
)

// Entry is one file, directory or symlink of the guest, as envd stats it.
type Entry struct {
	Name        string
	Path        string
	Type        EntryType
	Size        int64
	Mode        uint32 // permission bits (0o777); a symlink's are its target's
	Permissions string // "-rw-r--r--"
	Owner       string
	Group       string
	Modified    time.Time
	// SymlinkTarget is the resolved absolute target of a symlink; "" otherwise.
	SymlinkTarget string
}

// FSError is envd's refusal of a filesystem call, with its Connect code and message.
// It matches the io/fs errors by meaning (errors.Is(err, fs.ErrNotExist) and so on),
// so the layers above map it to their own codes without knowing Connect's.
type FSError struct {
	Op, Path string
	Code     connect.Code
	Message  string
}

func (e *FSError) Error() string { return fmt.Sprintf("%s %s: %s", e.Op, e.Path, e.Message) }

// ErrPrecondition: the path cannot be used as asked for a reason other than a bad
// request (envd's failed_precondition: a symlink loop).
var ErrPrecondition = errors.New("failed precondition")

// Is maps envd's codes: not_found → fs.ErrNotExist, already_exists → fs.ErrExist,
// permission_denied → fs.ErrPermission, invalid_argument → fs.ErrInvalid,
// failed_precondition → ErrPrecondition. envd answers a refused Remove with internal
// and the errno's text; a permission problem is recognised by it.
func (e *FSError) Is(target error) bool {
	switch target {
	case fs.ErrNotExist:
		return e.Code == connect.CodeNotFound
	case fs.ErrExist:
		return e.Code == connect.CodeAlreadyExists
	case fs.ErrPermission:
		return e.Code == connect.CodePermissionDenied ||
			(e.Code == connect.CodeInternal || e.Code == connect.CodeInvalidArgument) && strings.Contains(e.Message, "permission denied")
	case fs.ErrInvalid:
		return e.Code == connect.CodeInvalidArgument && !strings.Contains(e.Message, "permission denied")
	case ErrPrecondition:
		return e.Code == connect.CodeFailedPrecondition
	}
	return false
}

// fsError turns a Connect error from envd's filesystem service into an *FSError;
// other errors (transport, deadline, credentials) are wrapped with what was done.
func fsError(op, path string, err error) error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		switch ce.Code() {
		case connect.CodeNotFound, connect.CodeAlreadyExists, connect.CodePermissionDenied,
			connect.CodeInvalidArgument, connect.CodeFailedPrecondition, connect.CodeInternal:
			return &FSError{Op: op, Path: path, Code: ce.Code(), Message: ce.Message()}
		}
	}
	return fmt.Errorf("%s %s: %w", op, path, err)
}

// asUser sets the Basic header envd reads the acting user from ("" = its default).
func asUser[T any](req *connect.Request[T], user string) *connect.Request[T] {
	if user != "" {
		req.Header().Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":")))
	}
	return req
}

// ListDir lists path to depth levels (0 counts as 1), in envd's lexical pre-order.
func (c *Client) ListDir(ctx context.Context, path string, depth uint32, user string) ([]Entry, error) {
	resp, err := c.fs.ListDir(ctx, asUser(connect.NewRequest(&fspb.ListDirRequest{Path: path, Depth: depth}), user))
	if err != nil {
		return nil, fsError("list", path, err)
	}
	out := make([]Entry, 0, len(resp.Msg.GetEntries()))
	for _, e := range resp.Msg.GetEntries() {
		out = append(out, entry(e))
	}
	return out, nil
}

// MakeDir creates path and its missing parents, owned by user; an existing directory
// is an FSError matching fs.ErrExist.
func (c *Client) MakeDir(ctx context.Context, path, user string) (Entry, error) {
	resp, err := c.fs.MakeDir(ctx, asUser(connect.NewRequest(&fspb.MakeDirRequest{Path: path}), user))
	if err != nil {
		return Entry{}, fsError("mkdir", path, err)
	}
	return entry(resp.Msg.GetEntry()), nil
}

// Remove deletes path, recursively. envd treats a missing path as removed.
func (c *Client) Remove(ctx context.Context, path, user string) error {
	if _, err := c.fs.Remove(ctx, asUser(connect.NewRequest(&fspb.RemoveRequest{Path: path}), user)); err != nil {
		return fsError("remove", path, err)
	}
	return nil
}

// Stat describes path without following a final symlink.
func (c *Client) Stat(ctx context.Context, path, user string) (Entry, error) {
	resp, err := c.fs.Stat(ctx, asUser(connect.NewRequest(&fspb.StatRequest{Path: path}), user))
	if err != nil {
		return Entry{}, fsError("stat", path, err)
	}
	return entry(resp.Msg.GetEntry()), nil
}

func entry(e *fspb.EntryInfo) Entry {
	out := Entry{
		Name: e.GetName(), Path: e.GetPath(), Size: e.GetSize(), Mode: e.GetMode(),
		Permissions: e.GetPermissions(), Owner: e.GetOwner(), Group: e.GetGroup(),
		SymlinkTarget: e.GetSymlinkTarget(),
	}
	if t := e.GetModifiedTime(); t != nil {
		out.Modified = t.AsTime()
	}
	switch {
	case e.SymlinkTarget != nil:
		// envd reports a symlink's target's type (E2B's contract); the listing shows
		// what the entry itself is.
		out.Type = TypeSymlink
	case e.GetType() == fspb.FileType_FILE_TYPE_DIRECTORY:
		out.Type = TypeDir
	case e.GetType() == fspb.FileType_FILE_TYPE_SYMLINK:
		out.Type = TypeSymlink
	default:
		out.Type = TypeFile
	}
	return out
}
