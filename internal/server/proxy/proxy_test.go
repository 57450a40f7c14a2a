package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wrennhq/wrenn/internal/server/servertest"
	"github.com/wrennhq/wrenn/pkg/client"
)

func TestMain(m *testing.M) { os.Exit(servertest.Run(m)) }

// guestAddr is where the agent reaches sandbox id's guest: its slot's loopback
// address, on which the sandbox's envd listens too.
func (f fixture) guestAddr(t *testing.T, id string) netip.Addr {
	t.Helper()
	info, err := f.env.Agent.Manager.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	return info.HostIP
}

// guestService serves h "in" sandbox id — on its guest address, as a server in a VM
// would on the guest's — and returns its port.
func (f fixture) guestService(t *testing.T, id string, h http.Handler) int {
	t.Helper()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(f.guestAddr(t, id), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return ln.Addr().(*net.TCPAddr).Port
}

type fixture struct {
	env *servertest.Env
	c   *client.Client
	key string
}

func setup(t *testing.T) fixture {
	env := servertest.New(t)
	ann := env.NewTeam(t, "ann@example.com")
	return fixture{env: env, c: ann.Client, key: ann.Key}
}

// get sends a request for port of sandbox id by Host name.
func (f fixture) get(t *testing.T, host, path string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", f.env.URL+path, nil)
	req.Host = host
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestRoutingAndHeaders(t *testing.T) {
	f := setup(t)
	sb, err := f.c.CreateSandbox(context.Background(), client.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	port := f.guestService(t, sb.ID, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "host=%s path=%s query=%s apikey=%q agentauth=%q auth=%q cookie=%q", r.Host, r.URL.EscapedPath(), r.URL.RawQuery,
			r.Header.Get("X-API-Key"), r.Header.Get("Wrenn-Agent-Auth"), r.Header.Get("Authorization"), r.Header.Get("Cookie"))
	}))
	host := fmt.Sprintf("%d-%s.%s", port, sb.ID, servertest.Domain)
	// The control plane's cookies (the dashboard's session) never reach a sandbox;
	// the app's own do.
	resp, body := f.get(t, host, "/a%2Fb/c?x=1&y=2", map[string]string{"X-API-Key": f.key, "Authorization": "Bearer app-token", "Wrenn-Agent-Auth": "forged",
		"Cookie": "app=1; wrenn_session=s; __Host-wrenn_session=s; wrenn_csrf=c; __Host-wrenn_oauth_state=x; other=2"})
	want := fmt.Sprintf(`host=%s path=/a%%2Fb/c query=x=1&y=2 apikey="" agentauth="" auth="Bearer app-token" cookie="app=1; other=2"`, host)
	if resp.StatusCode != 200 || body != want {
		t.Errorf("by host: %d %q\nwant %q", resp.StatusCode, body, want)
	}
	// Header routing (E2B_SANDBOX_URL deployments).
	resp, body = f.get(t, "127.0.0.1", "/h", map[string]string{"E2b-Sandbox-Id": sb.ID, "E2b-Sandbox-Port": fmt.Sprint(port)})
	if resp.StatusCode != 200 || !strings.Contains(body, "path=/h") {
		t.Errorf("by headers: %d %q", resp.StatusCode, body)
	}
	// Other hosts are the API.
	if resp, _ := f.get(t, "api."+servertest.Domain, "/healthz", nil); resp.StatusCode != 200 {
		t.Errorf("api host: %d", resp.StatusCode)
	}
	for _, c := range []struct{ host, want string }{
		{"abc-" + sb.ID + "." + servertest.Domain, "Invalid sandbox port"},
		{"0-" + sb.ID + "." + servertest.Domain, "Invalid sandbox port"},
		{"70000-" + sb.ID + "." + servertest.Domain, "Invalid sandbox port"},
		{"3000-sb_x." + servertest.Domain, "Invalid sandbox ID"},
	} {
		if resp, body := f.get(t, c.host, "/", nil); resp.StatusCode != 400 || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %q", c.host, resp.StatusCode, body)
		}
	}
	if resp, body := f.get(t, "127.0.0.1", "/", map[string]string{"E2b-Sandbox-Id": sb.ID}); resp.StatusCode != 400 || !strings.Contains(body, "missing header") {
		t.Errorf("one routing header: %d %q", resp.StatusCode, body)
	}
	// Nothing listens: the spec's 502 with the port.
	resp, body = f.get(t, fmt.Sprintf("%d-%s.%s", freePort(t, f.guestAddr(t, sb.ID)), sb.ID, servertest.Domain), "/", nil)
	var e map[string]any
	_ = json.Unmarshal([]byte(body), &e)
	if resp.StatusCode != 502 || e["message"] != "The sandbox is running but port is not open" || e["sandboxId"] != sb.ID {
		t.Errorf("closed port: %d %q", resp.StatusCode, body)
	}
	// envd's control-plane paths are never reachable.
	for _, p := range []string{"/init", "//init", "/./freeze", "/unfreeze"} {
		resp, body := f.get(t, "49983-"+sb.ID+"."+servertest.Domain, p, nil)
		if resp.StatusCode != 404 || !strings.Contains(body, `"code":404`) {
			t.Errorf("%s: %d %q", p, resp.StatusCode, body)
		}
	}
	// Unknown and destroyed sandboxes: 502 "not found"; a browser gets HTML.
	if resp, body := f.get(t, fmt.Sprintf("%d-sb0123456789abcdefgh.%s", port, servertest.Domain), "/", nil); resp.StatusCode != 502 || !strings.Contains(body, "The sandbox was not found") {
		t.Errorf("unknown sandbox: %d %q", resp.StatusCode, body)
	}
	if err := f.c.DestroySandbox(context.Background(), sb.ID); err != nil {
		t.Fatal(err)
	}
	resp, body = f.get(t, host, "/", map[string]string{"User-Agent": "Mozilla/5.0 (X11)"})
	if resp.StatusCode != 502 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, "not found") {
		t.Errorf("destroyed, browser: %d %s %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

// A paused sandbox answers 502, as E2B's proxy answers one (its SDKs read that as not
// running), saying it is paused and how to resume it; resumed, it is reached again.
func TestPausedSandbox(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	sb, err := f.c.CreateSandbox(ctx, client.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	envd := "49983-" + sb.ID + "." + servertest.Domain
	if resp, body := f.get(t, envd, "/health", nil); resp.StatusCode/100 != 2 {
		t.Fatalf("envd of the running sandbox: %d %q", resp.StatusCode, body)
	}
	if _, err := f.c.Pause(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	resp, body := f.get(t, envd, "/health", nil)
	var e map[string]any
	_ = json.Unmarshal([]byte(body), &e)
	if want := "The sandbox is paused; resume it first (POST /v1/sandboxes/" + sb.ID + "/resume)"; resp.StatusCode != 502 || e["message"] != want || e["sandboxId"] != sb.ID || e["code"] != float64(502) {
		t.Errorf("paused: %d %q", resp.StatusCode, body)
	}
	if resp, body := f.get(t, "127.0.0.1", "/health", map[string]string{"E2b-Sandbox-Id": sb.ID, "E2b-Sandbox-Port": "49983"}); resp.StatusCode != 502 || !strings.Contains(body, "paused") {
		t.Errorf("paused, by headers: %d %q", resp.StatusCode, body)
	}
	if _, err := f.c.Resume(ctx, sb.ID, 0); err != nil {
		t.Fatal(err)
	}
	if resp, body := f.get(t, envd, "/health", nil); resp.StatusCode/100 != 2 {
		t.Errorf("envd after the resume: %d %q", resp.StatusCode, body)
	}
}

// freePort is a port nothing listens on at addr.
func freePort(t *testing.T, addr netip.Addr) int {
	ln, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestPrivateTraffic(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	raw, err := json.Marshal(map[string]any{"allow_public_traffic": false})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", f.env.URL+"/v1/sandboxes", strings.NewReader(string(raw)))
	req.Header.Set("X-API-Key", f.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var sb struct {
		ID                 string `json:"id"`
		AllowPublicTraffic bool   `json:"allow_public_traffic"`
		TrafficAccessToken string `json:"traffic_access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&sb)
	resp.Body.Close()
	if resp.StatusCode != 201 || sb.AllowPublicTraffic || !strings.HasPrefix(sb.TrafficAccessToken, "wrt_") {
		t.Fatalf("create private: %d %+v", resp.StatusCode, sb)
	}
	if got, _ := f.c.GetSandbox(ctx, sb.ID); got == nil {
		t.Fatal("get")
	}
	port := f.guestService(t, sb.ID, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "secret data") }))
	host := fmt.Sprintf("%d-%s.%s", port, sb.ID, servertest.Domain)
	bob := f.env.NewTeam(t, "bob@example.com")
	for _, c := range []struct {
		name   string
		hdr    map[string]string
		status int
		msg    string
	}{
		{"no credentials", nil, 403, "Missing E2b-Traffic-Access-Token"},
		{"wrong token", map[string]string{"E2b-Traffic-Access-Token": "wrt_" + strings.Repeat("0", 64)}, 403, "Invalid E2b-Traffic-Access-Token"},
		{"another team's key", map[string]string{"X-API-Key": bob.Key}, 403, "Invalid X-API-Key"},
		{"traffic token", map[string]string{"E2b-Traffic-Access-Token": sb.TrafficAccessToken}, 200, "secret data"},
		{"team key", map[string]string{"X-API-Key": f.key}, 200, "secret data"},
	} {
		resp, body := f.get(t, host, "/", c.hdr)
		if resp.StatusCode != c.status || !strings.Contains(body, c.msg) {
			t.Errorf("%s: %d %q", c.name, resp.StatusCode, body)
		}
	}
	// envd's port is never gated (envd checks its own token).
	if resp, body := f.get(t, "49983-"+sb.ID+"."+servertest.Domain, "/health", nil); resp.StatusCode == 403 {
		t.Errorf("envd port gated: %q", body)
	}
	// The token is stored only as a hash.
	var n int
	if err := f.env.DB.QueryRow(ctx, `SELECT count(*) FROM sandboxes WHERE traffic_token_hash = sha256(convert_to($1, 'UTF8'))`, sb.TrafficAccessToken).Scan(&n); err != nil || n != 1 {
		t.Errorf("traffic token hash: %d %v", n, err)
	}
}

// Streams pass unbuffered, WebSockets work, and open connections end when the
// sandbox is destroyed.
func TestStreamingWebSocketAndTeardown(t *testing.T) {
	f := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sb, err := f.c.CreateSandbox(ctx, client.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	port := f.guestService(t, sb.ID, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ws":
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			for {
				typ, b, err := c.Read(r.Context())
				if err != nil {
					return
				}
				c.Write(r.Context(), typ, append([]byte("echo:"), b...))
			}
		case "/stream":
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: first\n\n")
			w.(http.Flusher).Flush()
			select { // the rest only after the client saw the first event
			case <-release:
			case <-r.Context().Done():
				return
			}
			fmt.Fprint(w, "data: second\n\n")
		case "/forever":
			for i := 0; ; i++ {
				if _, err := fmt.Fprintf(w, "tick %d\n", i); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-time.After(20 * time.Millisecond):
				case <-r.Context().Done():
					return
				}
			}
		}
	}))
	host := fmt.Sprintf("%d-%s.%s", port, sb.ID, servertest.Domain)

	req, _ := http.NewRequestWithContext(ctx, "GET", f.env.URL+"/stream", nil)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(resp.Body)
	if line, err := rd.ReadString('\n'); err != nil || line != "data: first\n" {
		t.Fatalf("first event before the stream ends: %q %v", line, err)
	}
	close(release)
	rest, _ := io.ReadAll(rd)
	resp.Body.Close()
	if !strings.Contains(string(rest), "data: second") {
		t.Errorf("rest of the stream: %q", rest)
	}

	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(f.env.URL, "http")+"/ws", &websocket.DialOptions{Host: host})
	if err != nil {
		t.Fatalf("websocket through the proxy: %v", err)
	}
	for _, m := range []string{"one", "two"} {
		if err := ws.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
			t.Fatal(err)
		}
		if _, b, err := ws.Read(ctx); err != nil || string(b) != "echo:"+m {
			t.Fatalf("echo: %q %v", b, err)
		}
	}

	req, _ = http.NewRequestWithContext(ctx, "GET", f.env.URL+"/forever", nil)
	req.Host = host
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rd = bufio.NewReader(resp.Body)
	if _, err := rd.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if err := f.c.DestroySandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, rd); done <- err }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Error("an open stream outlived its sandbox")
	}
	resp.Body.Close()
	if _, _, err := ws.Read(ctx); err == nil {
		t.Error("an open WebSocket outlived its sandbox")
	}
}

// Past the per-sandbox limit of concurrent proxied requests, the spec's 429; a slot
// frees when a request ends.
func TestConnectionLimit(t *testing.T) {
	f := setup(t)
	f.env.Proxy.SetConnLimit(2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sb, err := f.c.CreateSandbox(ctx, client.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	port := f.guestService(t, sb.ID, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			w.(http.Flusher).Flush()
			select {
			case <-hold:
			case <-r.Context().Done():
			}
			return
		}
		io.WriteString(w, "ok")
	}))
	host := fmt.Sprintf("%d-%s.%s", port, sb.ID, servertest.Domain)
	var open []*http.Response
	for range 2 {
		req, _ := http.NewRequestWithContext(ctx, "GET", f.env.URL+"/hold", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, resp)
	}
	resp, body := f.get(t, host, "/", nil)
	if resp.StatusCode != 429 || !strings.Contains(body, `"connectionLimit":2`) {
		t.Errorf("third concurrent request: %d %q", resp.StatusCode, body)
	}
	close(hold)
	for _, r := range open {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, body := f.get(t, host, "/", nil)
		if resp.StatusCode == 200 && body == "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the held requests ended: %d %q", resp.StatusCode, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The guest sees the client's address and scheme (not the control plane's, nor the
// scheme of the hop between control plane and agent), and a path whose dot segments
// are resolved as a browser would: never a redirect that shows the agent's own route.
func TestGuestSeesClientAndResolvedPath(t *testing.T) {
	f := setup(t)
	sb, err := f.c.CreateSandbox(context.Background(), client.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	port := f.guestService(t, sb.ID, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "path=%s for=%s proto=%s", r.URL.EscapedPath(), r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"))
	}))
	// The client comes from 127.0.0.2; the control plane reaches the agent from 127.0.0.1.
	c := &http.Client{
		Transport:     &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	host := fmt.Sprintf("%d-%s.%s", port, sb.ID, servertest.Domain)
	for _, tc := range []struct{ path, want string }{
		{"/a/../b/./c", "/b/c"},
		{"/x/%2e%2E/y", "/y"},
		{"/../../etc", "/etc"},
		{"/d/..", "/"},
		{"/keep//double/slash", "/keep//double/slash"},
		{"/file.tar.gz", "/file.tar.gz"},
	} {
		req, _ := http.NewRequest("GET", f.env.URL+tc.path, nil)
		req.Host = host
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := fmt.Sprintf("path=%s for=127.0.0.2 proto=http", tc.want)
		if resp.StatusCode != 200 || string(b) != want {
			t.Errorf("%s: %d %q (Location %q), want 200 %q", tc.path, resp.StatusCode, b, resp.Header.Get("Location"), want)
		}
	}
}
