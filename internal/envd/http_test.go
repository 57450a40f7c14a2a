package envd_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	fspb "github.com/wrennhq/wrenn/gen/envd/filesystem"
	pb "github.com/wrennhq/wrenn/gen/envd/process"
	"github.com/wrennhq/wrenn/gen/envd/process/processconnect"
	"github.com/wrennhq/wrenn/internal/envd/envdtest"
)

func get(t *testing.T, e *envdtest.Envd, path string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestHealth(t *testing.T) {
	e := envdtest.Start(t)
	resp := get(t, e, "/health")
	body := envdtest.ReadAll(t, resp)
	if resp.StatusCode != http.StatusNoContent || body != "" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("/health: %d %q cache-control %q", resp.StatusCode, body, resp.Header.Get("Cache-Control"))
	}
	if resp := get(t, e, "/nope"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown path: %d", resp.StatusCode)
	}
}

const unauthorized = `{"code":401,"message":"unauthorized access, please provide a valid access token or method signing if supported"}`

func TestAccessToken(t *testing.T) {
	e := envdtest.Start(t)
	// No token: everything is open.
	if resp := get(t, e, "/envs"); resp.StatusCode != http.StatusOK {
		t.Fatalf("/envs without token set: %d", resp.StatusCode)
	}
	e.Init(t, `{"accessToken":"secret-1","defaultUser":"user"}`)

	for _, path := range []string{"/envs", "/metrics"} {
		resp := get(t, e, path)
		if body := strings.TrimSpace(envdtest.ReadAll(t, resp)); resp.StatusCode != 401 || body != unauthorized ||
			resp.Header.Get("Content-Type") != "application/json; charset=utf-8" {
			t.Errorf("%s without token: %d %q %q", path, resp.StatusCode, body, resp.Header.Get("Content-Type"))
		}
		if resp := get(t, e, path, "X-Access-Token", "wrong"); resp.StatusCode != 401 {
			t.Errorf("%s with wrong token: %d", path, resp.StatusCode)
		}
		if resp := get(t, e, path, "X-Access-Token", "secret-1"); resp.StatusCode != 200 {
			t.Errorf("%s with token: %d", path, resp.StatusCode)
		}
	}
	if resp := get(t, e, "/health"); resp.StatusCode != http.StatusNoContent {
		t.Errorf("/health must stay open: %d", resp.StatusCode)
	}

	for _, codec := range envdtest.Codecs {
		c := e.Process(codec)
		_, err := c.List(context.Background(), connect.NewRequest(&pb.ListRequest{}))
		if connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Errorf("%s RPC without token: %v", codec, err)
		}
		r := run(t, c, bash("echo ok"))
		if connect.CodeOf(r.err) != connect.CodeUnauthenticated {
			t.Errorf("%s stream without token: %v", codec, r.err)
		}
		r = run(t, c, bash("echo ok"), "X-Access-Token", "secret-1")
		mustExit(t, r, 0)
		fs := e.Filesystem(codec)
		req := connect.NewRequest(&fspb.StatRequest{Path: "/"})
		if _, err := fs.Stat(context.Background(), req); connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Errorf("%s filesystem RPC without token: %v", codec, err)
		}
	}

	// Rotation: the new token is accepted when the request proves the current one.
	resp := e.Post(t, "/init", `{"accessToken":"secret-2"}`)
	if body := envdtest.ReadAll(t, resp); resp.StatusCode != 401 || !strings.Contains(body, "access token validation failed") {
		t.Fatalf("rotation without proof: %d %q", resp.StatusCode, body)
	}
	resp = e.Post(t, "/init", `{}`)
	if body := envdtest.ReadAll(t, resp); resp.StatusCode != 401 || !strings.Contains(body, "access token reset not authorized") {
		t.Fatalf("clearing without proof: %d %q", resp.StatusCode, body)
	}
	e.Init(t, `{"accessToken":"secret-2","defaultUser":"user"}`, "X-Access-Token", "secret-1")
	if resp := get(t, e, "/envs", "X-Access-Token", "secret-1"); resp.StatusCode != 401 {
		t.Errorf("old token still accepted: %d", resp.StatusCode)
	}
	// The body may also carry the current token (E2B's own re-init).
	e.Init(t, `{"accessToken":"secret-2","envVars":{"A":"1"}}`)
	if resp := get(t, e, "/envs", "X-Access-Token", "secret-2"); resp.StatusCode != 200 {
		t.Errorf("new token refused: %d", resp.StatusCode)
	}
	// Clearing, proven by header.
	e.Init(t, `{}`, "X-Access-Token", "secret-2")
	if resp := get(t, e, "/envs"); resp.StatusCode != 200 {
		t.Errorf("token not cleared: %d", resp.StatusCode)
	}
}

