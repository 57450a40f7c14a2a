package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/wrennhq/wrenn/pkg/client"
)

// A team with a running VM and a snapshot, made and deleted through the wrenn CLI
// against a real control plane and agent: after `wrenn team rm` the VM, its network
// namespace and the snapshot's files are gone from the host, the team's API key and
// its member's login are refused, and the team's audit trail is still there for a
// platform administrator.
func TestTeamDeleteWithVMs(t *testing.T) {
	needVM(t)
	cp := startServer(t, "")
	adminToken := cp.admin(t)
	agent := cp.addAgent(t, adminToken, agentOpts{})
	ctx := context.Background()
	if _, err := client.New(cp.base).Signup(ctx, "teamvm-member@e2e.test", "", "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	cfgDir := t.TempDir()
	wrenn := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(wrennBinary(t), args...)
		cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+cfgDir, "WRENN_URL="+cp.base, "WRENN_PASSWORD=correct horse battery")
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			t.Fatalf("wrenn %v: %v\n%s%s", args, err, out.String(), errOut.String())
		}
		return out.String()
	}
	decode := func(out string, v any) {
		t.Helper()
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("decode %q: %v", out, err)
		}
	}

	wrenn("signup", "--email", "teamvm@e2e.test")
	var team struct{ ID, Name string }
	decode(wrenn("team", "create", "--json", "VM team"), &team)
	wrenn("team", "switch", team.ID)
	wrenn("member", "add", "teamvm-member@e2e.test")
	var key struct{ Key string }
	decode(wrenn("keys", "create", "--json", "doomed"), &key)
	var sb struct{ ID, Status string }
	decode(wrenn("sandbox", "create", "--json"), &sb)
	if sb.Status != "running" {
		t.Fatalf("sandbox: %+v", sb)
	}
	wrenn("snapshot", "create", sb.ID, "team-snap")
	snapDir := filepath.Join(agent.opts.dir, "snapshots", "team-snap")
	matches, _ := filepath.Glob(filepath.Join(agent.opts.dir, "snapshots", "*"))
	if len(matches) == 0 {
		t.Fatalf("no snapshot files on the host under %s", filepath.Dir(snapDir))
	}
	vmm := vmmProcesses(t, sb.ID)
	if vmm == 0 {
		t.Fatalf("no VMM process runs sandbox %s", sb.ID)
	}
	member, err := client.New(cp.base).Login(ctx, "teamvm-member@e2e.test", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	mc := client.New(cp.base, client.WithToken(member.Token))
	s, err := mc.SwitchTeam(ctx, team.ID)
	if err != nil {
		t.Fatal(err)
	}
	memberInTeam := client.New(cp.base, client.WithToken(s.Token))

	wrenn("team", "rm", "--yes", team.ID)

	if n := vmmProcesses(t, sb.ID); n != 0 {
		t.Errorf("%d VMM processes of sandbox %s still run after the team's delete", n, sb.ID)
	}
	if left, _ := filepath.Glob(filepath.Join(agent.opts.dir, "snapshots", "*")); len(left) != 0 {
		t.Errorf("snapshot files left on the host: %v", left)
	}
	if _, err := client.New(cp.base, client.WithAPIKey(key.Key)).ListSandboxes(ctx); !isHTTP(err, http.StatusUnauthorized) {
		t.Errorf("the deleted team's API key: %v, want 401", err)
	}
	if _, err := memberInTeam.ListSandboxes(ctx); !isHTTP(err, http.StatusUnauthorized) {
		t.Errorf("the member's token for the deleted team: %v, want 401", err)
	}
	page, err := client.New(cp.base, client.WithToken(adminToken)).AdminAuditLogs(ctx, client.AuditLogQuery{Teams: []string{team.ID}, Limit: 200})
	if err != nil {
		t.Fatal(err)
	}
	actions := map[string]bool{}
	for _, e := range page.AuditLogs {
		actions[e.Action] = true
	}
	for _, want := range []string{"team.create", "member.add", "sandbox.create", "snapshot.create", "team.delete"} {
		if !actions[want] {
			t.Errorf("the deleted team's audit trail lacks %s: %v", want, actions)
		}
	}
}

// vmmProcesses counts the QEMU processes whose command line names the sandbox.
func vmmProcesses(t *testing.T, sandboxID string) int {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*")
	n := 0
	for _, p := range procs {
		comm, _ := os.ReadFile(filepath.Join(p, "comm"))
		cmdline, _ := os.ReadFile(filepath.Join(p, "cmdline"))
		if bytes.HasPrefix(comm, []byte("qemu")) && bytes.Contains(cmdline, []byte(sandboxID)) {
			n++
		}
	}
	return n
}

func isHTTP(err error, status int) bool {
	var e *client.Error
	return errors.As(err, &e) && e.Status == status
}
