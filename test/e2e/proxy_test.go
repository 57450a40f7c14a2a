package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wrennhq/wrenn/pkg/client"
)

// proxyDomain is the control plane's WRENN_DOMAIN in these tests.
const proxyDomain = "wrenn.test"

// proxyGuestPy runs in the guest (one process: python starts slowly under TCG): the
// files of /tmp/www on 0.0.0.0:8000 and on 127.0.0.1:8001 only; a WebSocket echo on
// 0.0.0.0:8002 written on raw sockets (the image has no websockets package); on
// 0.0.0.0:8003 an HTTP server whose /slow writes a line, flushes, sleeps 3 s and writes
// another, and whose /long writes a line every half second for 60 s.
const proxyGuestPy = `import base64, functools, hashlib, socketserver, struct, sys, threading, time
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

class WS(socketserver.StreamRequestHandler):
    def send(self, op, data):
        n = len(data)
        if n < 126:
            hdr = bytes([0x80 | op, n])
        elif n < 65536:
            hdr = bytes([0x80 | op, 126]) + struct.pack(">H", n)
        else:
            hdr = bytes([0x80 | op, 127]) + struct.pack(">Q", n)
        self.request.sendall(hdr + data)  # server frames are never masked

    def readn(self, n):
        b = self.rfile.read(n)
        if len(b) != n:
            raise EOFError
        return b

    def handle(self):
        key = None
        self.rfile.readline()  # request line
        while True:
            line = self.rfile.readline()
            if line in (b"", b"\r\n", b"\n"):
                break
            k, _, v = line.decode("latin-1").partition(":")
            if k.strip().lower() == "sec-websocket-key":
                key = v.strip()
        if key is None:
            self.request.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        self.request.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n").encode())
        try:
            while True:
                b0, b1 = self.readn(2)
                op, n = b0 & 0x0F, b1 & 0x7F
                if n == 126:
                    n = struct.unpack(">H", self.readn(2))[0]
                elif n == 127:
                    n = struct.unpack(">Q", self.readn(8))[0]
                mask = self.readn(4) if b1 & 0x80 else b"\0\0\0\0"
                raw = self.readn(n)
                data = bytes(c ^ mask[i % 4] for i, c in enumerate(raw))
                if op == 8:  # close: answer with the same status
                    self.send(8, data[:2])
                    return
                if op == 9:
                    self.send(10, data)
                elif op in (1, 2):
                    self.send(op, b"echo:" + data)
        except (EOFError, ConnectionError):
            pass

class WSServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

class Stream(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        if self.path == "/slow":
            lines, pause = [b"first\n", b"second\n"], 3
        elif self.path == "/long":
            lines, pause = [b"tick %d\n" % i for i in range(120)], 0.5
        else:
            lines, pause = [b"hello\n"], 0
        for i, line in enumerate(lines):
            if i:
                time.sleep(pause)
            self.wfile.write(line)
            self.wfile.flush()

    def log_message(self, *a):
        pass

def serve(srv):
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()

files = functools.partial(SimpleHTTPRequestHandler, directory="/tmp/www")
serve(ThreadingHTTPServer(("0.0.0.0", 8000), files))
serve(ThreadingHTTPServer(("127.0.0.1", 8001), files))  # loopback only: envd forwards it
serve(WSServer(("0.0.0.0", 8002), WS))
st = ThreadingHTTPServer(("0.0.0.0", 8003), Stream)
st.daemon_threads = True
st.serve_forever()
`

// proxyFixture is a control plane with WRENN_DOMAIN, one registered agent and a team
// with an API key.
type proxyFixture struct {
	base string
	key  string
	c    *client.Client
}

