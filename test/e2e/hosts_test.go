package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/internal/agent/hostreg"
	"github.com/wrennhq/wrenn/internal/server/hostclient"
	"github.com/wrennhq/wrenn/internal/testutil"
	"github.com/wrennhq/wrenn/pkg/client"
)

// A cluster on one machine: the control plane in the root network namespace on
// 0.0.0.0, each host agent in its own namespace (newHostNS), reaching the control plane
// at 10.99.{i}.1 and reached by it at 10.99.{i}.2:50051 over TLS with its pinned
// certificate.

// startClusterServer runs the control plane on 0.0.0.0 (agents in host namespaces reach
// it through their veth) and returns it with its port.
func startClusterServer(t *testing.T, env ...string) (*cpProc, string) {
	t.Helper()
	_, port, _ := net.SplitHostPort(freeAddr(t))
	return startServer(t, "0.0.0.0:"+port, env...), port
}

// serverURL is the control plane as seen from inside h.
func (h *hostNS) serverURL(port string) string { return "http://" + h.GW + ":" + port }

// hostView is a host in GET /v1/hosts.
type hostView struct {
	ID              string     `json:"id"`
	TeamID          string     `json:"team_id"`
	Name            string     `json:"name"`
	Status          string     `json:"status"`
	Address         string     `json:"address"`
	CertFingerprint string     `json:"cert_fingerprint"`
	Sandboxes       int        `json:"sandboxes"`
	RegisteredAt    *time.Time `json:"registered_at"`
	LastHeartbeatAt *time.Time `json:"last_heartbeat_at"`
}

func listHosts(t *testing.T, base, token string) map[string]hostView {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/v1/hosts", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Hosts []hostView }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /v1/hosts: %d %v", resp.StatusCode, err)
	}
	m := map[string]hostView{}
	for _, h := range out.Hosts {
		m[h.ID] = h
	}
	return m
}

// tlsFingerprint is the fingerprint of the agent certificate in stateDir.
func tlsFingerprint(t *testing.T, stateDir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(stateDir, "tls.crt"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s/tls.crt is not PEM", stateDir)
	}
	return hostreg.Fingerprint(blk.Bytes)
}

