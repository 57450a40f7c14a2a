package hostclient

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
)

// Host is what the pool needs to reach one registered host.
type Host struct {
	ID              string
	Address         string // host:port
	CertFingerprint string // hex SHA-256 of the agent's certificate
	Secret          string // presented as the bearer credential
}

// Lookup finds a host's connection details (from the database).
type Lookup func(ctx context.Context, hostID string) (Host, error)

// Pool holds one Connect client per host, made on first use, each over TLS that
// accepts only the certificate pinned at registration.
type Pool struct {
	lookup Lookup
	mu     sync.Mutex
	hosts  map[string]*pooled
}

type pooled struct {
	client    hostagentv1connect.HostAgentServiceClient
	transport *http.Transport // HTTP/2: RPCs, and proxying for HTTP/2 clients
	tr1       *http.Transport // HTTP/1.1: proxying, WebSocket upgrades
	endpoint  Endpoint
}

// Endpoint is how plain HTTP reaches a host's agent (its port proxy): pinned TLS
// transports — HTTP/1.1 (WebSocket upgrades need it) and HTTP/2 (for HTTP/2 clients,
// e.g. gRPC) — the base URL and the credential to present.
type Endpoint struct {
	HTTP1, HTTP2 http.RoundTripper
	BaseURL      string
	Secret       string
}

// NewPool returns an empty pool.
func NewPool(lookup Lookup) *Pool {
	return &Pool{lookup: lookup, hosts: map[string]*pooled{}}
}

// Agent returns the client of a host.
func (p *Pool) Agent(ctx context.Context, hostID string) (hostagentv1connect.HostAgentServiceClient, error) {
	c, err := p.get(ctx, hostID)
	if err != nil {
		return nil, err
	}
	return c.client, nil
}

// Endpoint returns how to reach a host's agent over plain HTTP (same connections).
func (p *Pool) Endpoint(ctx context.Context, hostID string) (Endpoint, error) {
	c, err := p.get(ctx, hostID)
	if err != nil {
		return Endpoint{}, err
	}
	return c.endpoint, nil
}

func (p *Pool) get(ctx context.Context, hostID string) (*pooled, error) {
	p.mu.Lock()
	c, ok := p.hosts[hostID]
	p.mu.Unlock()
	if ok {
		return c, nil
	}
	h, err := p.lookup(ctx, hostID)
	if err != nil {
		return nil, err
	}
	c, err = dial(h)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if existing, ok := p.hosts[hostID]; ok { // another caller won the race
		c.transport.CloseIdleConnections()
		c.tr1.CloseIdleConnections()
		return existing, nil
	}
	p.hosts[hostID] = c
	return c, nil
}

// Evict drops a host's client (deleted host, or new details); the next use dials anew.
func (p *Pool) Evict(hostID string) {
	p.mu.Lock()
	c, ok := p.hosts[hostID]
	delete(p.hosts, hostID)
	p.mu.Unlock()
	if ok {
		c.transport.CloseIdleConnections()
		c.tr1.CloseIdleConnections()
	}
}

// ErrFingerprint is returned when an agent presents another certificate than the
// one pinned for its host.
var ErrFingerprint = errors.New("agent certificate does not match the pinned fingerprint")

func dial(h Host) (*pooled, error) {
	if h.Address == "" || len(h.CertFingerprint) != 64 || h.Secret == "" {
		return nil, fmt.Errorf("host %s is not registered", h.ID)
	}
	want, err := hex.DecodeString(h.CertFingerprint)
	if err != nil {
		return nil, fmt.Errorf("host %s: bad pinned fingerprint", h.ID)
	}
	tlsConf := &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The agent's certificate is self-signed: trust is the pin, checked below,
		// instead of a CA chain and a host name.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return ErrFingerprint
			}
			got := sha256.Sum256(raw[0])
			if subtle.ConstantTimeCompare(got[:], want) != 1 {
				return fmt.Errorf("host %s at %s: %w", h.ID, h.Address, ErrFingerprint)
			}
			return nil
		},
	}
	tr := &http.Transport{
		TLSClientConfig: tlsConf, ForceAttemptHTTP2: true,
		IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 64, DisableCompression: true,
	}
	client := hostagentv1connect.NewHostAgentServiceClient(&http.Client{Transport: tr}, "https://"+h.Address,
		clientOptions(h.Secret)...)
	var only1 http.Protocols
	only1.SetHTTP1(true)
	tr1 := &http.Transport{
		TLSClientConfig: tlsConf.Clone(), Protocols: &only1,
		IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 256, DisableCompression: true,
	}
	return &pooled{client: client, transport: tr, tr1: tr1,
		endpoint: Endpoint{HTTP1: tr1, HTTP2: tr, BaseURL: "https://" + h.Address, Secret: h.Secret}}, nil
}
