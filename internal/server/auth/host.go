package auth

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/wrennhq/wrenn/internal/seal"
)

// Host credentials: a host agent proves itself to the control plane with a host JWT
// (short-lived, renewed with a rotating refresh token); the control plane proves
// itself to the agent with a per-host secret the agent stores only as a hash.

// hostAudience separates host tokens from users' tokens: neither verifies as the other.
const hostAudience = "wrenn-host"

// HostTokenTTL is how long a host JWT lives.
const HostTokenTTL = 7 * 24 * time.Hour

type hostClaims struct {
	HostID string `json:"hid"`
	jwt.RegisteredClaims
}

// IssueHost returns a host JWT for hostID.
func (t *Tokens) IssueHost(hostID string) (string, time.Time, error) {
	now := t.now()
	exp := now.Add(HostTokenTTL)
	c := hostClaims{HostID: hostID, RegisteredClaims: jwt.RegisteredClaims{
		Issuer: t.issuer, Subject: hostID, Audience: jwt.ClaimStrings{hostAudience},
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now.Add(-5 * time.Second)),
		ExpiresAt: jwt.NewNumericDate(exp), ID: randomHex(12),
	}}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(t.key)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign host token: %w", err)
	}
	return s, exp, nil
}

// VerifyHost checks a host JWT and returns its host id.
func (t *Tokens) VerifyHost(token string) (string, error) {
	var c hostClaims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return t.key, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithAudience(hostAudience),
		jwt.WithIssuer(t.issuer), jwt.WithExpirationRequired(), jwt.WithTimeFunc(t.now))
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if c.HostID == "" || c.HostID != c.Subject {
		return "", fmt.Errorf("%w: no host", ErrBadToken)
	}
	return c.HostID, nil
}

// Opaque token kinds: registration tokens (one-time), refresh tokens, host secrets
// and sandbox traffic tokens.
const (
	RegistrationTokenPrefix = "wrh_"
	RefreshTokenPrefix      = "wrr_"
	HostSecretPrefix        = "wrs_"
	// TrafficTokenPrefix: a private sandbox's traffic token (e2b-traffic-access-token).
	TrafficTokenPrefix = "wrt_"
)

var opaquePattern = regexp.MustCompile(`^wr[hrst]_[0-9a-f]{64}$`)

// NewOpaqueToken returns prefix + 64 hex characters and its SHA-256 (what is stored).
func NewOpaqueToken(prefix string) (string, []byte) {
	tok := prefix + randomHex(32)
	return tok, HashToken(tok)
}

// HashToken is the stored form of an opaque token.
func HashToken(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}

// ValidOpaqueToken reports whether tok has the shape of a token of that prefix.
func ValidOpaqueToken(tok, prefix string) bool {
	return opaquePattern.MatchString(tok) && tok[:len(prefix)] == prefix
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error()) // the kernel's RNG does not fail
	}
	return hex.EncodeToString(b)
}

// Sealer encrypts host secrets at rest (package seal) with a key derived from the
// server's secret, so a database dump alone does not let anyone act as the control
// plane towards the hosts.
type Sealer struct{ box *seal.Box }

// NewSealer derives the sealing key from the server's secret.
func NewSealer(serverSecret []byte) (*Sealer, error) {
	if len(serverSecret) < 32 {
		return nil, errors.New("server secret must be at least 32 bytes")
	}
	box, err := seal.New(DeriveKey(serverSecret, "wrenn host secrets v1")) // seal.KeySize bytes
	if err != nil {
		return nil, err
	}
	return &Sealer{box: box}, nil
}

// Seal encrypts plaintext bound to context (the host id).
func (s *Sealer) Seal(plaintext []byte, context string) []byte {
	return s.box.Seal(plaintext, []byte(context))
}

// Open decrypts what Seal made for the same context.
func (s *Sealer) Open(sealed []byte, context string) ([]byte, error) {
	out, err := s.box.Open(sealed, []byte(context))
	if err != nil {
		return nil, fmt.Errorf("open sealed secret: %w", err)
	}
	return out, nil
}

// DeriveKey derives a 32-byte key for purpose from the server secret (HKDF-SHA256),
// so each use of WRENN_JWT_SECRET has its own key and no two can be confused.
func DeriveKey(serverSecret []byte, purpose string) []byte {
	key, err := hkdf.Key(sha256.New, serverSecret, nil, purpose, 32)
	if err != nil {
		panic(fmt.Sprintf("hkdf: %v", err)) // only for a length HKDF-SHA256 cannot give
	}
	return key
}
