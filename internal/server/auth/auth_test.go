package auth

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"
)

func TestPasswords(t *testing.T) {
	h, err := HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !CheckPassword(h, "correct horse battery") || CheckPassword(h, "correct horse batterY") || CheckPassword("", "x") {
		t.Error("password check")
	}
	for _, bad := range []string{"short", strings.Repeat("x", 73)} {
		if _, err := HashPassword(bad); !errors.Is(err, ErrBadPassword) {
			t.Errorf("%d-byte password: %v", len(bad), err)
		}
	}
	if h2, _ := HashPassword("correct horse battery"); h2 == h {
		t.Error("hashes are not salted")
	}
}

// TestDummyHashCost: the unknown-email check costs what a real one does only while the
// constant hash's cost is the one passwords are hashed at.
func TestDummyHashCost(t *testing.T) {
	cost, err := bcrypt.Cost([]byte(dummyHash))
	if err != nil || cost != bcryptCost {
		t.Fatalf("dummyHash has cost %d (%v), passwords %d: regenerate it at bcryptCost", cost, err, bcryptCost)
	}
	if !CheckPassword(dummyHash, "wrenn-timing-equaliser") {
		t.Error("dummyHash is not a bcrypt hash of its documented password")
	}
}

func TestTokens(t *testing.T) {
	key := bytes.Repeat([]byte("k"), 32)
	if _, err := NewTokens(key[:31], time.Minute); err == nil {
		t.Error("short key accepted")
	}
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	tk, _ := NewTokens(key, 15*time.Minute)
	tk.now = func() time.Time { return now }
	s, exp, err := tk.Issue("user-1", "team-1")
	if err != nil || !exp.Equal(now.Add(15*time.Minute)) {
		t.Fatal(exp, err)
	}
	c, err := tk.Verify(s)
	if err != nil || c.UserID != "user-1" || c.TeamID != "team-1" {
		t.Fatalf("verify: %+v %v", c, err)
	}

	tk.now = func() time.Time { return now.Add(16 * time.Minute) }
	if _, err := tk.Verify(s); !errors.Is(err, ErrBadToken) {
		t.Errorf("expired token: %v", err)
	}
	tk.now = func() time.Time { return now }

	other, _ := NewTokens(bytes.Repeat([]byte("o"), 32), time.Minute)
	forged, _, _ := other.Issue("user-1", "team-1")
	if _, err := tk.Verify(forged); !errors.Is(err, ErrBadToken) {
		t.Errorf("token signed with another key: %v", err)
	}
	// alg=none and a changed payload are refused.
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, Claims{UserID: "admin"}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if _, err := tk.Verify(none); !errors.Is(err, ErrBadToken) {
		t.Errorf("alg=none token: %v", err)
	}
	parts := strings.Split(s, ".")
	if _, err := tk.Verify(parts[0] + "." + parts[1] + "x." + parts[2]); !errors.Is(err, ErrBadToken) {
		t.Errorf("tampered token: %v", err)
	}
	if _, err := tk.Verify("garbage"); !errors.Is(err, ErrBadToken) {
		t.Errorf("garbage: %v", err)
	}
}

func TestAPIKeys(t *testing.T) {
	k, h, prefix, err := NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	if !ValidAPIKey(k) || len(k) != 36 || !strings.HasPrefix(k, prefix) || len(prefix) != 10 {
		t.Errorf("key %q prefix %q", k, prefix)
	}
	if !bytes.Equal(h, HashAPIKey(k)) || len(h) != 32 {
		t.Error("hash")
	}
	k2, _, _, _ := NewAPIKey()
	if k2 == k {
		t.Error("keys repeat")
	}
	for _, bad := range []string{"", "wrn_", "wrn_XYZ", "sk_" + strings.Repeat("a", 32), "wrn_" + strings.Repeat("a", 31), "wrn_" + strings.Repeat("A", 32)} {
		if ValidAPIKey(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}
