package files

import (
	"bytes"
	"crypto/rand"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"testing"

	"github.com/wrennhq/wrenn/internal/envd/state"
)

const benchPayload = 64 << 20

// benchServer is a Handler over loopback acting as the current user, with a scratch dir.
func benchServer(b *testing.B) (*httptest.Server, string, *http.Client) {
	b.Helper()
	st := state.New()
	if os.Getuid() != 0 {
		cur, err := user.Current()
		if err != nil {
			b.Fatal(err)
		}
		st.SetDefaultUser(cur.Username)
	}
	srv := httptest.NewServer(New(st, nil))
	b.Cleanup(srv.Close)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	b.Cleanup(client.CloseIdleConnections)
	return srv, b.TempDir(), client
}

func randomPayload(b *testing.B) []byte {
	b.Helper()
	data := make([]byte, benchPayload)
	_, _ = rand.Read(data) // incompressible, like most large uploads
	return data
}

func BenchmarkUpload(b *testing.B) {
	data := randomPayload(b)

	b.Run("octet-stream", func(b *testing.B) {
		srv, dir, client := benchServer(b)
		u := srv.URL + "/files?path=" + url.QueryEscape(filepath.Join(dir, "up.bin"))
		b.SetBytes(int64(len(data)))
		b.ResetTimer()
		for b.Loop() {
			benchPost(b, client, u, "application/octet-stream", data)
		}
	})

	b.Run("multipart", func(b *testing.B) {
		srv, dir, client := benchServer(b)
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		w, _ := mw.CreateFormFile("file", filepath.Join(dir, "up.bin"))
		_, _ = w.Write(data)
		_ = mw.Close()
		b.SetBytes(int64(len(data)))
		b.ResetTimer()
		for b.Loop() {
			benchPost(b, client, srv.URL+"/files", mw.FormDataContentType(), body.Bytes())
		}
	})
}

func benchPost(b *testing.B, client *http.Client, u, contentType string, body []byte) {
	req, err := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

func BenchmarkDownload(b *testing.B) {
	data := randomPayload(b)
	for _, enc := range []string{"identity", "gzip"} {
		b.Run(enc, func(b *testing.B) {
			srv, dir, client := benchServer(b)
			p := filepath.Join(dir, "down.bin")
			if err := os.WriteFile(p, data, 0o644); err != nil {
				b.Fatal(err)
			}
			u := srv.URL + "/files?path=" + url.QueryEscape(p)
			buf := make([]byte, 256<<10)
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodGet, u, nil)
				req.Header.Set("Accept-Encoding", enc)
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				drain(resp.Body, buf)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}

// drain reads r to the end with buf. io.Copy(io.Discard, r) would read 8 KiB at a
// time and make the benchmark measure the client's syscalls rather than the server;
// real clients (undici, httpx) read in larger chunks.
func drain(r io.Reader, buf []byte) {
	for {
		if _, err := r.Read(buf); err != nil {
			return
		}
	}
}
