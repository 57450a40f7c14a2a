package sandboxes_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
	"github.com/wrennhq/wrenn/internal/hostproto"
	"github.com/wrennhq/wrenn/internal/openapitest"
	"github.com/wrennhq/wrenn/internal/server/sandboxes"
	"github.com/wrennhq/wrenn/internal/server/servertest"
)

// TestMain (main_test.go) starts PostgreSQL and Redis for these.

// monitorEnv is a control plane with one user, reached over its REST API (every
// exchange checked against api/openapi.yaml).
type monitorEnv struct {
	*servertest.Env
	t      *testing.T
	client *http.Client
	token  string // the user's
	teamID string
}

func newMonitorEnv(t *testing.T) *monitorEnv {
	t.Helper()
	env := servertest.New(t)
	s, err := env.Service.Accounts.Signup(context.Background(), "ann@example.com", "Ann", "correct horse battery", "")
	if err != nil {
		t.Fatal(err)
	}
	return &monitorEnv{Env: env, t: t, client: &http.Client{Transport: openapitest.Transport(t, nil)}, token: s.Token, teamID: s.TeamID}
}

func (e *monitorEnv) do(method, path, bearer, body string) (int, map[string]any) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			e.t.Fatalf("%s %s: non-JSON body %q", method, path, raw)
		}
	}
	return resp.StatusCode, out
}

func (e *monitorEnv) createSandbox() string {
	e.t.Helper()
	status, sb := e.do("POST", "/v1/sandboxes", e.token, `{}`)
	if status != 201 {
		e.t.Fatalf("create sandbox: %d %v", status, sb)
	}
	return sb["id"].(string)
}

// sandbox returns a sandbox's status and error as the API shows them.
func (e *monitorEnv) sandbox(id string) (string, string) {
	e.t.Helper()
	status, sb := e.do("GET", "/v1/sandboxes/"+id, e.token, "")
	if status != 200 {
		e.t.Fatalf("get sandbox %s: %d %v", id, status, sb)
	}
	msg, _ := sb["error"].(string)
	return sb["status"].(string), msg
}

// listed returns the ids the (cached) listing shows in state.
func (e *monitorEnv) listed(state string) []string {
	e.t.Helper()
	status, list := e.do("GET", "/v1/sandboxes?state="+state, e.token, "")
	if status != 200 {
		e.t.Fatalf("list %s: %d %v", state, status, list)
	}
	var ids []string
	for _, s := range list["sandboxes"].([]any) {
		ids = append(ids, s.(map[string]any)["id"].(string))
	}
	slices.Sort(ids)
	return ids
}

func (e *monitorEnv) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.DB.Exec(context.Background(), sql, args...); err != nil {
		e.t.Fatal(err)
	}
}

func (e *monitorEnv) hostStatus(id string) string {
	e.t.Helper()
	var st string
	if err := e.DB.QueryRow(context.Background(), `SELECT status FROM hosts WHERE id = $1`, id).Scan(&st); err != nil {
		e.t.Fatal(err)
	}
	return st
}

// fakeFingerprint is the certificate fingerprint servertest pins for its hosts.
var fakeFingerprint = strings.Repeat("0", 64)

// silence makes a host's last heartbeat ten minutes old.
func (e *monitorEnv) silence(hostID string) {
	e.exec(`UPDATE hosts SET last_heartbeat_at = now() - interval '10 minutes' WHERE id = $1`, hostID)
}

// destroyOnHost removes a sandbox behind the control plane's back.
func destroyOnHost(t *testing.T, agent hostagentv1connect.HostAgentServiceClient, id string) {
	t.Helper()
	if _, err := agent.DestroySandbox(context.Background(), connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: id})); err != nil {
		t.Fatal(err)
	}
}

