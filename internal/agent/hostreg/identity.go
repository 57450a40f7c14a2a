// Package hostreg is the host agent's side of host registration: its TLS identity
// (a self-signed certificate whose fingerprint the control plane pins), registering
// once with a one-time token, the credentials that result (stored under WRENN_DIR),
// and the heartbeat that keeps the host online and renews its token.
package hostreg

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/wrennhq/wrenn/internal/atomicfile"
)

// Identity is the agent's TLS certificate and its SHA-256 fingerprint.
type Identity struct {
	Cert        tls.Certificate
	Fingerprint string // hex SHA-256 of the DER certificate
}

// Fingerprint is the SHA-256 of a DER certificate, in hex: what the control plane pins.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// LoadOrCreateIdentity loads dir/tls.crt and dir/tls.key, creating a self-signed
// ECDSA P-256 certificate (ten years; the pin, not a CA, is what is trusted) the
// first time. The key is written 0600 before the certificate, so a crash in between
// leaves no certificate without its key.
func LoadOrCreateIdentity(dir string) (*Identity, error) {
	certPath, keyPath := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if cert, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		return &Identity{Cert: cert, Fingerprint: Fingerprint(cert.Certificate[0])}, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("load agent tls identity: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "wrenn-agent " + host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"wrenn-agent"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create agent certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, err
	}
	return &Identity{Cert: cert, Fingerprint: Fingerprint(der)}, nil
}
