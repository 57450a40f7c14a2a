package ident

import (
	"strings"
	"testing"
)

func TestNewSandboxIDIsValidAndUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewSandboxID()
		if !ValidSandboxID(id) || len(id) != 20 || CheckSandboxID(id) != nil {
			t.Fatalf("bad id %q", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
	}
	for _, bad := range []string{"", "sb", "SB0123456789abcdefgh", "sb0123456789abcdefg-", "xx0123456789abcdefgh", "sb0123456789abcdefghi", "../x"} {
		if ValidSandboxID(bad) || CheckSandboxID(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCheckTemplate(t *testing.T) {
	for _, ok := range []string{"base", "a", "python-3_12", "0x", strings.Repeat("a", 63)} {
		if err := CheckTemplate(ok); err != nil {
			t.Errorf("CheckTemplate(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "_a", "A", "Base", "a/b", "../x", "..", ".hidden", "a.b", "a b",
		strings.Repeat("a", 64), "base\n", "x\x00"} {
		if err := CheckTemplate(bad); err == nil {
			t.Errorf("CheckTemplate(%q) accepted", bad)
		}
	}
}

func TestCheckEnvVars(t *testing.T) {
	if err := CheckEnvVars(map[string]string{"PATH": "/bin", "_x1": "", "A_B": "ü"}); err != nil {
		t.Errorf("good environment refused: %v", err)
	}
	for _, env := range []map[string]string{{"1X": "a"}, {"A-B": "a"}, {"": "a"}, {"A": "x\x00y"}, {"A": "\xff"}} {
		if err := CheckEnvVars(env); err == nil {
			t.Errorf("bad environment %q accepted", env)
		}
	}
}

func TestCheckText(t *testing.T) {
	for _, ok := range []struct {
		s   string
		max int
	}{{"", 0}, {"abc", 3}, {"ü", 2}, {strings.Repeat("x", 1000), -1}} {
		if err := CheckText("f", ok.s, ok.max); err != nil {
			t.Errorf("CheckText(%q, %d) = %v", ok.s, ok.max, err)
		}
	}
	for _, bad := range []struct {
		s, want string
		max     int
	}{{"abcd", "longer than 3 bytes", 3}, {"a\x00", "NUL", -1}, {"\xff", "UTF-8", -1}, {"ü", "longer", 1}} {
		err := CheckText("field", bad.s, bad.max)
		if err == nil || !strings.Contains(err.Error(), "field") || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("CheckText(%q, %d) = %v, want an error naming field and %q", bad.s, bad.max, err, bad.want)
		}
	}
}
