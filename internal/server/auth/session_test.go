package auth

import (
	"crypto/tls"
	"net/http/httptest"
	"testing"
)

func TestSessionSecretAndCSRF(t *testing.T) {
	a, hash, err := NewSessionSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := NewSessionSecret()
	if a == b || !ValidSessionSecret(a) || string(hash) != string(HashSessionSecret(a)) || len(hash) != 32 {
		t.Fatalf("secrets %q %q", a, b)
	}
	for _, bad := range []string{"", "junk", a + "A", a[:len(a)-1]} {
		if ValidSessionSecret(bad) {
			t.Errorf("ValidSessionSecret(%q)", bad)
		}
	}
	// Bound: a session's token passes for it alone.
	if !CheckCSRF(a, CSRFToken(a)) || CheckCSRF(a, CSRFToken(b)) || CheckCSRF(a, "") || CSRFToken(a) == a {
		t.Error("CSRF tokens are not bound to their session")
	}
}

// Secure cookies under TLS on the listener or an https public URL.
func TestSecureCookies(t *testing.T) {
	plain := httptest.NewRequest("GET", "http://wrenn.example/", nil)
	overTLS := httptest.NewRequest("GET", "https://wrenn.example/", nil)
	overTLS.TLS = &tls.ConnectionState{}
	if SecureCookies(plain, false) || !SecureCookies(plain, true) || !SecureCookies(overTLS, false) {
		t.Error("SecureCookies")
	}
	if SessionCookieName(true) != "__Host-wrenn_session" || SessionCookieName(false) != "wrenn_session" {
		t.Error("SessionCookieName")
	}
}
