// Package seal encrypts small secrets at rest with AES-256-GCM, a random nonce first in
// each sealed blob, bound to associated data that names what the secret belongs to — so
// a blob copied to another owner does not open there. The control plane seals host
// secrets with it and the agent the secrets of sandbox records.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// KeySize is the key length: AES-256.
const KeySize = 32

// Box seals and opens with one key; it is safe for concurrent use.
type Box struct{ aead cipher.AEAD }

// New returns a Box for a KeySize-byte key.
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("sealing key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Box{aead: aead}, nil
}

// Seal encrypts plaintext bound to ad. crypto/rand does not fail on the kernels Wrenn
// runs on (Go's own crypto treats a failure as fatal), so neither does Seal.
func (b *Box) Seal(plaintext, ad []byte) []byte {
	n := b.aead.NonceSize()
	nonce := make([]byte, n, n+len(plaintext)+b.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return b.aead.Seal(nonce, nonce, plaintext, ad)
}

// ErrOpen is returned for a blob that does not open: another key, other associated
// data, or altered bytes.
var ErrOpen = errors.New("sealed data does not open (another key or owner, or altered)")

// Open decrypts what Seal made with the same key and ad.
func (b *Box) Open(sealed, ad []byte) ([]byte, error) {
	n := b.aead.NonceSize()
	if len(sealed) < n+b.aead.Overhead() {
		return nil, fmt.Errorf("sealed data of %d bytes is too short", len(sealed))
	}
	out, err := b.aead.Open(nil, sealed[:n], sealed[n:], ad)
	if err != nil {
		return nil, ErrOpen
	}
	return out, nil
}
