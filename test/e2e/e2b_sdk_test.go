package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/pgtest"
	"github.com/wrennhq/wrenn/internal/redistest"
	"github.com/wrennhq/wrenn/internal/sdktest"
	"github.com/wrennhq/wrenn/pkg/client"
)

// sdkHostNS is the index of the network namespace the e2b SDK runs in (newHostNS):
// the cluster tests use 1–4.
const sdkHostNS = 200

// The official e2b JS SDK (test/sdk, pinned) drives Wrenn through its E2B-compatible
// REST API and sandbox routing, as a user's program would: test/sdk/e2b-api.test.mjs
// has the scenario. Two control planes share one database and Redis, as in a
// multi-server install: a plain-HTTP one the SDK reaches through E2B_SANDBOX_URL-style
// header routing, and one serving HTTPS (HTTP/2) on port 443 for the SDK's default
// routing, https://{port}-{id}.wrenn.test, with a certificate from a CA made here.
// Node runs in a network namespace whose only route is to the gateway both servers
// listen on, and resolves wrenn.test and *.wrenn.test there without a DNS server
// (test/sdk/resolve-test-domain.mjs); every other name fails, so nothing of the test
// can reach e2b.app or the internet.
func TestE2BSDK(t *testing.T) {
	needVM(t)
	sdk := sdktest.Modules(t)
	checkHostRangeFree(t)
	t.Cleanup(func() { assertNoHostNS(t) })
	ns := newHostNS(t, sdkHostNS)
	pki := newTestPKI(t, proxyDomain, "*."+proxyDomain)

	dsn, redisURL := pgtest.NewDB(t), redistest.NewURL(t)
	_, port, _ := net.SplitHostPort(freeAddr(t))
	domain := "WRENN_DOMAIN=" + proxyDomain
	plain := startServerWith(t, "0.0.0.0:"+port, dsn, redisURL, domain)
	startServerWith(t, ns.GW+":443", dsn, redisURL, domain, "WRENN_TLS_CERT="+pki.cert, "WRENN_TLS_KEY="+pki.key)
	checkTLSServer(t, ns.GW+":443", pki, "api."+proxyDomain)
	plain.addAgent(t, plain.admin(t), agentOpts{})
	key := e2bKeyOf(t, plain.base, "sdk-a@e2e.test")
	otherKey := e2bKeyOf(t, plain.base, "sdk-b@e2e.test")

	env := []string{
		"NODE_EXTRA_CA_CERTS=" + pki.ca,
		"WRENN_TEST_DOMAIN=" + proxyDomain,
		"WRENN_TEST_DOMAIN_IP=" + ns.GW,
		"WRENN_E2B_API_URL=" + ns.serverURL(port),
		"WRENN_E2B_DOMAIN=" + proxyDomain,
		"WRENN_E2B_KEY=" + e2bForm(key),
		"WRENN_E2B_KEY_WRN=" + key,
		"WRENN_E2B_OTHER_KEY=" + e2bForm(otherKey),
	}
	began := time.Now()
	out, err := sdktest.RunNode(t, ns.NS, sdk, 15*time.Minute, env,
		"--import", filepath.Join(sdk, "resolve-test-domain.mjs"),
		"--test", "--test-reporter=spec", "e2b-api.test.mjs")
	t.Logf("e2b SDK test (%v):\n%s", time.Since(began).Round(time.Second), out)
	if err != nil {
		t.Fatalf("node --test e2b-api.test.mjs: %v", err)
	}
}

// testPKI is a throwaway CA and a server certificate it signed, as PEM files.
type testPKI struct {
	ca, cert, key string // paths
	pool          *x509.CertPool
}

// newTestPKI makes a CA and a leaf certificate for names (DNS names; a wildcard
// covers one label) in a temp dir.
func newTestPKI(t *testing.T, names ...string) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Wrenn e2e test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	p := testPKI{ca: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "tls.crt"), key: filepath.Join(dir, "tls.key"), pool: x509.NewCertPool()}
	p.pool.AddCert(caCert)
	for _, f := range []struct {
		path, typ string
		der       []byte
	}{{p.ca, "CERTIFICATE", caDER}, {p.cert, "CERTIFICATE", leafDER}, {p.key, "PRIVATE KEY", keyDER}} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// checkTLSServer asserts that addr presents a certificate the test CA vouches for
// under serverName and answers GET /healthz over HTTP/2: the SDK's undici client offers
// h2, and sandbox traffic (Connect streams) is meant to ride it.
func checkTLSServer(t *testing.T, addr string, pki testPKI, serverName string) {
	t.Helper()
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pki.pool, ServerName: serverName},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + serverName + "/healthz")
	if err != nil {
		t.Fatalf("GET https://%s/healthz at %s: %v", serverName, addr, err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("GET https://%s/healthz at %s: %d over %s, want 200 over HTTP/2", serverName, addr, resp.StatusCode, resp.Proto)
	}
}

// e2bKeyOf signs a user up (a team of their own) and returns a new API key of the team
// as Wrenn issues it (wrn_…).
func e2bKeyOf(t *testing.T, base, email string) string {
	t.Helper()
	ctx := context.Background()
	s, err := client.New(base).Signup(ctx, email, "", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	k, err := client.New(base, client.WithToken(s.Token)).CreateAPIKey(ctx, "e2b sdk")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^wrn_[0-9a-f]{32}$`).MatchString(k.Key) {
		t.Fatalf("API key %q: want wrn_ and 32 hex digits", k.Key)
	}
	return k.Key
}

// e2bForm is a Wrenn key written the way E2B's keys look (e2b_ and the same hex),
// which Wrenn accepts as the same key.
func e2bForm(key string) string { return "e2b_" + strings.TrimPrefix(key, "wrn_") }
