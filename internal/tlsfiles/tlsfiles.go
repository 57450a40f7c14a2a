// Package tlsfiles serves TLS with a certificate chain and private key read from PEM
// files, for a program that terminates TLS itself (the control plane on a single box,
// without a reverse proxy). The files are re-read when either one's modification time
// changes, so a certificate renewed in place (certbot, acme.sh) is served without a
// restart, and a renewal that does not load leaves the previous certificate serving.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// CheckInterval is how often handshakes look at the files: a stat of two files this
// often costs nothing, and a renewal is served within it.
const CheckInterval = 5 * time.Second

// Pair is a certificate and key loaded from files, reloaded when they change.
type Pair struct {
	certFile, keyFile string
	log               *slog.Logger
	every             time.Duration // CheckInterval; tests shorten it

	mu      sync.Mutex
	cert    *tls.Certificate
	loaded  [2]int64  // the files' mtimes (UnixNano) when cert was read
	checked time.Time // last look at the files
	failed  string    // the last failure logged, so a bad pair is reported once
}

// Load reads the pair (certFile holds the chain, leaf first); the error names the
// files and what is wrong with them. Certificates it serves have Leaf set.
func Load(certFile, keyFile string, log *slog.Logger) (*Pair, error) {
	// Stat before reading: a write after the stat moves the mtime, so it is reloaded.
	mod, err := modTimes(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS key pair: %w", err)
	}
	cert, err := load(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &Pair{certFile: certFile, keyFile: keyFile, log: log, every: CheckInterval,
		cert: cert, loaded: mod, checked: time.Now()}, nil
}

// Config is a server's tls.Config for the pair: TLS 1.2 or later, HTTP/2 offered before
// HTTP/1.1. Pass it to tls.NewListener and set it as the http.Server's TLSConfig too:
// Serve sets up HTTP/2 on a TLS listener only when its TLSConfig offers "h2".
func (p *Pair) Config() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: p.GetCertificate,
	}
}

// GetCertificate is tls.Config's: the current certificate, after a look at the files
// when the last one is CheckInterval old. It never fails: a bad new pair was reported
// and the old one still serves.
func (p *Pair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now := time.Now(); now.Sub(p.checked) >= p.every {
		p.checked = now
		p.reload()
	}
	return p.cert, nil
}

// reload re-reads the files when either changed since cert was read. A pair that does
// not load (a renewal half written, a key that does not match yet) is retried at every
// check until it does, since the rest of the write may not move the mtime again.
func (p *Pair) reload() {
	mod, err := modTimes(p.certFile, p.keyFile)
	if err == nil && mod == p.loaded {
		return
	}
	var cert *tls.Certificate
	if err == nil {
		cert, err = load(p.certFile, p.keyFile)
	}
	if err != nil {
		if failed := fmt.Sprint(mod, err); failed != p.failed {
			p.failed = failed
			p.log.Warn("TLS key pair changed but does not load; serving the previous certificate until it does", "err", err)
		}
		return
	}
	p.cert, p.loaded, p.failed = cert, mod, ""
	p.log.Info("reloaded TLS key pair", "cert", p.certFile, "key", p.keyFile,
		"names", cert.Leaf.DNSNames, "not_after", cert.Leaf.NotAfter)
}

func load(certFile, keyFile string) (*tls.Certificate, error) {
	// The error of tls says which file is at fault ("… in certificate input", "… in
	// key input", "private key does not match public key"); the open's names it.
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err == nil && cert.Leaf == nil { // GODEBUG=x509keypairleaf=0 leaves it out
		cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0])
	}
	if err != nil {
		return nil, fmt.Errorf("load TLS key pair %s, %s: %w", certFile, keyFile, err)
	}
	return &cert, nil
}

func modTimes(certFile, keyFile string) ([2]int64, error) {
	var mod [2]int64
	for i, f := range []string{certFile, keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return mod, err
		}
		mod[i] = fi.ModTime().UnixNano()
	}
	return mod, nil
}
