package filesystem

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	rpc "github.com/wrennhq/wrenn/gen/envd/filesystem"
	"github.com/wrennhq/wrenn/internal/envd/fsx"
)

// Entry describes the file at absPath as the SDKs expect it (spec §4.2/4.3), reporting
// requestedPath — the absolute path the client asked for, not symlink-resolved — as its
// path and the base of requestedPath as its name. The file itself is not followed
// (lstat); for a symlink, type and mode are the target's, permissions are the link's
// own, and symlink_target is the fully resolved absolute target; a dangling or looping
// link has type UNSPECIFIED. Errors wrap the underlying os errors, so
// errors.Is(err, fs.ErrNotExist) works.
func Entry(requestedPath, absPath string) (*rpc.EntryInfo, error) {
	return buildEntry(requestedPath, absPath, newIDNames(0))
}

func buildEntry(requestedPath, absPath string, names *idNames) (*rpc.EntryInfo, error) {
	info, err := os.Lstat(absPath)
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", absPath, err)
	}
	return entryFromInfo(requestedPath, absPath, info, names)
}

func entryFromInfo(requestedPath, absPath string, info fs.FileInfo, names *idNames) (*rpc.EntryInfo, error) {
	mode := info.Mode()
	e := &rpc.EntryInfo{
		Name:         filepath.Base(requestedPath),
		Path:         requestedPath,
		Size:         info.Size(),
		Type:         fileType(mode),
		Mode:         uint32(mode.Perm()),
		Permissions:  mode.String(),
		ModifiedTime: timestamppb.New(info.ModTime()),
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		e.Owner = names.user(st.Uid)
		e.Group = names.group(st.Gid)
	}
	if mode&fs.ModeSymlink != 0 {
		target, ttype, tmode := resolveLink(absPath)
		e.SymlinkTarget = &target
		e.Type = ttype
		e.Mode = tmode
	}
	md, err := fsx.ReadMetadata(absPath)
	switch {
	case err != nil && missing(err):
		return nil, fmt.Errorf("read metadata of %s: %w", absPath, err) // vanished meanwhile
	case err == nil && len(md) > 0:
		e.Metadata = md
	}
	// Other metadata errors leave it out: a file whose xattrs cannot be read is still
	// worth describing, and one odd file must not fail a whole listing.
	return e, nil
}

// resolveLink follows the symlink at link. For a link that resolves it returns the
// absolute target with the target's type and permission bits. A dangling or looping link
// has no target type (UNSPECIFIED, mode 0); its reported target is then the link text
// made absolute, which is as far as it can be resolved.
func resolveLink(link string) (string, rpc.FileType, uint32) {
	if target, err := filepath.EvalSymlinks(link); err == nil {
		if abs, err := filepath.Abs(target); err == nil {
			target = abs
		}
		if ti, err := os.Stat(target); err == nil {
			return target, fileType(ti.Mode()), uint32(ti.Mode().Perm())
		}
		return target, rpc.FileType_FILE_TYPE_UNSPECIFIED, 0
	}
	raw, err := os.Readlink(link)
	if err != nil {
		return link, rpc.FileType_FILE_TYPE_UNSPECIFIED, 0
	}
	if !filepath.IsAbs(raw) {
		raw = filepath.Join(filepath.Dir(link), raw)
	}
	return filepath.Clean(raw), rpc.FileType_FILE_TYPE_UNSPECIFIED, 0
}

// fileType maps a mode to the protocol's three types; sockets, devices and FIFOs have
// none (the SDK drops UNSPECIFIED entries from listings).
func fileType(m fs.FileMode) rpc.FileType {
	switch {
	case m.IsRegular():
		return rpc.FileType_FILE_TYPE_FILE
	case m.IsDir():
		return rpc.FileType_FILE_TYPE_DIRECTORY
	case m&fs.ModeSymlink != 0:
		return rpc.FileType_FILE_TYPE_SYMLINK
	default:
		return rpc.FileType_FILE_TYPE_UNSPECIFIED
	}
}

// nameCacheTTL bounds how stale an owner/group name may be: users are added inside a
// sandbox at any time (useradd), but a listing of thousands of files must not re-read
// /etc/passwd for each one.
const nameCacheTTL = 10 * time.Second

// idNames resolves uids and gids to names, falling back to the decimal id, and memoizes
// both hits and misses for ttl (0 = for the life of the cache).
type idNames struct {
	ttl    time.Duration
	mu     sync.Mutex
	users  map[uint32]cachedName
	groups map[uint32]cachedName
}

type cachedName struct {
	name string
	at   time.Time
}

func newIDNames(ttl time.Duration) *idNames {
	return &idNames{ttl: ttl, users: map[uint32]cachedName{}, groups: map[uint32]cachedName{}}
}

func (c *idNames) user(uid uint32) string {
	return c.lookup(c.users, uid, func(id string) (string, error) {
		u, err := user.LookupId(id)
		if err != nil {
			return "", err
		}
		return u.Username, nil
	})
}

func (c *idNames) group(gid uint32) string {
	return c.lookup(c.groups, gid, func(id string) (string, error) {
		g, err := user.LookupGroupId(id)
		if err != nil {
			return "", err
		}
		return g.Name, nil
	})
}

func (c *idNames) lookup(m map[uint32]cachedName, id uint32, find func(string) (string, error)) string {
	now := time.Now()
	c.mu.Lock()
	if hit, ok := m[id]; ok && (c.ttl == 0 || now.Sub(hit.at) < c.ttl) {
		c.mu.Unlock()
		return hit.name
	}
	c.mu.Unlock()

	// Looked up outside the lock: it reads files and may be slow; a duplicate lookup
	// by a concurrent request is harmless.
	s := strconv.FormatUint(uint64(id), 10)
	name, err := find(s)
	if err != nil || name == "" {
		name = s
	}
	c.mu.Lock()
	if c.ttl > 0 && len(m) > maxCachedNames {
		clear(m) // a sandbox has few accounts; this only guards against odd uid churn
	}
	m[id] = cachedName{name: name, at: now}
	c.mu.Unlock()
	return name
}

const maxCachedNames = 4096
