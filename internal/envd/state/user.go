package state

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// User is a Unix account that envd acts as: processes run with its ids, files it creates
// are owned by it and relative paths resolve against its home.
type User struct {
	Name   string
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups, including GID
	Home   string
}

// LookupUser resolves a user name from the guest's passwd and group databases.
func LookupUser(name string) (*User, error) {
	if name == "" {
		return nil, errors.New("empty user name")
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parse uid %q of %s: %w", u.Uid, name, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parse gid %q of %s: %w", u.Gid, name, err)
	}
	out := &User{Name: u.Username, UID: uint32(uid), GID: uint32(gid), Home: u.HomeDir}
	if out.Home == "" {
		out.Home = "/"
	}
	gids, err := u.GroupIds()
	if err != nil {
		gids = []string{u.Gid} // a user without group entries still has its primary group
	}
	for _, g := range gids {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			out.Groups = append(out.Groups, uint32(n))
		}
	}
	return out, nil
}

// ErrUnknownUser is wrapped by every user-resolution failure, so callers map it to
// "unauthenticated" (Connect) or 401 (HTTP).
var ErrUnknownUser = errors.New("unknown user")

// BasicUsername extracts the user name from `Authorization: Basic base64("<name>:")`.
// ok is false when the header is absent; a malformed header is an error.
func BasicUsername(h http.Header) (name string, ok bool, err error) {
	auth := h.Get("Authorization")
	if auth == "" {
		return "", false, nil
	}
	scheme, payload, found := strings.Cut(auth, " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", false, nil // other schemes are not envd's business
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(payload))
	if err != nil {
		return "", true, fmt.Errorf("%w: malformed basic authorization header", ErrUnknownUser)
	}
	name, _, _ = strings.Cut(string(raw), ":")
	return name, true, nil
}

// UserFromHeader selects the user a request acts as: the Basic-auth user name when
// present, else the default user.
func (s *State) UserFromHeader(h http.Header) (*User, error) {
	name, ok, err := BasicUsername(h)
	if err != nil {
		return nil, err
	}
	if ok && name != "" {
		return s.NamedUser(name)
	}
	def := s.DefaultUser()
	u, err := LookupUser(def)
	if err != nil {
		return nil, fmt.Errorf("%w: invalid default user: '%s'", ErrUnknownUser, def)
	}
	return u, nil
}

// NamedUser resolves an explicitly named user, or the default user for "".
func (s *State) NamedUser(name string) (*User, error) {
	if name == "" {
		name = s.DefaultUser()
	}
	u, err := LookupUser(name)
	if err != nil {
		return nil, fmt.Errorf("%w: invalid username: '%s'", ErrUnknownUser, name)
	}
	return u, nil
}

// ErrBadPath is wrapped by path-resolution failures (invalid_argument / HTTP 400).
var ErrBadPath = errors.New("invalid path")

// ResolvePath turns a request path into an absolute, cleaned one: "" is the default
// workdir (or home), "~" and "~/x" are relative to the user's home, other relative
// paths are joined with the home directory (not the workdir, as E2B does), absolute
// paths stay as they are. "~other/x" is refused.
func (s *State) ResolvePath(p string, u *User) (string, error) {
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("%w: %q contains a NUL byte", ErrBadPath, p)
	}
	switch {
	case p == "":
		if wd := s.DefaultWorkdir(); wd != "" {
			return filepath.Clean(wd), nil
		}
		return filepath.Clean(u.Home), nil
	case p == "~":
		return filepath.Clean(u.Home), nil
	case strings.HasPrefix(p, "~/"):
		return filepath.Join(u.Home, p[2:]), nil
	case strings.HasPrefix(p, "~"):
		return "", fmt.Errorf("%w: %q: expanding another user's home is not supported", ErrBadPath, p)
	case filepath.IsAbs(p):
		return filepath.Clean(p), nil
	default:
		return filepath.Join(u.Home, p), nil
	}
}
