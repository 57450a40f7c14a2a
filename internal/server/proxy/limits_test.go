package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/httplimit"
	"github.com/wrennhq/wrenn/internal/server/servertest"
	"github.com/wrennhq/wrenn/pkg/client"
)

// Proxied bodies stream: no JSON size limit and no whole-request deadline, but a
// client that stops sending is cut off after StreamIdle.
func TestProxiedBodiesStreamAndStallsEnd(t *testing.T) {
	lim := httplimit.Limits{ReadHeader: time.Second, MaxHeaderBytes: 64 << 10, Idle: time.Minute,
		Body: 300 * time.Millisecond, StreamIdle: 500 * time.Millisecond}
	env := servertest.NewWithLimits(t, lim)
	ann := env.NewTeam(t, "ann@example.com")
	f := fixture{env: env, c: ann.Client, key: ann.Key}
	sb, err := f.c.CreateSandbox(context.Background(), client.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	port := f.guestService(t, sb.ID, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "read %d %v", n, err)
	}))
	const chunk, chunks = 256 << 10, 8 // 2 MiB: twice the API's JSON limit
	send := func(stallAfter int) (string, time.Duration) {
		u, _ := url.Parse(env.URL)
		conn, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: %d-%s.%s\r\nX-API-Key: %s\r\nContent-Length: %d\r\n\r\n",
			port, sb.ID, servertest.Domain, f.key, chunk*chunks)
		for range stallAfter {
			conn.Write(bytes.Repeat([]byte("x"), chunk))
			time.Sleep(100 * time.Millisecond)
		}
		start := time.Now()
		conn.SetReadDeadline(start.Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("no answer and not closed after 5s")
		}
		if err != nil {
			return "closed", time.Since(start)
		}
		b, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d %s", resp.StatusCode, b), time.Since(start)
	}
	if got, _ := send(chunks); got != fmt.Sprintf("200 read %d <nil>", chunk*chunks) {
		t.Errorf("a progressing 2 MiB body through the proxy: %s", got)
	}
	got, took := send(1)
	if took > lim.StreamIdle+2*time.Second {
		t.Errorf("a stalled body through the proxy answered %s after %v", got, took)
	}
	t.Logf("stalled body: %s after %v", got, took)
}
