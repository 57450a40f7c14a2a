package seal

import (
	"bytes"
	"errors"
	"testing"
)

func TestSealOpen(t *testing.T) {
	key := bytes.Repeat([]byte{7}, KeySize)
	b, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("envd token")
	s1, s2 := b.Seal(secret, []byte("sb1")), b.Seal(secret, []byte("sb1"))
	if bytes.Equal(s1, s2) {
		t.Error("two seals of one secret are equal: the nonce is not random")
	}
	if bytes.Contains(s1, secret) {
		t.Error("the sealed blob holds the secret")
	}
	if got, err := b.Open(s1, []byte("sb1")); err != nil || !bytes.Equal(got, secret) {
		t.Errorf("open: %q, %v", got, err)
	}
	other, _ := New(bytes.Repeat([]byte{8}, KeySize))
	flipped := bytes.Clone(s1)
	flipped[len(flipped)-1] ^= 1
	for name, open := range map[string]func() ([]byte, error){
		"other owner": func() ([]byte, error) { return b.Open(s1, []byte("sb2")) },
		"other key":   func() ([]byte, error) { return other.Open(s1, []byte("sb1")) },
		"altered":     func() ([]byte, error) { return b.Open(flipped, []byte("sb1")) },
	} {
		if _, err := open(); !errors.Is(err, ErrOpen) {
			t.Errorf("%s: %v, want ErrOpen", name, err)
		}
	}
	if _, err := b.Open(s1[:10], []byte("sb1")); err == nil {
		t.Error("a truncated blob opened")
	}
	if _, err := New(key[:16]); err == nil {
		t.Error("a 16-byte key accepted")
	}
}
