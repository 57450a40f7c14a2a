package api_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/wrennhq/wrenn/internal/httplimit"
	"github.com/wrennhq/wrenn/internal/server/servertest"
)

// short are limits a test can wait out; httplimit.ControlPlane has the same shape.
var short = httplimit.Limits{
	ReadHeader: 300 * time.Millisecond, MaxHeaderBytes: 64 << 10, Idle: time.Minute,
	Body: 300 * time.Millisecond, StreamIdle: 500 * time.Millisecond,
}

func limitsEnv(t *testing.T) *servertest.Env { return servertest.NewWithLimits(t, short) }

// dial opens a raw connection to env's API and writes head and body as they are, so a
// test can declare one body and send another.
func dial(t *testing.T, env *servertest.Env, head string, body []byte) net.Conn {
	t.Helper()
	u, _ := url.Parse(env.URL)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(body); err != nil {
		t.Fatal(err)
	}
	return conn
}

// answer waits up to within for the server to answer or close conn, and says which.
func answer(t *testing.T, conn net.Conn, within time.Duration) (resp *http.Response, closed bool, took time.Duration) {
	t.Helper()
	start := time.Now()
	conn.SetReadDeadline(start.Add(within))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	took = time.Since(start)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("no answer and not closed after %v", took)
	}
	return resp, err != nil, took
}

func TestHugeDeclaredBodyIsRefusedAtOnce(t *testing.T) {
	env := limitsEnv(t)
	conn := dial(t, env, "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000000000\r\n\r\n", []byte("{"))
	resp, closed, took := answer(t, conn, 3*time.Second)
	if closed || resp.StatusCode != http.StatusRequestEntityTooLarge || took > time.Second {
		t.Fatalf("got %v (closed %v) after %v, want 413 at once", resp, closed, took)
	}
	if b, _ := io.ReadAll(resp.Body); !bytes.Contains(b, []byte(`"too_large"`)) {
		t.Errorf("body %q is not the API's JSON error", b)
	}
	t.Logf("413 after %v", took)
}

func TestStalledBodyIsCutOff(t *testing.T) {
	env := limitsEnv(t)
	conn := dial(t, env, "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n", []byte(`{"email":`))
	resp, closed, took := answer(t, conn, 3*time.Second)
	if closed || resp.StatusCode != http.StatusRequestTimeout || took > short.Body+time.Second {
		t.Fatalf("got %v (closed %v) after %v, want 408 after about %v", resp, closed, took, short.Body)
	}
	if b, _ := io.ReadAll(resp.Body); !bytes.Contains(b, []byte(`"timeout"`)) {
		t.Errorf("body %q is not the API's JSON error", b)
	}
	t.Logf("408 after %v", took)
}

func TestSlowHeaderIsCutOff(t *testing.T) {
	env := limitsEnv(t)
	conn := dial(t, env, "GET /healthz HT", nil)
	// net/http answers a header it gave up on with a plain 400 and closes.
	resp, closed, took := answer(t, conn, 3*time.Second)
	if !closed && resp.StatusCode != http.StatusBadRequest || took > short.ReadHeader+time.Second {
		t.Fatalf("got %v (closed %v) after %v, want 400 or closed after about %v", resp, closed, took, short.ReadHeader)
	}
	if !closed {
		if _, err := conn.Read(make([]byte, 1)); err == nil {
			t.Error("the connection stays open after the answer")
		}
	}
	t.Logf("answered and closed after %v", took)
}

// uploadHead starts a raw upload of size bytes to a new sandbox of a new user.
func uploadHead(t *testing.T, env *servertest.Env, size int) string {
	anon := newCall(t, env)
	ann := signup(anon, "ann@example.com")
	annC := anon.bearer(ann["token"].(string))
	status, sb := annC.do("POST", "/v1/sandboxes", `{"template":"base"}`)
	if status != 201 {
		t.Fatalf("create: %d %v", status, sb)
	}
	return fmt.Sprintf("POST /v1/sandboxes/%s/files/write?path=/home/user/big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
		sb["id"], ann["token"], size)
}

func TestSlowButProgressingUploadWorks(t *testing.T) {
	env := limitsEnv(t)
	const chunk, chunks = 64 << 10, 16
	conn := dial(t, env, uploadHead(t, env, chunk*chunks), nil)
	// Each pause is shorter than the stream idle limit; all of them together are longer
	// than the whole-body limit of ordinary requests.
	for range chunks {
		if _, err := conn.Write(bytes.Repeat([]byte("x"), chunk)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	resp, closed, _ := answer(t, conn, 10*time.Second)
	if closed || resp.StatusCode != 200 {
		t.Fatalf("upload: %v (closed %v)", resp, closed)
	}
	if b, _ := io.ReadAll(resp.Body); !strings.Contains(string(b), fmt.Sprintf(`"size":%d`, chunk*chunks)) {
		t.Errorf("upload answered %s", b)
	}
}

func TestStalledUploadIsCutOff(t *testing.T) {
	env := limitsEnv(t)
	conn := dial(t, env, uploadHead(t, env, 1<<20), bytes.Repeat([]byte("x"), 1000))
	resp, closed, took := answer(t, conn, 5*time.Second)
	if closed || resp.StatusCode != http.StatusRequestTimeout || took > short.StreamIdle+2*time.Second {
		t.Fatalf("got %v (closed %v) after %v, want 408 after about %v", resp, closed, took, short.StreamIdle)
	}
	t.Logf("408 after %v", took)
}

// An exec stream's client that stops answering pings is cut off after StreamIdle.
func TestSilentStreamClientIsCutOff(t *testing.T) {
	env := limitsEnv(t)
	annC, id := newUserSandbox(t, env)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(env.URL, "http")+"/v1/sandboxes/"+id+"/exec/stream",
		&websocket.DialOptions{HTTPHeader: annC.header})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	if err := conn.Write(ctx, websocket.MessageText, []byte(`{"cmd":"sleep","args":["30"]}`)); err != nil {
		t.Fatal(err)
	}
	// Not reading leaves the server's pings unanswered.
	time.Sleep(3 * short.StreamIdle)
	readCtx, readCancel := context.WithTimeout(ctx, 2*time.Second)
	defer readCancel()
	for {
		if _, _, err := conn.Read(readCtx); err != nil {
			if readCtx.Err() != nil {
				t.Fatal("the stream is still open after its client was silent for 3 x StreamIdle")
			}
			return
		}
	}
}
