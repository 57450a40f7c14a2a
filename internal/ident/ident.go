// Package ident defines the names that identify things across Wrenn's programs — sandbox
// ids and template names — and the one rule each must follow. Every program (control
// plane, agent, CLI) checks names here, before a name reaches a path, a host name or a
// database row.
package ident

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"regexp"
	"strings"
	"unicode/utf8"
)

const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"

// Sandbox ids are "sb" + 18 lowercase base36 characters (DESIGN.md §8). They appear in
// host names ({port}-{id}.{domain}) and in E2B SDK calls, so they are [a-z0-9] only.
var sandboxIDPattern = regexp.MustCompile(`^sb[a-z0-9]{18}$`)

// Environment variable names a sandbox's create may set: POSIX shell names.
var envNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Template names become directory names under WRENN_DIR/images.
var templatePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// NewSandboxID returns a fresh random sandbox id. crypto/rand cannot fail (since Go 1.24
// it crashes the program rather than return an error), so neither can this.
func NewSandboxID() string {
	b := []byte("sb")
	max := big.NewInt(int64(len(alphabet)))
	for range 18 {
		n, _ := rand.Int(rand.Reader, max)
		b = append(b, alphabet[n.Int64()])
	}
	return string(b)
}

// ValidSandboxID reports whether id has the shape NewSandboxID makes.
func ValidSandboxID(id string) bool { return sandboxIDPattern.MatchString(id) }

// CheckSandboxID explains why id is not a sandbox id, or returns nil.
func CheckSandboxID(id string) error {
	if !ValidSandboxID(id) {
		return fmt.Errorf("invalid sandbox id %q: want \"sb\" and 18 characters of a-z, 0-9", id)
	}
	return nil
}

// CheckTemplate explains why name is not a template name, or returns nil. Callers must
// run it before a name becomes part of any path.
func CheckTemplate(name string) error {
	if !templatePattern.MatchString(name) {
		return fmt.Errorf("invalid template name %q: use 1-63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit", name)
	}
	return nil
}

// CheckEnvVars explains why env cannot be a sandbox's environment (a name that is not
// a shell variable name, a value with a NUL byte or not UTF-8), or returns nil.
func CheckEnvVars(env map[string]string) error {
	for k, v := range env {
		if !envNamePattern.MatchString(k) {
			return fmt.Errorf("environment variable name %q is not a shell variable name", k)
		}
		if err := CheckText("environment variable "+k, v, -1); err != nil {
			return err
		}
	}
	return nil
}

// CheckText explains why s cannot be stored or passed on as the text field named
// field, or returns nil: PostgreSQL refuses NUL bytes in text and jsonb (SQLSTATE
// 22021, 22P05) and invalid UTF-8, protobuf refuses invalid UTF-8 in strings, and a
// NUL ends a C string in the guest. max bounds the length in bytes (< 0: no bound).
// Every string from a request that reaches the database, an agent or a guest passes
// here first, so a bad one is the caller's 400 rather than our 500.
func CheckText(field, s string, max int) error {
	switch {
	case max >= 0 && len(s) > max:
		return fmt.Errorf("%s is longer than %d bytes", field, max)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%s contains a NUL byte", field)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s is not valid UTF-8", field)
	}
	return nil
}
