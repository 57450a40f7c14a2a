package sandboxes

import (
	"context"
	"fmt"
	pathpkg "path"
	"strings"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/internal/hostproto"
	"github.com/wrennhq/wrenn/internal/server/core"
)

// Entry is a file, directory or symlink in a sandbox, as the API shows it.
type Entry struct {
	Name string `json:"name"`
	Path string `json:"path"`
	// Type is file, dir or symlink (the entry itself: a symlink to a directory is a
	// symlink, with its target in SymlinkTarget).
	Type string `json:"type"`
	Size int64  `json:"size"`
	// Mode is the permission bits, as chmod takes them (0o644).
	Mode        uint32     `json:"mode"`
	Permissions string     `json:"permissions"`
	Owner       string     `json:"owner"`
	Group       string     `json:"group"`
	ModifiedAt  *time.Time `json:"modified_at,omitempty"`
	// SymlinkTarget is the resolved absolute target of a symlink.
	SymlinkTarget string `json:"symlink_target,omitempty"`
}

// Listing is a directory's entries in lexical pre-order; Truncated says the host
// kept only the first hostproto.MaxListEntries.
type Listing struct {
	Entries   []Entry `json:"entries"`
	Truncated bool    `json:"truncated"`
}

var entryTypes = map[pb.EntryType]string{
	pb.EntryType_ENTRY_TYPE_FILE:    "file",
	pb.EntryType_ENTRY_TYPE_DIR:     "dir",
	pb.EntryType_ENTRY_TYPE_SYMLINK: "symlink",
}

func entryOf(e *pb.Entry) Entry {
	out := Entry{
		Name: e.GetName(), Path: e.GetPath(), Type: entryTypes[e.GetType()], Size: e.GetSize(), Mode: e.GetMode() & 0o777,
		Permissions: e.GetPermissions(), Owner: e.GetOwner(), Group: e.GetGroup(), SymlinkTarget: e.GetSymlinkTarget(),
	}
	if out.Type == "" {
		out.Type = "file" // an agent newer than us: show it rather than fail
	}
	if t := e.GetModifiedAt(); t != nil {
		mt := t.AsTime().UTC()
		out.ModifiedAt = &mt
	}
	return out
}

// checkAbsPath is checkPath for the directory routes, which take absolute paths only:
// a relative one would be the acting user's home's, which a dashboard or script that
// shows or deletes it should not have to guess.
func checkAbsPath(path string) error {
	if err := checkPath(path); err != nil {
		return err
	}
	if !strings.HasPrefix(path, "/") {
		return fmt.Errorf("%w: path must be absolute (start with /)", core.ErrInvalid)
	}
	return nil
}

// ListDir lists path in a sandbox of the principal's team, depth levels down (1..
// hostproto.MaxListDepth; 0 = 1).
func (s *Service) ListDir(ctx context.Context, p *core.Principal, id, path string, depth int) (*Listing, error) {
	if err := checkAbsPath(path); err != nil {
		return nil, err
	}
	if depth < 0 || depth > hostproto.MaxListDepth {
		return nil, fmt.Errorf("%w: depth must be 1..%d", core.ErrInvalid, hostproto.MaxListDepth)
	}
	row, agent, err := s.liveAgent(ctx, p, id)
	if err != nil {
		return nil, err
	}
	resp, err := agent.ListDir(ctx, connect.NewRequest(&pb.ListDirRequest{SandboxId: id, Path: path, Depth: uint32(depth)}))
	if err != nil {
		return nil, s.opError(ctx, row, agent, fmt.Sprintf("list %s in %s", path, id), err)
	}
	out := &Listing{Entries: make([]Entry, 0, len(resp.Msg.GetEntries())), Truncated: resp.Msg.GetTruncated()}
	for _, e := range resp.Msg.GetEntries() {
		out.Entries = append(out.Entries, entryOf(e))
	}
	return out, nil
}

// MakeDir creates path and its missing parents in a sandbox of the principal's team;
// an existing directory is a conflict.
func (s *Service) MakeDir(ctx context.Context, p *core.Principal, id, path string) (*Entry, error) {
	if err := checkAbsPath(path); err != nil {
		return nil, err
	}
	row, agent, err := s.liveAgent(ctx, p, id)
	if err != nil {
		return nil, err
	}
	resp, err := agent.MakeDir(ctx, connect.NewRequest(&pb.MakeDirRequest{SandboxId: id, Path: path}))
	if err != nil {
		return nil, s.opError(ctx, row, agent, fmt.Sprintf("make directory %s in %s", path, id), err)
	}
	e := entryOf(resp.Msg.GetEntry())
	return &e, nil
}

// RemovePath removes path (a directory with everything in it) from a sandbox of the
// principal's team; a missing path is not found. The root is refused: removing it
// would wreck the sandbox, and no one means it.
func (s *Service) RemovePath(ctx context.Context, p *core.Principal, id, path string) error {
	if err := checkAbsPath(path); err != nil {
		return err
	}
	// envd cleans the path, so "/tmp/.." and "/." are the root too.
	if pathpkg.Clean(path) == "/" {
		return fmt.Errorf("%w: refusing to remove /", core.ErrInvalid)
	}
	row, agent, err := s.liveAgent(ctx, p, id)
	if err != nil {
		return err
	}
	if _, err := agent.RemovePath(ctx, connect.NewRequest(&pb.RemovePathRequest{SandboxId: id, Path: path})); err != nil {
		return s.opError(ctx, row, agent, fmt.Sprintf("remove %s in %s", path, id), err)
	}
	return nil
}
