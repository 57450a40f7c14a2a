package auth

import (
	"bytes"
	"strings"
	"testing"
)

func TestHostTokensAreNotUserTokens(t *testing.T) {
	tk, err := NewTokens(bytes.Repeat([]byte("k"), 32), 0)
	if err != nil {
		t.Fatal(err)
	}
	host, _, err := tk.IssueHost("11111111-1111-1111-1111-111111111111")
	if err != nil {
		t.Fatal(err)
	}
	if id, err := tk.VerifyHost(host); err != nil || id != "11111111-1111-1111-1111-111111111111" {
		t.Fatalf("verify host token: %q %v", id, err)
	}
	if _, err := tk.Verify(host); err == nil {
		t.Error("a host token verified as a user token")
	}
	user, _, err := tk.Issue("u1", "t1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tk.VerifyHost(user); err == nil {
		t.Error("a user token verified as a host token")
	}
	other, _ := NewTokens(bytes.Repeat([]byte("o"), 32), 0)
	if _, err := other.VerifyHost(host); err == nil {
		t.Error("a host token verified under another key")
	}
}

func TestOpaqueTokens(t *testing.T) {
	tok, hash := NewOpaqueToken(RegistrationTokenPrefix)
	if !ValidOpaqueToken(tok, RegistrationTokenPrefix) || !bytes.Equal(HashToken(tok), hash) {
		t.Fatalf("token %q", tok)
	}
	if ValidOpaqueToken(tok, RefreshTokenPrefix) {
		t.Error("a registration token passed as a refresh token")
	}
	for _, bad := range []string{"", "wrh_", "wrh_" + strings.Repeat("g", 64), tok + "0", strings.ToUpper(tok)} {
		if ValidOpaqueToken(bad, RegistrationTokenPrefix) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestSealer(t *testing.T) {
	s, err := NewSealer(bytes.Repeat([]byte("s"), 32))
	if err != nil {
		t.Fatal(err)
	}
	sealed := s.Seal([]byte("wrs_secret"), "host-a")
	if bytes.Contains(sealed, []byte("wrs_secret")) {
		t.Fatal("sealed text contains the secret")
	}
	if got, err := s.Open(sealed, "host-a"); err != nil || string(got) != "wrs_secret" {
		t.Fatalf("open: %q %v", got, err)
	}
	if _, err := s.Open(sealed, "host-b"); err == nil {
		t.Error("a secret sealed for one host opened for another")
	}
	other, _ := NewSealer(bytes.Repeat([]byte("x"), 32))
	if _, err := other.Open(sealed, "host-a"); err == nil {
		t.Error("opened under another server secret")
	}
	if _, err := NewSealer([]byte("short")); err == nil {
		t.Error("short server secret accepted")
	}
}
