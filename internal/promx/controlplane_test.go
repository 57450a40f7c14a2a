package promx_test

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wrennhq/wrenn/internal/promx"
	"github.com/wrennhq/wrenn/internal/server/servertest"
	"github.com/wrennhq/wrenn/pkg/client"
)

// A control plane without metrics settings answers /metrics as any unknown route.
func TestControlPlaneMetricsOff(t *testing.T) {
	env := servertest.New(t)
	for _, bearer := range []string{"", token} {
		req, _ := http.NewRequest("GET", env.URL+promx.Path, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), `"not_found"`) {
			t.Errorf("bearer %q: %d %s, want the API's 404", bearer, resp.StatusCode, body)
		}
	}
}

// The control plane's families carry what happened: requests by route pattern,
// sandboxes and hosts from PostgreSQL, the scheduler's decision and the proxy's
// traffic.
func TestControlPlaneMetrics(t *testing.T) {
	env := servertest.NewWithMetrics(t, promx.Access{Token: token})
	url := env.URL + promx.Path
	for _, bearer := range []string{"", "not-the-" + token} {
		if status, _ := scrape(t, url, bearer); status != http.StatusUnauthorized {
			t.Errorf("bearer %q: %d, want 401", bearer, status)
		}
	}
	// Before anything happened, every family the control plane owns is there.
	status, fams := scrape(t, url, token)
	if status != http.StatusOK {
		t.Fatalf("scrape with the token: %d", status)
	}
	if v := value(fams, "wrenn_scheduler_decisions_total", map[string]string{"outcome": "no_capacity"}); v != 0 {
		t.Errorf("no_capacity before any create: %v, want 0", v)
	}
	if v := value(fams, "wrenn_hosts", map[string]string{"status": "online"}); v != 1 {
		t.Errorf("online hosts: %v, want 1", v)
	}

	ctx := context.Background()
	team := env.NewTeam(t, "ops@example.com")
	sb, err := team.Client.CreateSandbox(ctx, client.CreateSandboxRequest{}) // a 201
	if err != nil {
		t.Fatal(err)
	}
	if _, err := team.Client.GetSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	missing := "sb" + strings.Repeat("0", len(sb.ID)-2)
	if _, err := team.Client.GetSandbox(ctx, missing); err == nil {
		t.Fatalf("GET %s: no error", missing)
	}
	if resp, err := http.Get(env.URL + "/no/such/route"); err == nil {
		resp.Body.Close()
	}
	// A request proxied to a server in the sandbox, with a body each way, and a
	// WebSocket, whose bytes pass outside the request's body and answer.
	port := guestService(t, env, sb.ID, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			if typ, b, err := c.Read(r.Context()); err == nil {
				_ = c.Write(r.Context(), typ, b)
			}
			return
		}
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %d bytes", len(b))
	}))
	host := fmt.Sprintf("%d-%s.%s", port, sb.ID, servertest.Domain)
	sent := strings.Repeat("x", 1000)
	req, _ := http.NewRequest("POST", env.URL+"/echo", strings.NewReader(sent))
	req.Host = host
	req.Header.Set("X-API-Key", team.Key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(answer) != "got 1000 bytes" {
		t.Fatalf("proxied request: %d %q", resp.StatusCode, answer)
	}
	msg := strings.Repeat("w", 500)
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(env.URL, "http")+"/ws",
		&websocket.DialOptions{Host: host, HTTPHeader: http.Header{"X-Api-Key": {team.Key}}})
	if err != nil {
		t.Fatalf("websocket through the proxy: %v", err)
	}
	if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	if _, b, err := ws.Read(ctx); err != nil || string(b) != msg {
		t.Fatalf("websocket echo: %d bytes, %v", len(b), err)
	}
	ws.Close(websocket.StatusNormalClosure, "")
	// The proxy lets go of the WebSocket as its copying ends, just after the client's.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, fams = scrape(t, url, token)
		if value(fams, "wrenn_proxy_connections_in_flight", nil) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	for _, c := range []struct {
		name   string
		labels map[string]string
		min    float64
		max    float64
	}{
		{"wrenn_http_requests_total", map[string]string{"route": "/v1/sandboxes", "method": "POST", "code": "201"}, 1, 1},
		{"wrenn_http_requests_total", map[string]string{"route": "/v1/sandboxes/{id}", "method": "GET", "code": "200"}, 1, 1},
		{"wrenn_http_requests_total", map[string]string{"route": "/v1/sandboxes/{id}", "method": "GET", "code": "404"}, 1, 1},
		{"wrenn_http_requests_total", map[string]string{"route": "", "method": "GET", "code": "404"}, 1, 1},
		{"wrenn_http_request_duration_seconds", map[string]string{"route": "/v1/sandboxes", "method": "POST"}, 1, 1},
		{"wrenn_sandboxes", map[string]string{"state": "running"}, 1, 1},
		{"wrenn_sandboxes", map[string]string{"state": "paused"}, 0, 0},
		{"wrenn_hosts", map[string]string{"status": "online"}, 1, 1},
		{"wrenn_hosts", map[string]string{"status": "unreachable"}, 0, 0},
		{"wrenn_scheduler_decisions_total", map[string]string{"outcome": "placed"}, 1, 1},
		{"wrenn_scheduler_decisions_total", map[string]string{"outcome": "error"}, 0, 0},
		{"wrenn_proxy_connections_total", nil, 2, 2},
		{"wrenn_proxy_connections_in_flight", nil, 0, 0},
		// The WebSocket's frames add a few bytes of their own each.
		{"wrenn_proxy_bytes_total", map[string]string{"direction": "in"}, float64(len(sent) + len(msg)), float64(len(sent) + len(msg) + 100)},
		{"wrenn_proxy_bytes_total", map[string]string{"direction": "out"}, float64(len(answer) + len(msg)), float64(len(answer) + len(msg) + 100)},
	} {
		if v := value(fams, c.name, c.labels); math.IsNaN(v) || v < c.min || v > c.max {
			t.Errorf("%s%v = %v, want %v..%v", c.name, c.labels, v, c.min, c.max)
		}
	}
	// Route labels are patterns: no sandbox id becomes a label value.
	for _, name := range []string{"wrenn_http_requests_total", "wrenn_http_request_duration_seconds"} {
		for _, m := range fams[name].GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), sb.ID) || strings.Contains(l.GetValue(), missing) || strings.Contains(l.GetValue(), "/no/such") {
					t.Errorf("%s has the label %s=%q", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
}

// A create that no host can take is the scheduler's no_capacity.
func TestControlPlaneNoCapacity(t *testing.T) {
	env := servertest.NewWithMetrics(t, promx.Access{Token: token})
	team := env.NewTeam(t, "full@example.com")
	if _, err := env.DB.Exec(context.Background(), "UPDATE hosts SET status = 'draining'"); err != nil {
		t.Fatal(err)
	}
	if _, err := team.Client.CreateSandbox(context.Background(), client.CreateSandboxRequest{}); err == nil {
		t.Fatal("a create with every host draining succeeded")
	}
	_, fams := scrape(t, env.URL+promx.Path, token)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"wrenn_scheduler_decisions_total", map[string]string{"outcome": "no_capacity"}, 1},
		{"wrenn_scheduler_decisions_total", map[string]string{"outcome": "placed"}, 0},
		{"wrenn_hosts", map[string]string{"status": "draining"}, 1},
		{"wrenn_hosts", map[string]string{"status": "online"}, 0},
		{"wrenn_http_requests_total", map[string]string{"route": "/v1/sandboxes", "method": "POST", "code": "503"}, 1},
	} {
		if v := value(fams, c.name, c.labels); v != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, v, c.want)
		}
	}
}

// guestService serves h "in" sandbox id: on its guest address, where the agent's
// proxy reaches it, as a server in a VM would be.
func guestService(t *testing.T, env *servertest.Env, id string, h http.Handler) int {
	t.Helper()
	info, err := env.Agent.Manager.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", netip.AddrPortFrom(info.HostIP, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return ln.Addr().(*net.TCPAddr).Port
}
