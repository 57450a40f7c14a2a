package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"time"
)

// Browser sessions (the dashboard's): the browser holds a random secret in an
// HttpOnly cookie and the control plane the secret's SHA-256 in its sessions table,
// so a leak of the database signs nobody in and sign-out (revoking the row) is real.
// State-changing requests also carry a CSRF token, which is derived from the
// session's secret: bound to that one session (a token read, or planted, elsewhere
// is worth nothing for another), and recomputable on every request, so nothing more
// is stored.
const (
	// SessionTTL is a session's absolute lifetime: after it, sign in again however
	// busy the session was.
	SessionTTL = 7 * 24 * time.Hour
	// SessionIdle ends a session unused this long (a browser left signed in).
	SessionIdle = 24 * time.Hour

	// SessionCookie is the session cookie's name on plain HTTP; SecureSessionCookie
	// its name when the control plane is reached over https (see SecureCookies). The
	// __Host- prefix makes browsers refuse the cookie unless it was set by this exact
	// host over https with Path=/ and no Domain: a page on a sandbox's subdomain
	// cannot plant a session of its own for the control plane (cookie tossing).
	SessionCookie       = "wrenn_session"
	SecureSessionCookie = "__Host-" + SessionCookie
	// CSRFCookie holds the session's CSRF token for the dashboard's script to read
	// (so not HttpOnly); CSRFHeader is where every state-changing request repeats it.
	CSRFCookie = "wrenn_csrf"
	CSRFHeader = "X-CSRF-Token"

	sessionSecretLen = 32
	csrfPurpose      = "wrenn csrf v1"
)

// NewSessionSecret returns a fresh session secret (what the cookie carries) and its
// SHA-256 (what is stored).
func NewSessionSecret() (secret string, hash []byte, err error) {
	b := make([]byte, sessionSecretLen)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("session secret: %w", err)
	}
	secret = base64.RawURLEncoding.EncodeToString(b)
	return secret, HashSessionSecret(secret), nil
}

// HashSessionSecret is the stored form of a session secret.
func HashSessionSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// ValidSessionSecret reports whether s has the shape of a session secret, so that
// garbage never reaches the database.
func ValidSessionSecret(s string) bool {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil && len(b) == sessionSecretLen
}

// CSRFToken is the CSRF token of the session whose secret is secret:
// HMAC-SHA256 keyed by the secret. Knowing it reveals nothing of the secret.
func CSRFToken(secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(csrfPurpose))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// CheckCSRF reports, in constant time, whether token is the CSRF token of the
// session whose secret is secret.
func CheckCSRF(secret, token string) bool {
	return subtle.ConstantTimeCompare([]byte(token), []byte(CSRFToken(secret))) == 1
}

// SecureCookies reports whether cookies set in answer to r must be Secure (and the
// session cookie take its __Host- name): when r came over TLS, or the public URL
// (WRENN_PUBLIC_URL) is https, as behind a TLS-terminating proxy. It extends the
// sign-in state cookie's rule (oauth.Flow: https public URL) with the server's own
// TLS, which a single box without a proxy serves.
func SecureCookies(r *http.Request, publicHTTPS bool) bool {
	return publicHTTPS || r.TLS != nil
}

// SessionCookieName is the session cookie's name for a request (SecureCookies).
func SessionCookieName(secure bool) string {
	if secure {
		return SecureSessionCookie
	}
	return SessionCookie
}
