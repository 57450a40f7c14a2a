// Package auth holds the control plane's credentials: password hashing, the short-lived
// JWTs a login returns, and team API keys (`wrn_` + 32 hex, stored only as a SHA-256).
// It decides nothing about permissions: tokens carry hints, and every request checks
// membership and role in the database.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"
)

// Password rules. bcrypt reads at most 72 bytes; a longer password would be silently
// truncated, so it is refused instead.
const (
	MinPasswordLen = 8
	MaxPasswordLen = 72
	bcryptCost     = 12
)

// ErrBadPassword is wrapped by password-policy failures (a 400 for the caller).
var ErrBadPassword = errors.New("invalid password")

// HashPassword checks the policy and returns a bcrypt hash.
func HashPassword(pw string) (string, error) {
	switch {
	case utf8.RuneCountInString(pw) < MinPasswordLen:
		return "", fmt.Errorf("%w: at least %d characters", ErrBadPassword, MinPasswordLen)
	case len(pw) > MaxPasswordLen:
		return "", fmt.Errorf("%w: at most %d bytes", ErrBadPassword, MaxPasswordLen)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcryptCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// CheckPassword reports whether pw matches hash, in constant time.
func CheckPassword(hash, pw string) bool {
	if hash == "" || len(pw) > MaxPasswordLen {
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil
}

// dummyHash lets a login for an unknown email cost as much as a real check, so timing
// does not tell which emails have accounts: a bcrypt hash at bcryptCost (of
// "wrenn-timing-equaliser"; TestDummyHashCost holds the cost to bcryptCost). A constant,
// not hashed at start: that cost 0.23 s in every wrenn process, the CLI's included.
const dummyHash = "$2a$12$IMwEEUK3dAxfnjp/ry1jgeg6clhNUz75.6.mm0ODUclNUL7omj8UC"

// EqualiseTiming spends the time of one password check.
func EqualiseTiming(pw string) {
	_ = bcrypt.CompareHashAndPassword([]byte(dummyHash), []byte(pw))
}

// Claims are what a Wrenn JWT says: who, and the team they were acting for when it was
// issued (a hint; the database decides).
type Claims struct {
	UserID string `json:"uid"`
	TeamID string `json:"tid"`
	jwt.RegisteredClaims
}

// Tokens issues and verifies HS256 JWTs.
type Tokens struct {
	key    []byte
	ttl    time.Duration
	issuer string
	now    func() time.Time
}

// NewTokens returns a signer; key must be at least 32 bytes.
func NewTokens(key []byte, ttl time.Duration) (*Tokens, error) {
	if len(key) < 32 {
		return nil, errors.New("jwt signing key must be at least 32 bytes")
	}
	if ttl <= 0 {
		ttl = 15 * time.Minute
	}
	return &Tokens{key: key, ttl: ttl, issuer: "wrenn", now: time.Now}, nil
}

// Issue returns a signed token for user acting in team.
func (t *Tokens) Issue(userID, teamID string) (string, time.Time, error) {
	now := t.now()
	exp := now.Add(t.ttl)
	id := make([]byte, 12)
	if _, err := rand.Read(id); err != nil {
		return "", time.Time{}, err
	}
	c := Claims{UserID: userID, TeamID: teamID, RegisteredClaims: jwt.RegisteredClaims{
		Issuer: t.issuer, Subject: userID, IssuedAt: jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now.Add(-5 * time.Second)), ExpiresAt: jwt.NewNumericDate(exp),
		ID: hex.EncodeToString(id),
	}}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(t.key)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: %w", err)
	}
	return s, exp, nil
}

// ErrBadToken is wrapped by every verification failure (a 401 for the caller).
var ErrBadToken = errors.New("invalid or expired token")

// Verify checks signature (HS256 only), issuer and expiry and returns the claims.
func (t *Tokens) Verify(token string) (*Claims, error) {
	var c Claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return t.key, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(t.issuer), jwt.WithExpirationRequired(), jwt.WithTimeFunc(t.now))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if c.UserID == "" || c.UserID != c.Subject || len(c.Audience) > 0 {
		return nil, fmt.Errorf("%w: not a user token", ErrBadToken)
	}
	return &c, nil
}

// API keys.
const (
	APIKeyPrefix = "wrn_"
	// DisplayPrefixLen is how much of a key is stored in clear, to tell keys apart.
	DisplayPrefixLen = len(APIKeyPrefix) + 6
)

var apiKeyPattern = regexp.MustCompile(`^wrn_[0-9a-f]{32}$`)

// NewAPIKey returns a fresh key, its SHA-256 (what is stored) and its display prefix.
func NewAPIKey() (key string, hash []byte, prefix string, err error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", nil, "", err
	}
	key = APIKeyPrefix + hex.EncodeToString(b)
	return key, HashAPIKey(key), key[:DisplayPrefixLen], nil
}

// HashAPIKey is the stored form of a key.
func HashAPIKey(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

// ValidAPIKey reports whether s has the shape of a Wrenn API key, so garbage never
// reaches the database.
func ValidAPIKey(s string) bool { return apiKeyPattern.MatchString(strings.TrimSpace(s)) }

// E2BKeyPrefix: every key also works written E2BKeyPrefix + its hex part, the only
// form the e2b SDKs accept (^e2b_[0-9a-f]+$) without E2B_VALIDATE_API_KEY=false.
const E2BKeyPrefix = "e2b_"

// E2BForm is key as the e2b SDKs take it (the same secret).
func E2BForm(key string) string { return E2BKeyPrefix + strings.TrimPrefix(key, APIKeyPrefix) }

// CanonicalAPIKey is key in its Wrenn form (what is hashed): an e2b_ key becomes the
// wrn_ key it writes differently; anything else is returned as it is.
func CanonicalAPIKey(key string) string {
	key = strings.TrimSpace(key)
	if rest, ok := strings.CutPrefix(key, E2BKeyPrefix); ok {
		return APIKeyPrefix + rest
	}
	return key
}