func newProxyFixture(t *testing.T) proxyFixture {
	t.Helper()
	needVM(t)
	cp := startServer(t, "", "WRENN_DOMAIN="+proxyDomain)
	cp.addAgent(t, cp.admin(t), agentOpts{})
	ctx := context.Background()
	s, err := client.New(cp.base).Signup(ctx, "proxy@example.com", "", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	k, err := client.New(cp.base, client.WithToken(s.Token)).CreateAPIKey(ctx, "proxy")
	if err != nil {
		t.Fatal(err)
	}
	return proxyFixture{base: cp.base, key: k.Key, c: client.New(cp.base, client.WithAPIKey(k.Key))}
}

// sandboxHost is the proxy's host name of port of sandbox id.
func sandboxHost(port int, id string) string { return fmt.Sprintf("%d-%s.%s", port, id, proxyDomain) }

// proxyGet sends GET path to the control plane with the given Host ("" = the URL's)
// and headers, and returns the status and body.
func (f proxyFixture) proxyGet(t *testing.T, host, path string, hdr map[string]string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.base+path, nil)
	if host != "" {
		req.Host = host
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s%s: %v", host, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// run runs a bash script in the sandbox and fails the test unless it exits 0.
func (f proxyFixture) run(t *testing.T, id, script string) string {
	t.Helper()
	res, err := f.c.Exec(context.Background(), id, "/bin/bash", []string{"-c", script}, 60*time.Second)
	if err != nil {
		t.Fatalf("exec %q: %v", script, err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("exec %q: exit %d\nstdout: %s\nstderr: %s", script, res.ExitCode, res.Stdout, res.Stderr)
	}
	return string(res.Stdout)
}

// waitListening waits (in the guest) until something accepts on 127.0.0.1:port for
// each port — a listener on 0.0.0.0 accepts there too.
func (f proxyFixture) waitListening(t *testing.T, id string, ports ...int) {
	t.Helper()
	var checks []string
	for _, p := range ports {
		checks = append(checks, fmt.Sprintf("(exec 3<>/dev/tcp/127.0.0.1/%d) 2>/dev/null", p))
	}
	script := fmt.Sprintf(`for i in $(seq 300); do if %s; then exit 0; fi; sleep 0.1; done; echo "not listening" >&2; tail -n 20 /tmp/srv-*.log >&2; exit 1`,
		strings.Join(checks, " && "))
	f.run(t, id, script)
}

// The port proxy end to end, through `wrenn server` and a registered agent to real
// sandboxes (one at a time: a public one, then a private one).
func TestPortProxy(t *testing.T) {
	began := time.Now()
	f := newProxyFixture(t)
	t.Logf("control plane and agent up after %v", time.Since(began).Round(time.Millisecond))
	t.Run("public", func(t *testing.T) { testProxyPublic(t, f) })
	t.Run("private", func(t *testing.T) { testProxyPrivate(t, f) })
}

// A public sandbox's services by host name and by E2B's routing headers — a plain file
// server, a loopback-only server reached thanks to envd's port forwarder, a WebSocket
// echo, unbuffered streaming, envd's own port — and every open connection cut when
// the sandbox is destroyed. (Pause does not exist yet, so only destroy is tested for
// the "paused or killed" cases of the spec.)
func testProxyPublic(t *testing.T, f proxyFixture) {
	began := time.Now()
	phase := func(what string) { t.Logf("%6.2fs %s", time.Since(began).Seconds(), what) }
	ctx := context.Background()
	sb, err := f.c.CreateSandbox(ctx, client.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	id := sb.ID
	phase("sandbox running")
	t.Cleanup(func() { _ = f.c.DestroySandbox(context.Background(), id) })

	content := make([]byte, 16)
	rand.Read(content)
	file := "wrenn proxy " + hex.EncodeToString(content) + "\n"
	if err := f.c.WriteFile(ctx, id, "/tmp/www/hello.txt", strings.NewReader(file)); err != nil {
		t.Fatal(err)
	}
	if err := f.c.WriteFile(ctx, id, "/tmp/proxy_guest.py", strings.NewReader(proxyGuestPy)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	f.run(t, id, `setsid -f python3 /tmp/proxy_guest.py >/tmp/srv-guest.log 2>&1 </dev/null`)
	f.waitListening(t, id, 8000, 8001, 8002, 8003)
	phase(fmt.Sprintf("guest servers listening (%v after they were started)", time.Since(start).Round(time.Millisecond)))

	// 0.0.0.0:8000 by host name.
	if status, body := f.proxyGet(t, sandboxHost(8000, id), "/hello.txt", nil); status != 200 || body != file {
		t.Errorf("GET 8000/hello.txt: %d %q, want 200 %q", status, body, file)
	}

	// 127.0.0.1:8001 only: reachable once envd's forwarder (a scan a second) opened
	// the guest's external address.
	listening := time.Now()
	for {
		status, body := f.proxyGet(t, sandboxHost(8001, id), "/hello.txt", nil)
		if status == 200 && body == file {
			t.Logf("loopback-only server reachable %v after it listened", time.Since(listening).Round(time.Millisecond))
			break
		}
		if time.Since(listening) > 5*time.Second {
			t.Fatalf("loopback-only server on 8001 not reachable within 5 s: %d %q", status, body)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Header routing (E2B_SANDBOX_URL deployments): Host is the control plane's IP.
	if status, body := f.proxyGet(t, "", "/hello.txt", map[string]string{"E2b-Sandbox-Id": id, "E2b-Sandbox-Port": "8001"}); status != 200 || body != file {
		t.Errorf("header routing to 8001: %d %q", status, body)
	}
	if status, body := f.proxyGet(t, "127.0.0.1", "/hello.txt", map[string]string{"E2b-Sandbox-Id": id, "E2b-Sandbox-Port": "8000"}); status != 200 || body != file {
		t.Errorf("header routing to 8000 (Host 127.0.0.1): %d %q", status, body)
	}

	phase("plain HTTP checked")
	// WebSocket echo through both proxies.
	wsCtx, wsCancel := context.WithTimeout(ctx, 30*time.Second)
	ws, _, err := websocket.Dial(wsCtx, "ws"+strings.TrimPrefix(f.base, "http")+"/echo", &websocket.DialOptions{Host: sandboxHost(8002, id)})
	if err != nil {
		t.Fatalf("websocket dial: %v", err)
	}
	ws.SetReadLimit(1 << 20)
	if err := ws.Write(wsCtx, websocket.MessageText, []byte("hello wrenn")); err != nil {
		t.Fatal(err)
	}
	if typ, got, err := ws.Read(wsCtx); err != nil || typ != websocket.MessageText || string(got) != "echo:hello wrenn" {
		t.Errorf("websocket text echo: %v %q %v", typ, got, err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1250) // 20 kB: a 16-bit length
	if err := ws.Write(wsCtx, websocket.MessageBinary, big); err != nil {
		t.Fatal(err)
	}
	if typ, got, err := ws.Read(wsCtx); err != nil || typ != websocket.MessageBinary || !bytes.Equal(got, append([]byte("echo:"), big...)) {
		t.Errorf("websocket binary echo: %v %d bytes %v", typ, len(got), err)
	}
	if err := ws.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("websocket close: %v", err)
	}
	wsCancel()
	phase("WebSocket checked")

	// Streaming, not buffered: the first line arrives long before the second is written.
	req, _ := http.NewRequest("GET", f.base+"/slow", nil)
	req.Host = sandboxHost(8003, id)
	sent := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadString('\n')
	firstAfter := time.Since(sent)
	rest, _ := io.ReadAll(br)
	allAfter := time.Since(sent)
	resp.Body.Close()
	t.Logf("streaming: first line after %v, the rest after %v", firstAfter.Round(time.Millisecond), allAfter.Round(time.Millisecond))
	if resp.StatusCode != 200 || err != nil || first != "first\n" || string(rest) != "second\n" {
		t.Errorf("stream: %d %q %q %v", resp.StatusCode, first, rest, err)
	}
	if firstAfter > 1500*time.Millisecond {
		t.Errorf("first line after %v: the response was buffered (the server waits 3 s before the second)", firstAfter)
	}
	if allAfter < 2900*time.Millisecond {
		t.Errorf("whole response after %v, before the server's 3 s pause ended", allAfter)
	}

	// envd's port: control-plane paths are refused, /health is what SDKs probe.
	if status, body := f.proxyGet(t, sandboxHost(49983, id), "/init", nil); status != 404 || !strings.Contains(body, `"code":404`) {
		t.Errorf("envd /init through the proxy: %d %q", status, body)
	}
	if status, body := f.proxyGet(t, sandboxHost(49983, id), "/health", nil); status != 204 {
		t.Errorf("envd /health through the proxy: %d %q", status, body)
	}

	// Bad host names.
	for _, c := range []struct{ host, want string }{
		{"abc-" + id + "." + proxyDomain, "Invalid sandbox port"},
		{"3000-BAD_ID." + proxyDomain, "Invalid sandbox ID"},
	} {
		if status, body := f.proxyGet(t, c.host, "/", nil); status != 400 || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %q, want 400 %q", c.host, status, body, c.want)
		}
	}

	phase("streaming, envd and bad hosts checked")
	// Destroy: an open 60 s stream ends within seconds, then the proxy answers 502.
	req, _ = http.NewRequest("GET", f.base+"/long", nil)
	req.Host = sandboxHost(8003, id)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br = bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "tick 0\n" {
		t.Fatalf("long stream: %d %q %v", resp.StatusCode, line, err)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, br)
		ended <- err
	}()
	deleted := time.Now()
	if err := f.c.DestroySandbox(ctx, id); err != nil {
		t.Fatal(err)
	}
	destroyTook := time.Since(deleted)
	select {
	case err := <-ended:
		t.Logf("open stream ended %v after DELETE was sent (DELETE took %v): %v",
			time.Since(deleted).Round(time.Millisecond), destroyTook.Round(time.Millisecond), err)
		if err == nil {
			t.Errorf("the cut stream ended like a complete response (no error): a client cannot tell it from the end")
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("open stream still running 5 s after DELETE returned (took %v)", destroyTook)
	}
	status, body := f.proxyGet(t, sandboxHost(8000, id), "/hello.txt", nil)
	var e map[string]any
	_ = json.Unmarshal([]byte(body), &e)
	if status != 502 || e["message"] != "The sandbox was not found" || e["sandboxId"] != id {
		t.Errorf("after destroy: %d %q", status, body)
	}
	phase("destroy checked")
}

// A private sandbox (allow_public_traffic false): its ports need the traffic token or
// an API key of its team; envd's port is not gated (envd has its own token).
func testProxyPrivate(t *testing.T, f proxyFixture) {
	ctx := context.Background()
	status, sb := rest(t, "POST", f.base+"/v1/sandboxes", f.key, `{"allow_public_traffic":false}`)
	if status != 201 {
		t.Fatalf("create private sandbox: %d %v", status, sb)
	}
	id, _ := sb["id"].(string)
	t.Cleanup(func() { _ = f.c.DestroySandbox(context.Background(), id) })
	token, _ := sb["traffic_access_token"].(string)
	if sb["allow_public_traffic"] != false || token == "" {
		t.Fatalf("private sandbox: %v", sb)
	}
	if err := f.c.WriteFile(ctx, id, "/tmp/www/secret.txt", strings.NewReader("private data\n")); err != nil {
		t.Fatal(err)
	}
	f.run(t, id, `cd /tmp/www && setsid -f python3 -m http.server 8000 --bind 0.0.0.0 >/tmp/srv-8000.log 2>&1 </dev/null`)
	f.waitListening(t, id, 8000)

	other, err := client.New(f.base).Signup(ctx, "other@example.com", "", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := client.New(f.base, client.WithToken(other.Token)).CreateAPIKey(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	host := sandboxHost(8000, id)
	for _, c := range []struct {
		name   string
		hdr    map[string]string
		status int
		want   string
	}{
		{"no credentials", nil, 403, "Missing E2b-Traffic-Access-Token"},
		{"another team's API key", map[string]string{"X-API-Key": otherKey.Key}, 403, "Invalid X-API-Key"},
		{"a wrong token", map[string]string{"E2b-Traffic-Access-Token": token + "0"}, 403, "Invalid E2b-Traffic-Access-Token"},
		{"the traffic token", map[string]string{"E2b-Traffic-Access-Token": token}, 200, "private data\n"},
		{"the team's API key", map[string]string{"X-API-Key": f.key}, 200, "private data\n"},
	} {
		status, body := f.proxyGet(t, host, "/secret.txt", c.hdr)
		if status != c.status || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %q, want %d %q", c.name, status, body, c.status, c.want)
		}
	}
	// The same refusal by header routing.
	if status, body := f.proxyGet(t, "", "/secret.txt", map[string]string{"E2b-Sandbox-Id": id, "E2b-Sandbox-Port": "8000"}); status != 403 {
		t.Errorf("header routing without credentials: %d %q", status, body)
	}
	if status, body := f.proxyGet(t, sandboxHost(49983, id), "/health", nil); status != 204 {
		t.Errorf("envd /health of a private sandbox without credentials: %d %q", status, body)
	}
}
