package httplimit_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/httplimit"
)

var short = httplimit.Limits{
	ReadHeader: time.Second, MaxHeaderBytes: 4 << 10, Idle: time.Second,
	Body: 200 * time.Millisecond, StreamIdle: 300 * time.Millisecond,
}

// start serves h, streamed or not, as a Wrenn listener does, over HTTP/1 and h2c.
func start(t *testing.T, h http.Handler) (*httptest.Server, *http.Client) {
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = short.Server(h)
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = &p
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, srv.Client()
}

// readAll answers 200 with the size read, or 408 when the read deadline passed.
var readAll = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, r.Body)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		w.WriteHeader(http.StatusRequestTimeout)
		return
	}
	w.Write([]byte{byte(n >> 10)})
})

// trickle writes chunks KiB with pause after each, then stalls for stall before the end.
func trickle(w *io.PipeWriter, chunks int, pause, stall time.Duration) {
	for range chunks {
		w.Write(make([]byte, 1<<10))
		time.Sleep(pause)
	}
	time.Sleep(stall)
	w.Close()
}

func post(t *testing.T, c *http.Client, url string, h2 bool, body io.Reader) int {
	req, _ := http.NewRequest("POST", url, body)
	if h2 {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		c = &http.Client{Transport: &http.Transport{Protocols: &p}}
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0 // the server closed the connection
	}
	defer resp.Body.Close()
	if resp.StatusCode == 200 {
		b, _ := io.ReadAll(resp.Body)
		if len(b) != 1 || b[0] != 8 {
			t.Errorf("read %v KiB, want 8", b)
		}
	}
	return resp.StatusCode
}

func TestStreamedBodies(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		srv, c := start(t, httplimit.Streamed(short.StreamIdle, readAll))
		// 8 KiB over 8 x 100 ms: longer than Body, no pause as long as StreamIdle.
		r, w := io.Pipe()
		go trickle(w, 8, 100*time.Millisecond, 0)
		if got := post(t, c, srv.URL, h2, r); got != 200 {
			t.Errorf("h2 %v: a progressing stream got %d", h2, got)
		}
		// One chunk, then a stall past StreamIdle.
		r, w = io.Pipe()
		go trickle(w, 1, 0, 2*time.Second)
		t0 := time.Now()
		if got := post(t, c, srv.URL, h2, r); got == 200 || time.Since(t0) > time.Second {
			t.Errorf("h2 %v: a stalled stream got %d after %v", h2, got, time.Since(t0))
		}
	}
}

func TestOrdinaryBodiesHaveTheWholeRequestDeadline(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		srv, c := start(t, readAll)
		r, w := io.Pipe()
		go trickle(w, 8, 100*time.Millisecond, 0)
		t0 := time.Now()
		if got := post(t, c, srv.URL, h2, r); got == 200 || time.Since(t0) > time.Second {
			t.Errorf("h2 %v: an ordinary body slower than Body got %d after %v", h2, got, time.Since(t0))
		}
	}
}
