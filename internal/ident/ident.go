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
// a shell variable name, a value with a NUL byte), or returns nil.
func CheckEnvVars(env map[string]string) error {
	for k, v := range env {
		if !envNamePattern.MatchString(k) {
			return fmt.Errorf("environment variable name %q", k)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("environment variable %s contains a NUL byte", k)
		}
	}
	return nil
}
