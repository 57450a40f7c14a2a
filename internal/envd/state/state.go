// Package state holds envd's per-sandbox settings — the ones POST /init installs: default
// user and workdir, global environment variables and the access token — and resolves Unix
// users and request paths against them. Every envd service reads identity through it.
package state

import (
	"crypto/subtle"
	"maps"
	"sync"
	"time"
)

// DefaultUser is the user envd acts as until /init names another one.
const DefaultUser = "root"

// State is safe for concurrent use.
type State struct {
	mu             sync.RWMutex
	defaultUser    string
	defaultWorkdir string
	userEnv        map[string]string // set by /init, replaced wholesale each time
	internalEnv    map[string]string // envd's own (E2B_SANDBOX…), survive /init
	token          string
	lastInit       time.Time
}

// New returns the state of a freshly booted envd: root, no workdir, no token.
func New() *State {
	return &State{
		defaultUser: DefaultUser,
		userEnv:     map[string]string{},
		internalEnv: map[string]string{"E2B_SANDBOX": "true"},
	}
}

// DefaultUser returns the name of the user used when a request names none.
func (s *State) DefaultUser() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.defaultUser
}

// SetDefaultUser changes the default user; an empty name is ignored.
func (s *State) SetDefaultUser(name string) {
	if name == "" {
		return
	}
	s.mu.Lock()
	s.defaultUser = name
	s.mu.Unlock()
}

// DefaultWorkdir returns the directory used for an empty cwd or path ("" = the user's home).
func (s *State) DefaultWorkdir() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.defaultWorkdir
}

// SetDefaultWorkdir changes the default workdir; an empty value is ignored.
func (s *State) SetDefaultWorkdir(dir string) {
	if dir == "" {
		return
	}
	s.mu.Lock()
	s.defaultWorkdir = dir
	s.mu.Unlock()
}

// Env returns a copy of the global environment: envd's internal variables overlaid by
// the ones /init set.
func (s *State) Env() map[string]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	env := make(map[string]string, len(s.internalEnv)+len(s.userEnv))
	maps.Copy(env, s.internalEnv)
	maps.Copy(env, s.userEnv)
	return env
}

// ReplaceUserEnv replaces every variable set by an earlier /init; internal ones stay.
func (s *State) ReplaceUserEnv(env map[string]string) {
	s.mu.Lock()
	s.userEnv = maps.Clone(env)
	if s.userEnv == nil {
		s.userEnv = map[string]string{}
	}
	s.mu.Unlock()
}

// SetInternalEnv sets one of envd's own variables (E2B_SANDBOX_ID, …).
func (s *State) SetInternalEnv(key, value string) {
	s.mu.Lock()
	s.internalEnv[key] = value
	s.mu.Unlock()
}

// Token returns the access token and whether one is set.
func (s *State) Token() (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.token, s.token != ""
}

// SetToken installs the access token; "" clears it.
func (s *State) SetToken(token string) {
	s.mu.Lock()
	s.token = token
	s.mu.Unlock()
}

// TokenMatches reports, in constant time, whether candidate equals the current token.
// With no token set it is true only for an empty candidate.
func (s *State) TokenMatches(candidate string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return subtle.ConstantTimeCompare([]byte(s.token), []byte(candidate)) == 1
}

// IsNewerInit reports whether an /init carrying ts is newer than the last one applied;
// older or equal ones are replays of a retried request and must not be re-applied.
func (s *State) IsNewerInit(ts time.Time) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return ts.After(s.lastInit)
}

// RecordInit remembers the timestamp of the /init just applied.
func (s *State) RecordInit(ts time.Time) {
	s.mu.Lock()
	if ts.After(s.lastInit) {
		s.lastInit = ts
	}
	s.mu.Unlock()
}
