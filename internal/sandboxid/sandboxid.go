// Package sandboxid makes and checks sandbox ids: "sb" + 18 lowercase base36
// characters (DESIGN.md §8). They appear in host names ({port}-{id}.{domain}) and in E2B
// SDK calls, so they are [a-z0-9] only.
package sandboxid

import (
	"crypto/rand"
	"math/big"
	"regexp"
)

const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"

var pattern = regexp.MustCompile(`^sb[a-z0-9]{18}$`)

// New returns a fresh random id.
func New() (string, error) {
	b := []byte("sb")
	max := big.NewInt(int64(len(alphabet)))
	for range 18 {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", err
		}
		b = append(b, alphabet[n.Int64()])
	}
	return string(b), nil
}

// Valid reports whether id has the shape New makes.
func Valid(id string) bool { return pattern.MatchString(id) }
