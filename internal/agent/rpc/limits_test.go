package rpc_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
	"github.com/wrennhq/wrenn/internal/agent/rpc"
)

// TestMessageLimit: a message one byte over the agent's read limit (a whole file
// and 1 MiB of envelope) is refused with resource_exhausted saying why, before any
// handler sees it; the limit is checked on the decompressed size, so gzip does not
// get around it.
func TestMessageLimit(t *testing.T) {
	path, h := rpc.Handler(nil, func(string) bool { return true })
	mux := http.NewServeMux()
	mux.Handle(path, h)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := hostagentv1connect.NewHostAgentServiceClient(srv.Client(), srv.URL, connect.WithSendGzip())
	req := connect.NewRequest(&pb.WriteFileRequest{SandboxId: "sb", Path: "/f", Content: make([]byte, rpc.MaxWholeFile+1<<20)})
	req.Header().Set("Authorization", "Bearer x")
	_, err := c.WriteFile(context.Background(), req)
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "larger than configured max") {
		t.Errorf("a message over the limit: %v, want resource_exhausted saying why", err)
	}
}
