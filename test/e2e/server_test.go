package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/wrennhq/wrenn/pkg/client"
)

func rest(t *testing.T, method, url, auth, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewBufferString(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if len(auth) > 4 && auth[:4] == "wrn_" {
		req.Header.Set("X-API-Key", auth)
	} else if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

// The control plane drives a real sandbox through the agent, and a team never sees or
// touches another team's sandbox.
func TestControlPlaneSandboxLifecycle(t *testing.T) {
	needVM(t)
	base := startControlPlaneWithHost(t)

	_, ann := rest(t, "POST", base+"/v1/auth/signup", "", `{"email":"ann@example.com","password":"correct horse battery"}`)
	_, bob := rest(t, "POST", base+"/v1/auth/signup", "", `{"email":"bob@example.com","password":"bob's long password"}`)
	annTok, bobTok := ann["token"].(string), bob["token"].(string)
	status, key := rest(t, "POST", base+"/v1/api-keys", annTok, `{"name":"e2e"}`)
	if status != 201 {
		t.Fatalf("create key: %d %v", status, key)
	}
	annKey := key["key"].(string)

	status, sb := rest(t, "POST", base+"/v1/sandboxes", annKey, `{"template":"base","allow_internet_access":false,"metadata":{"purpose":"e2e"}}`)
	if status != 201 || sb["status"] != "running" {
		t.Fatalf("create sandbox: %d %v", status, sb)
	}
	id := sb["id"].(string)
	t.Cleanup(func() { rest(t, "DELETE", base+"/v1/sandboxes/"+id, annKey, "") })
	// The limits its host enforces: 1 vCPU, 512 MiB plus the agent's 256 MiB allowance
	// for QEMU, 512 tasks, an unprivileged uid from the jail's range, the default disk
	// rate.
	if status, got := rest(t, "GET", base+"/v1/sandboxes/"+id, annKey, ""); status != 200 {
		t.Fatalf("get sandbox: %d %v", status, got)
	} else if l, _ := got["limits"].(map[string]any); l["cpus"] != float64(1) || l["memory_bytes"] != float64(768<<20) ||
		l["pids"] != float64(512) || l["jail_uid"].(float64) < 1e9 ||
		l["disk_bytes_per_sec"] != float64(256<<20) || l["disk_ops_per_sec"] != float64(8000) {
		t.Errorf("limits in the sandbox's info: %v", got["limits"])
	}

	status, out := rest(t, "POST", base+"/v1/sandboxes/"+id+"/exec", annKey, `{"cmd":"/bin/bash","args":["-c","echo hi from $(hostname); exit 2"]}`)
	if status != 200 || out["stdout"] != "hi from "+id+"\n" || out["exit_code"] != float64(2) || out["encoding"] != "utf-8" {
		t.Fatalf("exec: %d %v", status, out)
	}
	status, out = rest(t, "POST", base+"/v1/sandboxes/"+id+"/exec", annTok, `{"cmd":"/bin/bash","args":["-c","printf '\\xff\\xfe'"]}`)
	if status != 200 || out["encoding"] != "base64" || out["stdout"] != "//4=" {
		t.Errorf("binary output: %d %v", status, out)
	}

	// Files: a 3 MB multipart upload streamed through server and agent, read back whole.
	payload := bytes.Repeat([]byte("wrenn-file-"), 300_000)
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	fw, _ := mw.CreateFormFile("file", "data.bin")
	fw.Write(payload)
	mw.Close()
	req, _ := http.NewRequest("POST", base+"/v1/sandboxes/"+id+"/files/write?path=/home/user/data.bin", &form)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("X-API-Key", annKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("write file: %d", resp.StatusCode)
	}
	req, _ = http.NewRequest("GET", base+"/v1/sandboxes/"+id+"/files/read?path=/home/user/data.bin", nil)
	req.Header.Set("X-API-Key", annKey)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, payload) {
		t.Fatalf("read file: %d, %d bytes (want %d)", resp.StatusCode, len(got), len(payload))
	}
	if status, body := rest(t, "GET", base+"/v1/sandboxes/"+id+"/files/read?path=/nope", annKey, ""); status != 404 {
		t.Errorf("read a missing file: %d %v", status, body)
	}
	if status, _ := rest(t, "POST", base+"/v1/sandboxes/"+id+"/ping", annKey, ""); status != 204 {
		t.Errorf("ping: %d", status)
	}

	// Bob's team: every route answers 404 for ann's sandbox, and his list is empty.
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/v1/sandboxes/" + id, ""},
		{"POST", "/v1/sandboxes/" + id + "/exec", `{"cmd":"true"}`},
		{"DELETE", "/v1/sandboxes/" + id, ""},
		{"POST", "/v1/sandboxes/" + id + "/ping", ""},
		{"GET", "/v1/sandboxes/" + id + "/files/read?path=/home/user/data.bin", ""},
		{"POST", "/v1/sandboxes/" + id + "/files/write?path=/tmp/x", "x"},
	} {
		if status, body := rest(t, c.method, base+c.path, bobTok, c.body); status != 404 {
			t.Errorf("bob %s %s: %d %v", c.method, c.path, status, body)
		}
	}
	if status, list := rest(t, "GET", base+"/v1/sandboxes", bobTok, ""); status != 200 || len(list["sandboxes"].([]any)) != 0 {
		t.Errorf("bob's list: %d %v", status, list)
	}
	if status, _ := rest(t, "GET", base+"/v1/sandboxes/"+id, "", ""); status != 401 {
		t.Errorf("no credentials: %d", status)
	}
	if status, body := rest(t, "POST", base+"/v1/sandboxes", annKey, `{"vcpus":999}`); status != 400 {
		t.Errorf("absurd vcpus: %d %v", status, body)
	}

	if status, _ := rest(t, "DELETE", base+"/v1/sandboxes/"+id, annKey, ""); status != 204 {
		t.Fatalf("destroy: %d", status)
	}
	if status, got := rest(t, "GET", base+"/v1/sandboxes/"+id, annKey, ""); status != 200 || got["status"] != "stopped" {
		t.Errorf("after destroy: %d %v", status, got)
	}
	if status, _ := rest(t, "POST", base+"/v1/sandboxes/"+id+"/exec", annKey, `{"cmd":"true"}`); status != 404 {
		t.Errorf("exec in a destroyed sandbox: %d", status)
	}
}

