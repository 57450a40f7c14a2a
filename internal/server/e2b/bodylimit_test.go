package e2b_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/wrennhq/wrenn/internal/server/servertest"
)

// TestEveryBodyIsBounded: every E2B route that reads a body refuses one a byte over
// 1 MiB with E2B's 413 and a message, even sent chunked; one of exactly 1 MiB is read.
func TestEveryBodyIsBounded(t *testing.T) {
	env := servertest.New(t)
	key := env.NewTeam(t, "bounded@example.com").Key
	id := newCaller(t, env.URL, key).create(`{"templateID":"base"}`)["sandboxID"].(string)
	const limit = 1 << 20
	body := func(n int) string { return `{"x":"` + strings.Repeat("a", n-8) + `"}` }
	send := func(method, path, b string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, env.URL+path, io.MultiReader(strings.NewReader(b))) // chunked
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-API-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		var out struct {
			Message string `json:"message"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out.Message
	}
	for _, path := range []string{
		"/sandboxes", "/v2/sandboxes",
		"/sandboxes/" + id + "/timeout", "/sandboxes/" + id + "/refreshes",
		"/sandboxes/" + id + "/pause", "/sandboxes/" + id + "/resume",
		"/sandboxes/" + id + "/connect", "/v2/sandboxes/" + id + "/connect",
	} {
		if status, msg := send("POST", path, body(limit+1)); status != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "larger than 1048576 bytes") {
			t.Errorf("POST %s with 1 MiB + 1 byte: %d %q, want 413 saying so", path, status, msg)
		}
		if status, msg := send("POST", path, body(limit)); status == http.StatusRequestEntityTooLarge {
			t.Errorf("POST %s with 1 MiB: %d %q, want it read", path, status, msg)
		}
	}
}
