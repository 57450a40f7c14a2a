package hostclient

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
	"github.com/wrennhq/wrenn/internal/agent/hostreg"
)

// agentStub answers ListSandboxes when the bearer secret is right.
type agentStub struct {
	hostagentv1connect.UnimplementedHostAgentServiceHandler
}

func (agentStub) ListSandboxes(_ context.Context, req *connect.Request[pb.ListSandboxesRequest]) (*connect.Response[pb.ListSandboxesResponse], error) {
	if req.Header().Get("Authorization") != "Bearer wrs_right" {
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("wrong secret"))
	}
	return connect.NewResponse(&pb.ListSandboxesResponse{Sandboxes: []*pb.Sandbox{{Id: "sbx"}}}), nil
}

// tlsAgent serves the stub over TLS (HTTP/2) with a fresh self-signed identity.
func tlsAgent(t *testing.T) (addr, fingerprint string) {
	t.Helper()
	id, err := hostreg.LoadOrCreateIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(hostagentv1connect.NewHostAgentServiceHandler(agentStub{}))
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{id.Cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "https://"), id.Fingerprint
}

func TestPoolPinsTheCertificate(t *testing.T) {
	ctx := context.Background()
	addr, fp := tlsAgent(t)
	_, otherFP := tlsAgent(t)
	hosts := map[string]Host{
		"good":   {ID: "good", Address: addr, CertFingerprint: fp, Secret: "wrs_right"},
		"pinned": {ID: "pinned", Address: addr, CertFingerprint: otherFP, Secret: "wrs_right"},
		"secret": {ID: "secret", Address: addr, CertFingerprint: fp, Secret: "wrs_wrong"},
	}
	lookups := 0
	pool := NewPool(func(_ context.Context, id string) (Host, error) {
		lookups++
		h, ok := hosts[id]
		if !ok {
			return Host{}, errors.New("unknown host")
		}
		return h, nil
	})
	call := func(id string) error {
		c, err := pool.Agent(ctx, id)
		if err != nil {
			return err
		}
		_, err = c.ListSandboxes(ctx, connect.NewRequest(&pb.ListSandboxesRequest{}))
		return err
	}
	if err := call("good"); err != nil {
		t.Fatalf("pinned certificate: %v", err)
	}
	if err := call("good"); err != nil || lookups != 1 {
		t.Errorf("second call: %v, %d lookups (want the cached client)", err, lookups)
	}
	if err := call("pinned"); err == nil || !strings.Contains(err.Error(), "pinned fingerprint") {
		t.Errorf("another certificate than the pinned one: %v", err)
	}
	if err := call("secret"); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("wrong secret: %v", err)
	}
	if err := call("nope"); err == nil {
		t.Error("unknown host reached")
	}
	pool.Evict("good")
	if err := call("good"); err != nil || lookups != 5 {
		t.Errorf("after evict: %v, %d lookups", err, lookups)
	}
}
