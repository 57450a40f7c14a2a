package dashboard_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/server/servertest"
	"github.com/wrennhq/wrenn/pkg/client"
)

func TestMain(m *testing.M) { os.Exit(servertest.Run(m)) }

// The control plane as `wrenn server` wires it: the dashboard at its pages, and the API
// and E2B's routes (which share /sandboxes with the app) as before.
func TestServedByControlPlane(t *testing.T) {
	e := servertest.New(t)
	team := e.NewTeam(t, "ann@example.com")
	do := func(method, path string, hdr map[string]string) (*http.Response, string) {
		req, err := http.NewRequest(method, e.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	html := map[string]string{"Accept": "text/html"}
	for _, p := range []string{"/", "/sandboxes", "/sandboxes/sb-1", "/login"} {
		res, _ := do("GET", p, html)
		// 200 with the built app, 503 saying "not built" without it: a page either way.
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") || res.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("GET %s as a browser: %d %s, want a page with a CSP", p, res.StatusCode, ct)
		}
	}
	if res, body := do("GET", "/sandboxes", map[string]string{"X-API-Key": team.Key}); res.StatusCode != 200 || !strings.HasPrefix(body, "[") {
		t.Errorf("E2B's GET /sandboxes with a key: %d %s, want its JSON list", res.StatusCode, body)
	}
	if res, body := do("GET", "/v1/sandboxes", html); res.StatusCode != 401 || !strings.Contains(body, `"error"`) {
		t.Errorf("GET /v1/sandboxes without credentials: %d %s, want the API's 401", res.StatusCode, body)
	}
	if res, _ := do("GET", "/healthz", html); res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" {
		t.Errorf("GET /healthz: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
}

// TestDevServer keeps a control plane with one fake host (agenttest: envd processes as
// its "VMs", terminals included) running for a person or a browser to use the dashboard
// against; it runs only when asked:
//
//	WRENN_DASHBOARD_DEV=1 WRENN_ENVD_BIN=$PWD/bin/envd go test -run TestDevServer -timeout 0 -v ./internal/server/dashboard
//
// It prints the URL and a user's token and email, and stops on Ctrl-C.
func TestDevServer(t *testing.T) {
	if os.Getenv("WRENN_DASHBOARD_DEV") == "" {
		t.Skip("set WRENN_DASHBOARD_DEV=1 to run a control plane for the dashboard")
	}
	e := servertest.New(t)
	team := e.NewTeam(t, "ann@example.com")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	sb, err := team.Client.CreateSandbox(ctx, client.CreateSandboxRequest{Template: "base"})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("URL=%s\nTOKEN=%s\nEMAIL=ann@example.com PASSWORD='correct horse battery'\nSANDBOX=%s\n", e.URL, team.Session.Token, sb.ID)
	select {
	case <-ctx.Done():
	case <-time.After(time.Hour):
	}
}