func TestInitIdentityEnvAndReplay(t *testing.T) {
	e := envdtest.Start(t)
	before := time.Now()
	ts := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	e.Init(t, `{"envVars":{"FOO":"bar"},"defaultUser":"user","defaultWorkdir":"/tmp","sandboxID":"sbabc123","templateID":"base","hostname":"sbabc123","randomSeed":"c2VlZC1ieXRlcw==","timestamp":"`+ts.Format(time.RFC3339Nano)+`"}`)
	// Without --in-vm the host clock is never touched, whatever the timestamp says.
	if time.Since(before) < 0 || time.Now().Year() < 2026 {
		t.Fatal("the host clock moved")
	}
	var env map[string]string
	resp := get(t, e, "/envs")
	if err := json.Unmarshal([]byte(envdtest.ReadAll(t, resp)), &env); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"FOO": "bar", "E2B_SANDBOX": "true", "E2B_SANDBOX_ID": "sbabc123", "E2B_TEMPLATE_ID": "base"}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("/envs[%s] = %q, want %q (all: %v)", k, env[k], v, env)
		}
	}
	for name, v := range map[string]string{".E2B_SANDBOX_ID": "sbabc123", ".E2B_TEMPLATE_ID": "base", ".E2B_SANDBOX": "true"} {
		if b, err := os.ReadFile(filepath.Join(e.RunDir, name)); err != nil || string(b) != v {
			t.Errorf("%s: %q %v", name, b, err)
		}
	}
	r := run(t, e.Process(envdtest.JSON), &pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "/bin/bash", Args: []string{"-c", `echo "$E2B_SANDBOX_ID $FOO $(pwd) $(whoami)"`}}})
	mustExit(t, r, 0)
	if r.stdout.String() != "sbabc123 bar /tmp user\n" {
		t.Errorf("process sees %q", r.stdout.String())
	}

	// A replay (same or older timestamp) is acknowledged but changes nothing; envVars
	// replace the earlier set, identity survives.
	e.Init(t, `{"envVars":{"OLD":"1"},"timestamp":"`+ts.Add(-time.Hour).Format(time.RFC3339)+`"}`)
	e.Init(t, `{"envVars":{"NEW":"1"},"timestamp":"`+ts.Add(time.Hour).Format(time.RFC3339)+`"}`)
	env = nil
	resp = get(t, e, "/envs")
	if err := json.Unmarshal([]byte(envdtest.ReadAll(t, resp)), &env); err != nil {
		t.Fatal(err)
	}
	if env["OLD"] != "" || env["FOO"] != "" || env["NEW"] != "1" || env["E2B_SANDBOX_ID"] != "sbabc123" {
		t.Errorf("after replay and replace: %v", env)
	}

	bad := []string{
		`{not json`,
		`{"defaultUser":"ghost"}`,
		`{"defaultWorkdir":"relative/dir"}`,
		`{"envVars":{"A=B":"x"}}`,
		`{"sandboxID":"../../etc"}`,
		`{"hostname":"-bad-"}`,
		`{"timestamp":"yesterday"}`,
	}
	for _, body := range bad {
		resp := e.Post(t, "/init", body)
		if msg := envdtest.ReadAll(t, resp); resp.StatusCode != 400 || !strings.Contains(msg, `"code":400`) {
			t.Errorf("/init %s: %d %q", body, resp.StatusCode, msg)
		}
	}
}

func TestMetrics(t *testing.T) {
	e := envdtest.Start(t)
	resp := get(t, e, "/metrics")
	var m map[string]float64
	if err := json.Unmarshal([]byte(envdtest.ReadAll(t, resp)), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ts", "cpu_count", "mem_total", "mem_used", "mem_total_mib", "mem_used_mib", "disk_used", "disk_total"} {
		if m[k] <= 0 {
			t.Errorf("metric %s = %v", k, m[k])
		}
	}
	if _, ok := m["cpu_used_pct"]; !ok || m["cpu_used_pct"] > 100 || m["mem_used"] > m["mem_total"] || m["disk_used"] > m["disk_total"] {
		t.Errorf("inconsistent metrics %v", m)
	}
	if d := time.Since(time.Unix(int64(m["ts"]), 0)); d < 0 && d < -2*time.Second || d > 5*time.Second {
		t.Errorf("ts %v is not now", m["ts"])
	}
}

func TestH2CAndCORS(t *testing.T) {
	e := userEnvd(t)
	h2 := envdtest.H2CClient()
	for _, codec := range envdtest.Codecs {
		opts := []connect.ClientOption{}
		if codec == envdtest.JSON {
			opts = append(opts, connect.WithProtoJSON())
		}
		c := processconnect.NewProcessClient(h2, e.URL, opts...)
		r := run(t, c, bash("echo over-h2c"))
		mustExit(t, r, 0)
		if r.stdout.String() != "over-h2c\n" {
			t.Errorf("%s over h2c: %q", codec, r.stdout.String())
		}
	}
	resp, err := h2.Get(e.URL + "/health")
	if err != nil || resp.ProtoMajor != 2 || resp.StatusCode != 204 {
		t.Fatalf("h2c /health: %v %v", resp, err)
	}

	req, _ := http.NewRequest(http.MethodOptions, e.URL+"/process.Process/Start", nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "content-type,connect-protocol-version,x-access-token")
	resp, err = e.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := resp.Header
	if resp.StatusCode != 204 || h.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), "x-access-token") || h.Get("Access-Control-Max-Age") != "7200" {
		t.Errorf("preflight: %d %v", resp.StatusCode, h)
	}
}

func TestUnknownBasicUserRejectedEverywhere(t *testing.T) {
	e := userEnvd(t)
	c := e.Process(envdtest.JSON)
	req := connect.NewRequest(&pb.ListRequest{})
	req.Header().Set("Authorization", envdtest.BasicUser("ghost"))
	_, err := c.List(context.Background(), req)
	if connect.CodeOf(err) != connect.CodeUnauthenticated || !strings.Contains(err.Error(), "invalid username: 'ghost'") {
		t.Errorf("List with unknown user: %v", err)
	}
	req = connect.NewRequest(&pb.ListRequest{})
	req.Header().Set("Authorization", "Basic %%%")
	if _, err := c.List(context.Background(), req); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("malformed basic header: %v", err)
	}
}