// hostFile reads or rewrites an agent's host.json, keeping every field.
func readHostFile(t *testing.T, stateDir string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(stateDir, "host.json"))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func writeHostFile(t *testing.T, stateDir string, m map[string]any) {
	t.Helper()
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(stateDir, "host.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// restart stops a registered agent and starts it again with what it ran with.
func (cp *cpProc) restart(t *testing.T, a *hostAgent) *hostAgent {
	t.Helper()
	a.stop(t)
	return cp.addAgent(t, "", a.opts)
}

func agentRuns(a *hostAgent) bool {
	return a.cmd.ProcessState == nil && a.cmd.Process.Signal(syscall.Signal(0)) == nil
}

// vmRunning reports whether a QEMU process of sandbox id exists (its -name is the id).
func vmRunning(id string) bool {
	return exec.Command("pgrep", "-f", "qemu-system.*-name "+id).Run() == nil
}

// hostOf says which agent runs a sandbox: each agent has a WRENN_DIR of its own.
func hostOf(id string, agents ...*hostAgent) *hostAgent {
	for _, a := range agents {
		if _, err := os.Stat(filepath.Join(a.opts.dir, "sandboxes", id)); err == nil {
			return a
		}
	}
	return nil
}

// Registration, the credentials that result and every way of presenting the wrong ones.
func TestHostsRegistrationAndCredentials(t *testing.T) {
	needVM(t)
	checkHostRangeFree(t)
	t.Cleanup(func() { assertNoHostNS(t) })
	ns := []*hostNS{newHostNS(t, 1), newHostNS(t, 2)}
	cp, port := startClusterServer(t, "WRENN_HOST_MONITOR_INTERVAL=1s")
	admin := cp.admin(t)
	ctx := context.Background()
	adminc := client.New(cp.base, client.WithToken(admin))

	tokens := make([]string, len(ns))
	agents := make([]*hostAgent, len(ns))
	for i, h := range ns {
		nh, err := adminc.CreateHost(ctx, fmt.Sprintf("host-%d", i+1), true)
		if err != nil {
			t.Fatal(err)
		}
		if nh.Status != "pending" || nh.RegistrationToken == "" {
			t.Fatalf("created host: %+v", nh)
		}
		tokens[i] = nh.RegistrationToken
		agents[i] = cp.addAgent(t, "", agentOpts{token: tokens[i], listen: h.listen, netns: h.Name, server: h.serverURL(port)})
	}
	testutil.WaitFor(t, 15*time.Second, "both hosts online", func() bool {
		hosts := listHosts(t, cp.base, admin)
		return hosts[agents[0].id].Status == "online" && hosts[agents[1].id].Status == "online"
	})
	hosts := listHosts(t, cp.base, admin)
	for i, a := range agents {
		h := hosts[a.id]
		if h.Address != ns[i].listen || h.CertFingerprint != tlsFingerprint(t, a.stateDir) || h.RegisteredAt == nil || h.LastHeartbeatAt == nil || h.TeamID != "" {
			t.Errorf("host %d as listed: %+v (agent at %s, certificate %s)", i+1, h, ns[i].listen, tlsFingerprint(t, a.stateDir))
		}
	}

	// A registration token works once.
	reuse := fmt.Sprintf(`{"token":%q,"address":%q,"cert_fingerprint":%q,"version":"x"}`, tokens[0], ns[0].listen, strings.Repeat("ab", 32))
	if status, body := rest(t, "POST", cp.base+"/v1/hosts/register", "", reuse); status != 401 {
		t.Errorf("registration token used twice: %d %v", status, body)
	}

	// Callers without the control plane's secret get nothing from an agent.
	insecure := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for _, bearer := range []string{"", "Bearer hs_wrong-secret-0123456789abcdef"} {
		req, _ := http.NewRequest("POST", "https://"+ns[0].listen+"/hostagent.v1.HostAgentService/ListSandboxes", strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/json")
		if bearer != "" {
			req.Header.Set("Authorization", bearer)
		}
		resp, err := insecure.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("agent called with %q: %d", bearer, resp.StatusCode)
		}
	}
	lookup := func(fp, secret string) hostclient.Lookup {
		return func(context.Context, string) (hostclient.Host, error) {
			return hostclient.Host{ID: agents[0].id, Address: ns[0].listen, CertFingerprint: fp, Secret: secret}, nil
		}
	}
	c, err := hostclient.NewPool(lookup(tlsFingerprint(t, agents[0].stateDir), "wrong-secret-0123456789abcdef")).Agent(ctx, agents[0].id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListSandboxes(ctx, connect.NewRequest(&pb.ListSandboxesRequest{})); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("pinned TLS, wrong secret: %v", err)
	}
	c, err = hostclient.NewPool(lookup(strings.Repeat("0", 64), "wrong-secret-0123456789abcdef")).Agent(ctx, agents[0].id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListSandboxes(ctx, connect.NewRequest(&pb.ListSandboxesRequest{})); !errors.Is(err, hostclient.ErrFingerprint) {
		t.Errorf("another pin: %v", err)
	}

	// Refresh rotation, through a real agent process: a refused host token is renewed
	// with the refresh token, and the rotated one is saved.
	b := agents[1]
	refresh := func(a *hostAgent, refreshToken string) (*hostAgent, string) {
		t.Helper()
		a.stop(t)
		creds := readHostFile(t, a.stateDir)
		creds["token"] = "x" // refused by the control plane
		if refreshToken != "" {
			creds["refresh_token"] = refreshToken
		}
		writeHostFile(t, a.stateDir, creds)
		since := time.Now()
		a = cp.addAgent(t, "", a.opts)
		testutil.WaitFor(t, 15*time.Second, "the agent refreshed its token and beat", func() bool {
			h := listHosts(t, cp.base, admin)[a.id]
			return strings.Contains(a.logs.String(), "host token refreshed") && h.Status == "online" && h.LastHeartbeatAt != nil && h.LastHeartbeatAt.After(since)
		})
		if strings.Contains(a.logs.String(), "HOST CREDENTIALS") {
			t.Errorf("the agent logged a credentials failure:\n%s", a.logs.String())
		}
		creds = readHostFile(t, a.stateDir)
		if creds["token"] == "x" {
			t.Errorf("refreshed token not saved: %v", creds)
		}
		return a, creds["refresh_token"].(string)
	}
	refreshOK := func(token string) int {
		status, _ := rest(t, "POST", cp.base+"/v1/hosts/auth/refresh", "", fmt.Sprintf(`{"refresh_token":%q}`, token))
		return status
	}
	r0 := readHostFile(t, b.stateDir)["refresh_token"].(string)
	b, r1 := refresh(b, "")
	if r1 == r0 || r1 == "" {
		t.Fatalf("refresh token not rotated: %q", r1)
	}
	// The crash window: the agent died before saving r1, so it still holds r0, which
	// keeps working until r1 is first used; using r0 voids the unused r1.
	b, r2 := refresh(b, r0)
	if r2 == r0 || r2 == r1 {
		t.Fatalf("refresh with the old token after a crash: %q", r2)
	}
	if status := refreshOK(r1); status != 401 {
		t.Errorf("the child a crash lost (never used) still works: %d", status)
	}
	// The rotation completes when the child is used: then its parent is revoked.
	b, r3 := refresh(b, "")
	if r3 == r2 {
		t.Fatalf("refresh token not rotated: %q", r3)
	}
	if status := refreshOK(r0); status != 401 {
		t.Errorf("a refresh token whose child was used still works: %d", status)
	}
	agents[1] = b

	// Another host's credentials with a TLS identity of its own: the heartbeat passes
	// (the host token is valid), but the control plane talks to the agent only over
	// TLS with the certificate pinned at registration, so it refuses to.
	v := 0
	if agents[1].id < agents[0].id {
		v = 1 // the scheduler breaks ties by the lower id: new sandboxes go there
	}
	victim := agents[v]
	pinned := tlsFingerprint(t, victim.stateDir)
	victim.stop(t)
	// An agent whose credentials survived but whose TLS identity is gone refuses to
	// start (a fresh certificate could never match the pin).
	bare := t.TempDir()
	if err := os.WriteFile(filepath.Join(bare, "host.json"), mustRead(t, filepath.Join(victim.stateDir, "host.json")), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(wrennBinary(t), "agent", "--state-dir", bare, "--listen", "127.0.0.1:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "TLS identity") {
		t.Errorf("agent without its TLS identity: %v\n%s", err, out)
	}
	// An impostor: the host's credentials with another certificate.
	impDir := t.TempDir()
	if _, err := hostreg.LoadOrCreateIdentity(impDir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(impDir, "host.json"), mustRead(t, filepath.Join(victim.stateDir, "host.json")), 0o600); err != nil {
		t.Fatal(err)
	}
	logMark := len(cp.logs.String())
	imp := cp.addAgent(t, "", agentOpts{token: tokens[v], listen: ns[v].listen, netns: ns[v].Name, server: ns[v].serverURL(port), stateDir: impDir})
	if imp.id != victim.id || tlsFingerprint(t, impDir) == pinned {
		t.Fatalf("impostor: host %s, certificate %s (pinned %s)", imp.id, tlsFingerprint(t, impDir), pinned)
	}
	// Its heartbeats are refused and the monitor cannot talk to it: the host leaves
	// placement, and new sandboxes go to the other host.
	testutil.WaitFor(t, 20*time.Second, "the control plane refuses the impostor's certificate and takes the host out", func() bool {
		return strings.Contains(cp.logs.String()[logMark:], "does not match the pinned fingerprint") &&
			listHosts(t, cp.base, admin)[victim.id].Status == "unreachable"
	})
	ann, err := client.New(cp.base).Signup(ctx, "ann@example.com", "", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if status, body := rest(t, "POST", cp.base+"/v1/sandboxes", ann.Token, `{"template":"base","allow_internet_access":false}`); status != 201 {
		t.Errorf("create while one host is an impostor: %d %v", status, body)
	} else {
		rest(t, "DELETE", cp.base+"/v1/sandboxes/"+body["id"].(string), ann.Token, "")
	}
	if h := listHosts(t, cp.base, admin)[victim.id]; h.CertFingerprint != pinned || h.Sandboxes != 0 {
		t.Errorf("the impostor's host: %+v", h)
	}
	// The real agent back: the control plane trusts it again.
	imp.stop(t)
	victim = cp.addAgent(t, "", victim.opts)
	time.Sleep(1500 * time.Millisecond)
	logMark = len(cp.logs.String())
	time.Sleep(3 * time.Second)
	if strings.Contains(cp.logs.String()[logMark:], "reconcile: list sandboxes") {
		t.Errorf("the control plane still cannot reach the real agent:\n%s", cp.logs.String()[logMark:])
	}
	testutil.WaitFor(t, 15*time.Second, "the host online again with the real agent", func() bool {
		return listHosts(t, cp.base, admin)[victim.id].Status == "online"
	})
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Placement over three platform hosts and a team's own (BYOC) host, with real VMs;
// graceful delete of a host; a host whose heartbeat stops and comes back.
func TestHostsPlacementAndFailover(t *testing.T) {
	needVM(t)
	checkHostRangeFree(t)
	t.Cleanup(func() { assertNoHostNS(t) })
	ns := []*hostNS{newHostNS(t, 1), newHostNS(t, 2), newHostNS(t, 3), newHostNS(t, 4)}
	// Agents beat every second here (the control plane tells them how often), so a
	// host is judged lost after a few silent seconds.
	const stale = 4 * time.Second
	cp, port := startClusterServer(t, "WRENN_HOST_STALE_AFTER="+stale.String(), "WRENN_HOST_MONITOR_INTERVAL=1s", "WRENN_HOST_HEARTBEAT_INTERVAL=1s")
	admin := cp.admin(t)
	ctx := context.Background()
	platform := make([]*hostAgent, 3)
	for i := range platform {
		platform[i] = cp.addAgent(t, admin, agentOpts{name: fmt.Sprintf("platform-%d", i+1), listen: ns[i].listen, netns: ns[i].Name, server: ns[i].serverURL(port)})
	}
	testutil.WaitFor(t, 15*time.Second, "three hosts online", func() bool {
		n := 0
		for _, h := range listHosts(t, cp.base, admin) {
			if h.Status == "online" {
				n++
			}
		}
		return n == 3
	})

	ann, err := client.New(cp.base).Signup(ctx, "ann@example.com", "", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	annc := client.New(cp.base, client.WithToken(ann.Token))
	var ids []string
	destroyLater := func(c *client.Client, id string) {
		ids = append(ids, id)
		t.Cleanup(func() { _ = c.DestroySandbox(context.Background(), id) })
	}

	// Three sandboxes, least-loaded: one per host. Each create starts once the previous
	// one is placed (recorded), so the boots overlap but the placements do not race.
	type result struct {
		sb  *client.Sandbox
		err error
	}
	results := make([]chan result, 3)
	placed := func() int {
		n := 0
		for _, h := range listHosts(t, cp.base, admin) {
			n += h.Sandboxes
		}
		return n
	}
	for i := range results {
		results[i] = make(chan result, 1)
		go func() {
			sb, err := annc.CreateSandbox(ctx, client.CreateSandboxRequest{})
			results[i] <- result{sb, err}
		}()
		testutil.WaitFor(t, 30*time.Second, "the sandbox placed", func() bool { return placed() == i+1 })
	}
	sbs := make([]string, 3)
	for i, ch := range results {
		r := <-ch
		if r.err != nil {
			t.Fatalf("create %d: %v", i, r.err)
		}
		sbs[i] = r.sb.ID
		destroyLater(annc, r.sb.ID)
	}
	on := map[*hostAgent]string{}
	for _, id := range sbs {
		a := hostOf(id, platform...)
		if a == nil || on[a] != "" {
			t.Fatalf("sandbox %s on agent %v (placed so far: %v)", id, a, on)
		}
		on[a] = id
		res, err := annc.Exec(ctx, id, "hostname", nil, 30*time.Second)
		if err != nil || string(res.Stdout) != id+"\n" {
			t.Fatalf("exec in %s: %+v %v", id, res, err)
		}
	}
	for id, h := range listHosts(t, cp.base, admin) {
		if h.Sandboxes != 1 {
			t.Errorf("host %s carries %d sandboxes, want 1", id, h.Sandboxes)
		}
	}

	// Graceful delete: refused while a sandbox runs there, unless forced; forced, the
	// sandbox is stopped and its VM gone, and the host's credentials stop working.
	gone := platform[1]
	goneSB := on[gone]
	status, body := rest(t, "DELETE", cp.base+"/v1/hosts/"+gone.id, admin, "")
	if list, _ := body["sandboxes"].([]any); status != 409 || len(list) != 1 || list[0] != goneSB {
		t.Fatalf("delete a busy host: %d %v", status, body)
	}
	if status, body := rest(t, "DELETE", cp.base+"/v1/hosts/"+gone.id+"?force=true", admin, ""); status != 204 {
		t.Fatalf("force delete: %d %v", status, body)
	}
	deletedAt := time.Now()
	if sb, err := annc.GetSandbox(ctx, goneSB); err != nil || sb.Status != "stopped" {
		t.Errorf("sandbox of the deleted host: %+v %v", sb, err)
	}
	if vmRunning(goneSB) || hostOf(goneSB, gone) != nil {
		t.Errorf("the VM of %s survived its host's deletion", goneSB)
	}
	if h, ok := listHosts(t, cp.base, admin)[gone.id]; ok && h.Status != "offline" {
		t.Errorf("deleted host listed as %+v", h)
	}

	// BYOC: bob's team runs on its own host only, and nobody else's sandbox goes there.
	bob, err := client.New(cp.base).Signup(ctx, "bob@example.com", "", "bob's long password")
	if err != nil {
		t.Fatal(err)
	}
	if status, _ := rest(t, "POST", cp.base+"/v1/hosts", ann.Token, `{"name":"mine"}`); status != 403 {
		t.Errorf("a team that is not BYOC adds a host: %d", status)
	}
	if status, body := rest(t, "POST", cp.base+"/v1/admin/teams/"+bob.TeamID+"/byoc", admin, `{"byoc":true}`); status != 204 {
		t.Fatalf("make bob's team BYOC: %d %v", status, body)
	}
	status, body = rest(t, "POST", cp.base+"/v1/hosts", bob.Token, `{"name":"bob-host"}`)
	if status != 201 || body["team_id"] != bob.TeamID {
		t.Fatalf("bob adds a host: %d %v", status, body)
	}
	own := cp.addAgent(t, "", agentOpts{token: body["registration_token"].(string), listen: ns[3].listen, netns: ns[3].Name, server: ns[3].serverURL(port)})
	testutil.WaitFor(t, 15*time.Second, "bob's host online", func() bool { return listHosts(t, cp.base, bob.Token)[own.id].Status == "online" })
	if got := listHosts(t, cp.base, bob.Token); len(got) != 1 {
		t.Errorf("bob sees hosts %v", got)
	}
	if got := listHosts(t, cp.base, ann.Token); len(got) != 0 {
		t.Errorf("ann sees hosts %v", got)
	}
	// The BYOC host is the least loaded (0 against 1 and 1): ann's sandbox still goes to
	// a platform host.
	sb, err := annc.CreateSandbox(ctx, client.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	destroyLater(annc, sb.ID)
	if a := hostOf(sb.ID, platform[0], platform[2], own); a != platform[0] && a != platform[2] {
		t.Errorf("ann's fourth sandbox is on %v, want a live platform host", a)
	}
	bobc := client.New(cp.base, client.WithToken(bob.Token))
	bsb, err := bobc.CreateSandbox(ctx, client.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	destroyLater(bobc, bsb.ID)
	if a := hostOf(bsb.ID, append(platform, own)...); a != own {
		t.Errorf("bob's sandbox is on %v, want his own host", a)
	}
	if res, err := bobc.Exec(ctx, bsb.ID, "hostname", nil, 30*time.Second); err != nil || string(res.Stdout) != bsb.ID+"\n" {
		t.Errorf("exec on bob's host: %+v %v", res, err)
	}

	// Heartbeat loss: the agent of the first sandbox goes away (its VM keeps running);
	// after the stale time the host is unreachable and the sandbox missing. Meanwhile
	// the deleted host's agent beats, is refused, says so loudly and keeps serving.
	lost := platform[0]
	lostSB := on[lost]
	lost.stop(t)
	stoppedAt := time.Now()
	testutil.WaitFor(t, stale+15*time.Second, "the silent host unreachable and its sandbox missing", func() bool {
		sb, err := annc.GetSandbox(ctx, lostSB)
		return listHosts(t, cp.base, admin)[lost.id].Status == "unreachable" && err == nil && sb.Status == "missing"
	})
	t.Logf("host unreachable %s after its agent stopped", time.Since(stoppedAt).Round(time.Second))
	if !vmRunning(lostSB) {
		t.Fatalf("the VM of %s died with its agent", lostSB)
	}
	testutil.WaitFor(t, max(time.Until(deletedAt.Add(35*time.Second)), time.Second), "the deleted host's agent logs its refused credentials", func() bool {
		return strings.Contains(gone.logs.String(), "HOST CREDENTIALS")
	})
	if !agentRuns(gone) {
		t.Errorf("the deleted host's agent exited:\n%s", gone.logs.String())
	}

	// Back: the agent restarts on the same state, re-adopts the VM and beats; the host
	// is online and the sandbox running again.
	lost = cp.addAgent(t, "", lost.opts)
	testutil.WaitFor(t, 20*time.Second, "the host online and its sandbox running again", func() bool {
		sb, err := annc.GetSandbox(ctx, lostSB)
		return listHosts(t, cp.base, admin)[lost.id].Status == "online" && err == nil && sb.Status == "running"
	})
	if res, err := annc.Exec(ctx, lostSB, "hostname", nil, 30*time.Second); err != nil || string(res.Stdout) != lostSB+"\n" {
		t.Errorf("exec after the host came back: %+v %v", res, err)
	}
	// Never a normal team's sandbox on the BYOC host.
	if h := listHosts(t, cp.base, admin)[own.id]; h.Sandboxes != 1 {
		t.Errorf("BYOC host carries %d sandboxes, want bob's one", h.Sandboxes)
	}
	entries, _ := os.ReadDir(filepath.Join(own.opts.dir, "sandboxes"))
	if len(entries) != 1 {
		t.Errorf("BYOC host's sandboxes: %v", entries)
	}

	// Everything destroyed through the API leaves no VM behind.
	for _, id := range ids {
		c := annc
		if id == bsb.ID {
			c = bobc
		}
		if err := c.DestroySandbox(ctx, id); err != nil && id != goneSB {
			t.Errorf("destroy %s: %v", id, err)
		}
	}
	for _, id := range ids {
		if vmRunning(id) {
			t.Errorf("VM of %s still runs", id)
		}
	}
}
