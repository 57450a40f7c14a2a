package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/wrennhq/wrenn/internal/openapitest"
	"github.com/wrennhq/wrenn/internal/server/servertest"
	"github.com/wrennhq/wrenn/pkg/client"
)

// jsonRoute is a documented operation that takes a JSON body.
type jsonRoute struct{ method, path string }

// jsonRoutes lists every operation in api/openapi.yaml with a JSON request body, so a
// new route is fuzzed without anyone adding it here. Exec is left out: in this
// package's test setup its "VMs" are envd processes on this machine, and a mutated
// body could run any command on it.
func jsonRoutes(tb testing.TB) []jsonRoute {
	raw, err := os.ReadFile("../../../api/openapi.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		tb.Fatal(err)
	}
	var out []jsonRoute
	for path, ops := range doc.Paths {
		for method, node := range ops {
			if method == "parameters" {
				continue
			}
			var op struct {
				RequestBody struct {
					Content map[string]any `yaml:"content"`
				} `yaml:"requestBody"`
			}
			if err := node.Decode(&op); err != nil {
				tb.Fatalf("%s %s: %v", method, path, err)
			}
			if _, ok := op.RequestBody.Content["application/json"]; ok && !strings.HasSuffix(path, "/exec") {
				out = append(out, jsonRoute{strings.ToUpper(method), path})
			}
		}
	}
	slices.SortFunc(out, func(a, b jsonRoute) int { return strings.Compare(a.path+a.method, b.path+b.method) })
	if len(out) < 15 {
		tb.Fatalf("only %d JSON routes found in api/openapi.yaml", len(out))
	}
	return out
}

// FuzzJSONBodies sends hostile JSON bodies to every documented route that takes one,
// as a signed-in team owner with a running sandbox, against the real control plane
// on PostgreSQL and Redis. Property: never a 5xx, and every answer (a 4xx included)
// is what api/openapi.yaml documents for the route, which means a 4xx carries the
// error shape with a message.
func FuzzJSONBodies(f *testing.F) {
	routes := jsonRoutes(f)
	env := servertest.New(f)
	team := env.NewTeam(f, "fuzz@example.com")
	sb, err := team.Client.CreateSandbox(context.Background(), client.CreateSandboxRequest{Template: "base"})
	if err != nil {
		f.Fatal(err)
	}
	ids := strings.NewReplacer("/v1/sandboxes/{id}", "/v1/sandboxes/"+sb.ID, "{id}", team.Session.TeamID, "{user_id}", team.Session.UserID)
	seeds := []string{"", "{}", "null", "[]", "{", `"x"`, "1e999", `{"name":1}`, `{"name":"\u0000"}`,
		`{"template":"../../etc"}`, `{"email":"a@b.c","role":"owner"}`, `{"vcpus":-1,"memory_mb":1e12}`,
		`{"timeout":-5}`, `{"name":"` + strings.Repeat("é", 300) + `"}`, strings.Repeat("[", 10000)}
	for i := range routes {
		for _, s := range seeds {
			f.Add(uint8(i), []byte(s))
		}
	}
	bearer := "Bearer " + team.Session.Token
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		r := routes[int(which)%len(routes)]
		req, err := http.NewRequest(r.method, env.URL+ids.Replace(r.path), bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", bearer)
		// A deadline far above any honest answer: a request that outlives it hangs.
		hc := &http.Client{Transport: openapitest.Transport(t, http.DefaultTransport), Timeout: 20 * time.Second}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", r.method, r.path, err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s with %q: %d %s", r.method, r.path, body, resp.StatusCode, raw)
		}
		if resp.StatusCode >= 400 {
			var e struct{ Error struct{ Message string } }
			if json.Unmarshal(raw, &e) != nil || e.Error.Message == "" {
				t.Fatalf("%s %s: %d without a message: %s", r.method, r.path, resp.StatusCode, raw)
			}
		}
	})
}
