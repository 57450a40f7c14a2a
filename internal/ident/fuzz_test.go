package ident

import (
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzTemplateName: a name CheckTemplate accepts becomes one directory under the
// images root, never a path that climbs out of it or lands on another entry.
func FuzzTemplateName(f *testing.F) {
	for _, s := range []string{"base", "a", "my-tpl_2", "../x", "a/b", ".", "..", "-a", "A", "a\x00", "a\n", strings.Repeat("a", 64), "é", " a"} {
		f.Add(s)
	}
	const root = "/var/lib/wrenn/images"
	f.Fuzz(func(t *testing.T, name string) {
		if CheckTemplate(name) != nil {
			return
		}
		p := filepath.Join(root, name)
		if filepath.Dir(p) != root || filepath.Base(p) != name {
			t.Fatalf("template %q is not one entry under %s: %s", name, root, p)
		}
		if len(name) > 63 || strings.ToLower(name) != name || strings.ContainsAny(name, "./\\ \x00") {
			t.Fatalf("template %q accepted", name)
		}
	})
}

// FuzzSandboxID: an id ValidSandboxID accepts is safe as a path element and as a
// DNS label ({port}-{id}.{domain}), and CheckSandboxID agrees with it.
func FuzzSandboxID(f *testing.F) {
	f.Add(NewSandboxID())
	for _, s := range []string{"sb0123456789abcdefgh", "sb0123456789abcdefgh\n", "SB0123456789abcdefgh", "sb0123456789abcdefg", "sb../../../../../etc/x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		valid := ValidSandboxID(id)
		if valid != (CheckSandboxID(id) == nil) {
			t.Fatalf("ValidSandboxID and CheckSandboxID disagree on %q", id)
		}
		if !valid {
			return
		}
		if len(id) != 20 || strings.Trim(id, alphabet) != "" || filepath.Base(id) != id {
			t.Fatalf("sandbox id %q accepted", id)
		}
	})
}

// FuzzCheckText: what CheckText accepts can be stored by PostgreSQL and sent as a
// protobuf string: valid UTF-8, no NUL, within the bound.
func FuzzCheckText(f *testing.F) {
	for _, s := range []string{"", "hello", "a\x00b", "\xff", "é", strings.Repeat("x", 65)} {
		f.Add(s, 64)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		if CheckText("field", s, max) != nil {
			return
		}
		if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 || (max >= 0 && len(s) > max) {
			t.Fatalf("CheckText accepted %q (max %d)", s, max)
		}
	})
}
