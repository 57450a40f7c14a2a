package envd

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/envd/process"
	"github.com/wrennhq/wrenn/gen/envd/process/processconnect"
	"github.com/wrennhq/wrenn/internal/envd/jsoncodec"
)

// TestInitBodyLimit: an /init body one byte over 1 MiB is refused with 413 and a
// message, before it is decoded.
func TestInitBodyLimit(t *testing.T) {
	srv := New(Config{RunDir: t.TempDir(), SetClock: (&clockRecorder{}).setClock})
	defer srv.Close()
	body := `{"envVars":{"X":"` + strings.Repeat("x", maxInitBody) + `"}}`
	body = body[:maxInitBody+1]
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/init", strings.NewReader(body)))
	if rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(rec.Body.String(), "larger than 1 MiB") {
		t.Errorf("/init of 1 MiB + 1 byte: %d %s, want 413 saying so", rec.Code, rec.Body)
	}
}

// TestConnectMessageLimit: a Connect message over the limit is refused with
// resource_exhausted in either codec, one at the limit is read.
func TestConnectMessageLimit(t *testing.T) {
	const limit = 4096
	srv := New(Config{RunDir: t.TempDir(), MaxMessageBytes: limit})
	defer srv.Close()
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	for name, opts := range map[string][]connect.ClientOption{"proto": nil, "json": jsoncodec.ClientOptions()} {
		c := processconnect.NewProcessClient(hs.Client(), hs.URL, opts...)
		send := func(n int) error {
			in := &pb.SendInputRequest{
				Process: &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: 1}},
				Input:   &pb.ProcessInput{Input: &pb.ProcessInput_Stdin{Stdin: make([]byte, n)}},
			}
			_, err := c.SendInput(context.Background(), connect.NewRequest(in))
			return err
		}
		err := send(limit)
		if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "larger than configured max") {
			t.Errorf("%s: a message over %d bytes: %v, want resource_exhausted saying why", name, limit, err)
		}
		// Well under the limit the call is read and reaches the service (no such
		// process, or no credentials: anything but resource_exhausted).
		if err := send(limit / 4); connect.CodeOf(err) == connect.CodeResourceExhausted {
			t.Errorf("%s: a message under the limit: %v", name, err)
		}
	}
	if MaxMessageBytes < (64<<20+1<<20)*4/3 {
		t.Errorf("MaxMessageBytes %d is below the agent's largest input as base64", MaxMessageBytes)
	}
}