// The Go SDK drives a sandbox end to end: create, exec with binary output, a file
// round trip, destroy.
func TestSDKSandbox(t *testing.T) {
	needVM(t)
	base := startControlPlaneWithHost(t)
	ctx := context.Background()
	s, err := client.New(base).Signup(ctx, "sdk@example.com", "", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	k, err := client.New(base, client.WithToken(s.Token)).CreateAPIKey(ctx, "sdk")
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(base, client.WithAPIKey(k.Key))
	sb, err := c.CreateSandbox(ctx, client.CreateSandboxRequest{EnvVars: map[string]string{"X": "42"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.DestroySandbox(context.Background(), sb.ID) })
	res, err := c.Exec(ctx, sb.ID, "/bin/bash", []string{"-c", "printf '%s\\xff' $X"}, 10*time.Second)
	if err != nil || !bytes.Equal(res.Stdout, []byte("42\xff")) || res.ExitCode != 0 {
		t.Fatalf("exec: %+v %v", res, err)
	}
	data := bytes.Repeat([]byte{0, 1, 2, 254, 255}, 200_000)
	if err := c.WriteFile(ctx, sb.ID, "/tmp/blob", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	rc, err := c.ReadFile(ctx, sb.ID, "/tmp/blob")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, data) {
		t.Fatalf("file round trip: %d bytes back, want %d", len(got), len(data))
	}
	// The WebSocket exec stream: start, output as produced, exit.
	h := http.Header{}
	h.Set("X-API-Key", k.Key)
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/v1/sandboxes/"+sb.ID+"/exec/stream", &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if err := wsjson.Write(ctx, ws, map[string]any{"cmd": "/bin/bash", "args": []string{"-c", "echo a; sleep 0.2; echo b >&2; exit 3"}}); err != nil {
		t.Fatal(err)
	}
	var events []string
	for {
		var m struct {
			Type     string
			Data     []byte
			ExitCode *int `json:"exit_code"`
		}
		if err := wsjson.Read(ctx, ws, &m); err != nil {
			break
		}
		switch m.Type {
		case "stdout", "stderr":
			events = append(events, m.Type+":"+string(m.Data))
		case "exit":
			events = append(events, fmt.Sprintf("exit:%d", *m.ExitCode))
		default:
			events = append(events, m.Type)
		}
	}
	if got := strings.Join(events, "|"); got != "start|stdout:a\n|stderr:b\n|exit:3" {
		t.Errorf("exec stream events %q", got)
	}
	// stdin through the stream; a command with stdin whose caller leaves is killed.
	st, err := c.ExecStream(ctx, sb.ID, client.Command{Cmd: "/bin/bash", Args: []string{"-c", "read -r a; echo got:$a; exec sleep 300"}, Stdin: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte("typed\n")); err != nil {
		t.Fatal(err)
	}
	if ev, err := st.Recv(ctx); err != nil || string(ev.Stdout) != "got:typed\n" {
		t.Fatalf("stdin round trip: %+v %v", ev, err)
	}
	st.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := c.Exec(ctx, sb.ID, "pgrep", []string{"-x", "sleep"}, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("abandoned interactive command still running: %q", res.Stdout)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Another team's key cannot open a stream on this sandbox.
	other, _ := client.New(base).Signup(ctx, "other@example.com", "", "correct horse battery")
	h.Set("X-API-Key", "")
	h.Set("Authorization", "Bearer "+other.Token)
	if _, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/v1/sandboxes/"+sb.ID+"/exec/stream", &websocket.DialOptions{HTTPHeader: h}); err == nil || resp == nil || resp.StatusCode != 404 {
		t.Errorf("foreign stream: %v", err)
	}

	if err := c.DestroySandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := c.GetSandbox(ctx, sb.ID); err != nil || got.Status != "stopped" {
		t.Errorf("after destroy: %+v %v", got, err)
	}
}