func sortedIDs(ids ...string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// A silent host becomes unreachable and its sandboxes missing; its next heartbeat
// brings it back and the next round restores the sandboxes it still runs.
func TestMonitorUnreachableHostAndRecovery(t *testing.T) {
	e := newMonitorEnv(t)
	ctx := context.Background()
	cfg := sandboxes.MonitorConfig{Stale: time.Minute}
	a, b, c := e.createSandbox(), e.createSandbox(), e.createSandbox()

	e.Service.Sandboxes.MonitorRound(ctx, cfg)
	if st := e.hostStatus(e.HostID); st != "online" {
		t.Fatalf("a host that just registered: %s after a round", st)
	}
	for _, id := range []string{a, b} {
		if st, _ := e.sandbox(id); st != "running" {
			t.Errorf("%s: %s after a round with nothing to do", id, st)
		}
	}

	e.silence(e.HostID)
	e.Service.Sandboxes.MonitorRound(ctx, cfg)
	if st := e.hostStatus(e.HostID); st != "unreachable" {
		t.Errorf("silent host: %s", st)
	}
	for _, id := range []string{a, b, c} {
		if st, _ := e.sandbox(id); st != "missing" {
			t.Errorf("%s on an unreachable host: %s", id, st)
		}
	}
	if got := e.listed("missing"); !slices.Equal(got, sortedIDs(a, b, c)) {
		t.Errorf("listing right after the round shows missing %v", got)
	}
	// Nothing more happens while the host stays silent: missing is not lost.
	e.Service.Sandboxes.MonitorRound(ctx, cfg)
	for _, id := range []string{a, b, c} {
		if st, _ := e.sandbox(id); st != "missing" {
			t.Errorf("%s after a second silent round: %s", id, st)
		}
	}
	if status, body := e.do("POST", "/v1/sandboxes", e.token, `{}`); status != 503 {
		t.Errorf("create with the only platform host unreachable: %d %v", status, body)
	}
	// Meanwhile the host lost one of them (say, it rebooted half-way).
	destroyOnHost(t, e.Agent.Client, c)

	hostToken, _, err := e.Tokens.IssueHost(e.HostID)
	if err != nil {
		t.Fatal(err)
	}
	status, hb := e.do("POST", "/v1/hosts/heartbeat", hostToken, `{"cert_fingerprint":"`+fakeFingerprint+`","version":"v","capacity":{"vcpus":64,"memory_mb":65536},"sandboxes":2}`)
	if status != 200 || hb["status"] != "online" {
		t.Fatalf("heartbeat: %d %v", status, hb)
	}
	if st := e.hostStatus(e.HostID); st != "online" {
		t.Errorf("host after its heartbeat: %s", st)
	}
	e.Service.Sandboxes.MonitorRound(ctx, cfg)
	for _, id := range []string{a, b} {
		if st, msg := e.sandbox(id); st != "running" || msg != "" {
			t.Errorf("%s after the host came back: %s %q", id, st, msg)
		}
	}
	if st, msg := e.sandbox(c); st != "error" || !strings.Contains(msg, "lost") {
		t.Errorf("the sandbox the host no longer runs, after it came back: %s %q", st, msg)
	}
	if got := e.listed("running"); !slices.Equal(got, sortedIDs(a, b)) {
		t.Errorf("listing after recovery shows running %v", got)
	}
	if got := e.Agent.SandboxIDs(); !slices.Equal(got, sortedIDs(a, b)) {
		t.Errorf("recovery changed what the host runs: %v", got)
	}
	e.createSandbox()

	// Service.Heartbeat is the same path without HTTP.
	e.silence(e.HostID)
	e.Service.Sandboxes.MonitorRound(ctx, cfg)
	resp, err := e.Service.Hosts.Heartbeat(ctx, e.HostID, hostproto.HeartbeatRequest{CertFingerprint: fakeFingerprint, Version: "v", Capacity: hostproto.Capacity{VCPUs: 64, MemoryMB: 65536}})
	if err != nil || resp.Status != "online" || resp.IntervalSec != 30 {
		t.Errorf("Service.Heartbeat: %+v %v", resp, err)
	}
	e.Service.Sandboxes.MonitorRound(ctx, cfg)
	if got := e.listed("running"); len(got) != 3 {
		t.Errorf("running after the second recovery: %v", got)
	}
}

// A sandbox its host no longer runs is failed as lost — unless it is still being
// created (younger than Grace).
func TestMonitorLostSandbox(t *testing.T) {
	e := newMonitorEnv(t)
	ctx := context.Background()
	lost, kept := e.createSandbox(), e.createSandbox()
	destroyOnHost(t, e.Agent.Client, lost)

	// Grace only spares sandboxes still being created: this one, running and seconds
	// old, is lost at once under the default Grace of two minutes.
	e.Service.Sandboxes.MonitorRound(ctx, sandboxes.MonitorConfig{})
	if st, msg := e.sandbox(lost); st != "error" || !strings.Contains(msg, "lost") {
		t.Errorf("sandbox gone from its host: %s %q", st, msg)
	}
	if st, _ := e.sandbox(kept); st != "running" {
		t.Errorf("sandbox its host runs: %s", st)
	}
	if got := e.listed("error"); !slices.Equal(got, []string{lost}) {
		t.Errorf("listing right after the round shows failed %v", got)
	}

	// A create in flight: recorded starting, not (yet) on the host.
	young := e.createSandbox()
	destroyOnHost(t, e.Agent.Client, young)
	e.exec(`UPDATE sandboxes SET status = 'starting' WHERE id = $1`, young)
	e.Service.Sandboxes.MonitorRound(ctx, sandboxes.MonitorConfig{Grace: time.Hour})
	if st, msg := e.sandbox(young); st != "starting" || msg != "" {
		t.Errorf("a starting sandbox younger than Grace: %s %q", st, msg)
	}
	e.Service.Sandboxes.MonitorRound(ctx, sandboxes.MonitorConfig{Grace: time.Nanosecond})
	if st, msg := e.sandbox(young); st != "error" || !strings.Contains(msg, "lost") {
		t.Errorf("a starting sandbox older than Grace, not on its host: %s %q", st, msg)
	}
	if st, _ := e.sandbox(kept); st != "running" {
		t.Errorf("kept sandbox after the rounds: %s", st)
	}
}

// A create whose control plane died after its host made the sandbox and before it
// recorded that: the row stays starting while the host runs it. Past Grace the host's
// word is taken (running, with its address); younger, the create may still record
// its end itself.
func TestMonitorUnrecordedCreate(t *testing.T) {
	e := newMonitorEnv(t)
	ctx := context.Background()
	id := e.createSandbox()
	e.exec(`UPDATE sandboxes SET status = 'starting', host_ip = NULL, started_at = NULL, limits = NULL WHERE id = $1`, id)
	e.Service.Sandboxes.MonitorRound(ctx, sandboxes.MonitorConfig{Grace: time.Hour})
	if st, msg := e.sandbox(id); st != "starting" || msg != "" {
		t.Errorf("a starting sandbox younger than Grace that its host runs: %s %q", st, msg)
	}
	e.Service.Sandboxes.MonitorRound(ctx, sandboxes.MonitorConfig{Grace: time.Nanosecond})
	if st, msg := e.sandbox(id); st != "running" || msg != "" {
		t.Errorf("a starting sandbox older than Grace that its host runs: %s %q", st, msg)
	}
	// Recorded as a create would have: its address and start (E2B's listing shows
	// only started sandboxes).
	var ip *string
	var started *time.Time
	if err := e.DB.QueryRow(ctx, `SELECT host_ip, started_at FROM sandboxes WHERE id = $1`, id).Scan(&ip, &started); err != nil ||
		ip == nil || *ip == "" || started == nil {
		t.Errorf("after the round: address %v, started at %v (%v)", ip, started, err)
	}
}

// A sandbox a host runs that should not exist is stopped on the host (once older
// than Grace: a younger one may be a create whose row is not visible yet).
func TestMonitorOrphan(t *testing.T) {
	e := newMonitorEnv(t)
	ctx := context.Background()
	orphan, kept := e.createSandbox(), e.createSandbox()
	e.exec(`UPDATE sandboxes SET status = 'stopped' WHERE id = $1`, orphan)
	// Unknown to the database altogether.
	stray := "sbstray0000000000000"
	if _, err := e.Agent.Client.CreateSandbox(ctx, connect.NewRequest(&pb.CreateSandboxRequest{SandboxId: stray, Template: "base"})); err != nil {
		t.Fatal(err)
	}

	e.Service.Sandboxes.MonitorRound(ctx, sandboxes.MonitorConfig{Grace: time.Hour})
	if got := e.Agent.SandboxIDs(); !slices.Equal(got, sortedIDs(orphan, kept, stray)) {
		t.Errorf("young orphans must be left alone; the host runs %v", got)
	}
	e.Service.Sandboxes.MonitorRound(ctx, sandboxes.MonitorConfig{Grace: time.Nanosecond})
	if got := e.Agent.SandboxIDs(); !slices.Equal(got, []string{kept}) {
		t.Errorf("after the round the host runs %v, want only %s", got, kept)
	}
	if st, _ := e.sandbox(orphan); st != "stopped" {
		t.Errorf("orphan's record: %s", st)
	}
	if st, _ := e.sandbox(kept); st != "running" {
		t.Errorf("kept sandbox: %s", st)
	}
}

// Destroying a missing sandbox succeeds and records it stopped, whether or not its
// host answers.
func TestDestroyMissingSandbox(t *testing.T) {
	e := newMonitorEnv(t)
	ctx := context.Background()
	cfg := sandboxes.MonitorConfig{Stale: time.Minute}

	// The host is silent but its agent still answers: the sandbox is destroyed there.
	a, b := e.createSandbox(), e.createSandbox()
	e.silence(e.HostID)
	e.Service.Sandboxes.MonitorRound(ctx, cfg)
	if st, _ := e.sandbox(a); st != "missing" {
		t.Fatalf("sandbox of a silent host: %s", st)
	}
	if status, body := e.do("DELETE", "/v1/sandboxes/"+a, e.token, ""); status != 204 {
		t.Fatalf("destroy a missing sandbox: %d %v", status, body)
	}
	if st, _ := e.sandbox(a); st != "stopped" {
		t.Errorf("destroyed missing sandbox: %s", st)
	}
	if got := e.Agent.SandboxIDs(); !slices.Equal(got, []string{b}) {
		t.Errorf("the host runs %v", got)
	}

	// A host the control plane cannot reach at all (no agent behind it).
	var gone string
	if err := e.DB.QueryRow(ctx, `INSERT INTO hosts (name, address, status, registered_at, last_heartbeat_at, vcpus, memory_mb)
		VALUES ('gone', '10.9.9.9:50051', 'online', now(), now(), 64, 65536) RETURNING id::text`).Scan(&gone); err != nil {
		t.Fatal(err)
	}
	c := "sbunreachable0000000"
	e.exec(`INSERT INTO sandboxes (id, team_id, host_id, template, status, vcpus, memory_mb, allow_internet_access, started_at)
		VALUES ($1, $2, $3, 'base', 'running', 1, 512, false, now())`, c, e.teamID, gone)
	e.silence(gone)
	e.Service.Sandboxes.MonitorRound(ctx, cfg)
	if st := e.hostStatus(gone); st != "unreachable" {
		t.Fatalf("silent host: %s", st)
	}
	if st, _ := e.sandbox(c); st != "missing" {
		t.Fatalf("sandbox of the silent host: %s", st)
	}
	if status, body := e.do("DELETE", "/v1/sandboxes/"+c, e.token, ""); status != 204 {
		t.Fatalf("destroy a missing sandbox on a host that does not answer: %d %v", status, body)
	}
	if st, _ := e.sandbox(c); st != "stopped" {
		t.Errorf("after destroy: %s", st)
	}
	if got := e.listed("missing"); !slices.Equal(got, []string{b}) {
		t.Errorf("still missing: %v", got)
	}
	// When the host is back the round does not resurrect the stopped sandbox.
	e.exec(`UPDATE hosts SET status = 'online', last_heartbeat_at = now() WHERE id = $1`, gone)
	e.Service.Sandboxes.MonitorRound(ctx, cfg)
	if st, _ := e.sandbox(c); st != "stopped" {
		t.Errorf("after the host came back: %s", st)
	}
}

// RunHostMonitor runs a round at once and stops with its context.
func TestRunHostMonitor(t *testing.T) {
	e := newMonitorEnv(t)
	id := e.createSandbox()
	e.silence(e.HostID)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Service.Sandboxes.RunHostMonitor(ctx, sandboxes.MonitorConfig{Interval: time.Hour, Stale: time.Minute})
	}()
	// The round's last effect is the sandbox going missing.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st, _ := e.sandbox(id); st == "missing" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the monitor's first round did not mark the silent host's sandbox missing")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := e.hostStatus(e.HostID); st != "unreachable" {
		t.Errorf("host: %s", st)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("RunHostMonitor did not return after its context ended")
	}
}

// Every round upholds "an unreachable host's live sandboxes are missing", also for a
// host that became unreachable in an earlier round whose second step never happened
// (the control plane stopped, or PostgreSQL failed, between marking the host and
// marking its sandboxes).
func TestMonitorUnreachableHostNeverKeepsRunningSandboxes(t *testing.T) {
	e := newMonitorEnv(t)
	id := e.createSandbox()
	e.silence(e.HostID)
	e.exec(`UPDATE hosts SET status = 'unreachable' WHERE id = $1`, e.HostID)
	e.Service.Sandboxes.MonitorRound(context.Background(), sandboxes.MonitorConfig{Stale: time.Minute})
	if st, _ := e.sandbox(id); st != "missing" {
		t.Errorf("sandbox on a host that is unreachable: %s, want missing", st)
	}
}
