package tlsfiles

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA signs leaf certificates for the tests; clients trust only it.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "wrenn test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// issue returns a PEM chain (leaf, then the CA) for 127.0.0.1 and *.wrenn.test with
// serial, and the leaf's PEM key.
func (ca *testCA) issue(t *testing.T, serial int64) (chain, key []byte) {
	t.Helper()
	k := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "wrenn.test"},
		DNSNames: []string{"wrenn.test", "*.wrenn.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &k.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	chain = append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})...)
	return chain, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// write replaces path's content and moves its mtime to at: a rewrite within the
// filesystem's timestamp granularity would otherwise keep the old one.
func write(t *testing.T, path string, b []byte, at time.Time) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, at, at); err != nil {
		t.Fatal(err)
	}
}

// files writes a pair into a new directory and returns the paths.
func files(t *testing.T, chain, key []byte) (certFile, keyFile string) {
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	write(t, certFile, chain, time.Now().Add(-time.Minute))
	write(t, keyFile, key, time.Now().Add(-time.Minute))
	return certFile, keyFile
}

func serial(t *testing.T, p *Pair) int64 {
	t.Helper()
	c, err := p.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf.SerialNumber.Int64()
}

// The control plane's listener: the pair's Config on the server and on the listener.
func TestServesHTTP2(t *testing.T) {
	ca := newCA(t)
	chain, key := ca.issue(t, 2)
	certFile, keyFile := files(t, chain, key)
	p, err := Load(certFile, keyFile, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto+" "+r.Host)
	}), ErrorLog: log.New(io.Discard, "", 0)} // the refused TLS 1.1 handshake
	srv.TLSConfig = p.Config()
	go srv.Serve(tls.NewListener(ln, srv.TLSConfig))
	t.Cleanup(func() { srv.Close() })
	url := "https://" + ln.Addr().String() + "/"

	get := func(tr *http.Transport) (*http.Response, string, error) {
		t.Helper()
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, string(b), err
	}
	// A custom TLS config turns off the transport's HTTP/2 unless forced.
	resp, body, err := get(&http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}, ForceAttemptHTTP2: true})
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 || !strings.HasPrefix(body, "HTTP/2.0") || resp.TLS.Version != tls.VersionTLS13 {
		t.Errorf("HTTP/2 client: proto %s, body %q, TLS version %x", resp.Proto, body, resp.TLS.Version)
	}
	// An HTTP/1.1-only client (as WebSocket upgrades are) is served too.
	var h1 http.Protocols
	h1.SetHTTP1(true)
	resp, body, err = get(&http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}, Protocols: &h1})
	if err != nil || resp.ProtoMajor != 1 || !strings.HasPrefix(body, "HTTP/1.1") {
		t.Errorf("HTTP/1.1 client: %v %q", err, body)
	}
	// TLS 1.2 is the least accepted.
	resp, _, err = get(&http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool, MaxVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true})
	if err != nil || resp.TLS.Version != tls.VersionTLS12 || resp.ProtoMajor != 2 {
		t.Errorf("TLS 1.2 client: %v", err)
	}
	old := &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	if _, _, err = get(&http.Transport{TLSClientConfig: old}); err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Errorf("TLS 1.1 client: %v, want the server's protocol version alert", err)
	}
}

func TestReloadsOnChange(t *testing.T) {
	ca := newCA(t)
	chain, key := ca.issue(t, 2)
	certFile, keyFile := files(t, chain, key)
	var logs bytes.Buffer
	p, err := Load(certFile, keyFile, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	chain, key = ca.issue(t, 3)
	write(t, certFile, chain, time.Now())
	write(t, keyFile, key, time.Now())
	if got := serial(t, p); got != 2 {
		t.Errorf("reloaded within CheckInterval: serial %d", got)
	}
	p.every = 0
	if got := serial(t, p); got != 3 {
		t.Errorf("after a change: serial %d, want 3", got)
	}
	if !strings.Contains(logs.String(), "reloaded TLS key pair") {
		t.Errorf("log: %s", logs.String())
	}
	// Only the key's mtime moving (acme.sh installs the files one after the other) is
	// a change too.
	chain, key = ca.issue(t, 4)
	write(t, certFile, chain, time.Now().Add(-time.Hour)) // an older mtime counts too
	if got := serial(t, p); got != 3 {
		t.Errorf("certificate without its key: serial %d, want 3 (the old pair)", got)
	}
	write(t, keyFile, key, time.Now().Add(time.Minute))
	if got := serial(t, p); got != 4 {
		t.Errorf("after the key followed: serial %d, want 4", got)
	}
}

func TestBadPairKeepsOld(t *testing.T) {
	ca := newCA(t)
	chain, key := ca.issue(t, 2)
	certFile, keyFile := files(t, chain, key)
	var logs bytes.Buffer
	p, err := Load(certFile, keyFile, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	p.every = 0
	chain, key = ca.issue(t, 3)
	write(t, certFile, chain[:len(chain)/3], time.Now()) // a renewal half written
	for range 3 {
		if got := serial(t, p); got != 2 {
			t.Fatalf("bad pair: serial %d, want 2 (the old pair)", got)
		}
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 || !strings.Contains(logs.String(), certFile) {
		t.Errorf("want one warning naming %s, got %d:\n%s", certFile, n, logs.String())
	}
	// The rest of the write may not move the mtime again: the pair is retried anyway.
	write(t, certFile, chain, time.Now())
	write(t, keyFile, key, time.Now())
	if got := serial(t, p); got != 3 {
		t.Errorf("after a good pair: serial %d, want 3", got)
	}
	// A file gone (a symlink being swapped) also keeps the old pair.
	os.Remove(keyFile)
	if got := serial(t, p); got != 3 {
		t.Errorf("key missing: serial %d, want 3", got)
	}
}

// Load's error names the file at fault and why.
func TestLoadErrors(t *testing.T) {
	ca := newCA(t)
	chain, key := ca.issue(t, 2)
	_, other := ca.issue(t, 3)
	dir := t.TempDir()
	for _, tc := range []struct {
		name       string
		chain, key []byte
		want       []string
	}{
		{"no certificate", []byte("not PEM"), key, []string{"fullchain.pem", "certificate input"}},
		{"no key", chain, []byte("not PEM"), []string{"privkey.pem", "key input"}},
		{"swapped", key, chain, []string{"fullchain.pem", "switched"}},
		{"other key", chain, other, []string{"fullchain.pem", "privkey.pem", "does not match"}},
	} {
		certFile, keyFile := files(t, tc.chain, tc.key)
		_, err := Load(certFile, keyFile, slog.New(slog.DiscardHandler))
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: got %v, want %q", tc.name, err, w)
			}
		}
	}
	missing := filepath.Join(dir, "missing.pem")
	certFile, _ := files(t, chain, key)
	if _, err := Load(certFile, missing, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing key: %v", err)
	}
}
