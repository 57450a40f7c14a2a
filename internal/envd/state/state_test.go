package state

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestResolvePath(t *testing.T) {
	s := New()
	u := &User{Name: "user", Home: "/home/user"}
	cases := []struct{ in, want string }{
		{"", "/home/user"},
		{"~", "/home/user"},
		{"~/a/../b", "/home/user/b"},
		{"rel/x", "/home/user/rel/x"},
		{"../../etc/passwd", "/etc/passwd"}, // a user may name any path; envd acts with their ids
		{"/abs//y/", "/abs/y"},
	}
	for _, c := range cases {
		if got, err := s.ResolvePath(c.in, u); err != nil || got != c.want {
			t.Errorf("ResolvePath(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	s.SetDefaultWorkdir("/work")
	if got, _ := s.ResolvePath("", u); got != "/work" {
		t.Errorf("empty path with a workdir: %q", got)
	}
	if got, _ := s.ResolvePath("rel", u); got != "/home/user/rel" {
		t.Errorf("relative paths use the home, not the workdir: %q", got)
	}
	for _, bad := range []string{"~root/x", "~other", "a\x00b"} {
		if _, err := s.ResolvePath(bad, u); !errors.Is(err, ErrBadPath) {
			t.Errorf("ResolvePath(%q): %v, want ErrBadPath", bad, err)
		}
	}
}

func TestBasicUsername(t *testing.T) {
	cases := []struct {
		header   string
		name     string
		ok, fail bool
	}{
		{"", "", false, false},
		{"Basic dXNlcjo=", "user", true, false}, // "user:"
		{"basic cm9vdDppZ25vcmVk", "root", true, false},
		{"Bearer abc", "", false, false},
		{"Basic !!!", "", true, true},
	}
	for _, c := range cases {
		h := http.Header{}
		if c.header != "" {
			h.Set("Authorization", c.header)
		}
		name, ok, err := BasicUsername(h)
		if name != c.name || ok != c.ok || (err != nil) != c.fail {
			t.Errorf("%q: %q %v %v", c.header, name, ok, err)
		}
		if err != nil && !errors.Is(err, ErrUnknownUser) {
			t.Errorf("%q: error %v does not wrap ErrUnknownUser", c.header, err)
		}
	}
}

func TestEnvTokenAndInitReplay(t *testing.T) {
	s := New()
	s.ReplaceUserEnv(map[string]string{"A": "1", "E2B_SANDBOX": "overridden"})
	s.SetInternalEnv("E2B_SANDBOX_ID", "sb1")
	env := s.Env()
	if env["A"] != "1" || env["E2B_SANDBOX_ID"] != "sb1" || env["E2B_SANDBOX"] != "overridden" {
		t.Errorf("env %v", env)
	}
	s.ReplaceUserEnv(nil)
	if env := s.Env(); env["A"] != "" || env["E2B_SANDBOX"] != "true" || env["E2B_SANDBOX_ID"] != "sb1" {
		t.Errorf("after replace: %v", env)
	}
	if s.TokenMatches("x") || !s.TokenMatches("") {
		t.Error("no token set: only the empty candidate matches")
	}
	s.SetToken("secret")
	if !s.TokenMatches("secret") || s.TokenMatches("secre") || s.TokenMatches("") {
		t.Error("token comparison")
	}
	now := time.Now()
	if !s.IsNewerInit(now) {
		t.Error("first init is newer")
	}
	s.RecordInit(now)
	if s.IsNewerInit(now) || s.IsNewerInit(now.Add(-time.Second)) || !s.IsNewerInit(now.Add(time.Nanosecond)) {
		t.Error("replay guard")
	}
	if _, err := s.NamedUser("no-such-user-xyz"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("unknown user: %v", err)
	}
	if u, err := s.NamedUser(""); err != nil || u.Name != "root" || u.UID != 0 || u.Home != "/root" {
		t.Errorf("default user: %+v %v", u, err)
	}
}
