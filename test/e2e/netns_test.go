package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/wrennhq/wrenn/internal/sdktest"
)

// hostNS is a network namespace standing in for one host of a cluster: a veth pair to
// the root namespace, which is where the control plane and the test run. Its Name is
// wrenn-e2e-h{i}; GW (10.99.{i}.1), the root namespace's end, is where the control
// plane is reached; IP (10.99.{i}.2) is the host's own address.
type hostNS struct {
	*sdktest.NS
	listen string // the agent's address, 10.99.{i}.2:50051
}

// newHostNS creates namespace wrenn-e2e-h{i} (i in 1..250) joined to the root namespace
// by veth we2e-h{i} (10.99.{i}.1/24) ↔ eth0 in the namespace (10.99.{i}.2/24), lo up
// (sdktest.NewNS: no default route, so nothing sent from it can be forwarded off the
// machine). The test's cleanup deletes it.
func newHostNS(t *testing.T, i int) *hostNS {
	t.Helper()
	ns := sdktest.NewNS(t, fmt.Sprintf("wrenn-e2e-h%d", i), fmt.Sprintf("we2e-h%d", i), i)
	return &hostNS{NS: ns, listen: ns.IP + ":50051"}
}

// checkHostRangeFree fails when 10.99.0.0/16 is already routed on this machine.
func checkHostRangeFree(t *testing.T) {
	t.Helper()
	out, err := exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		t.Fatalf("ip route: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "10.99.") && !strings.Contains(line, "we2e-h") {
			t.Fatalf("10.99.0.0/16, the test hosts' range, is in use here: %s", line)
		}
	}
}

// assertNoHostNS checks that no namespace or link of the host tests remains.
func assertNoHostNS(t *testing.T) {
	t.Helper()
	nss, _ := os.ReadDir("/var/run/netns")
	for _, n := range nss {
		if strings.HasPrefix(n.Name(), "wrenn-e2e-h") {
			t.Errorf("namespace %s remains", n.Name())
		}
		// The registered agents' slots (addAgent: 60000 + 100·n).
		if i, err := strconv.Atoi(strings.TrimPrefix(n.Name(), "wrenn-ns-")); err == nil && i >= 60000 && i < agentSlots {
			t.Errorf("network namespace %s remains", n.Name())
		}
	}
	if out, _ := exec.Command("ip", "-br", "link").Output(); strings.Contains(string(out), "we2e-h") {
		t.Errorf("a we2e-h* link remains:\n%s", out)
	}
}

// An operator's `ip netns add` / `ip netns del` of an unrelated namespace beside a
// running sandbox must not break its destruction (issue 11: the slot's namespace mount
// ended up shadowed, DELETE answered 500 and the mount leaked): DELETE answers 204 and
// nothing of the sandbox's slot is left mounted.
func TestDestroyAfterUnrelatedIPNetns(t *testing.T) {
	needVM(t)
	cp := startServer(t, "")
	admin := cp.admin(t)
	agent := cp.addAgent(t, admin, agentOpts{})

	status, sb := rest(t, "POST", cp.base+"/v1/sandboxes", admin, `{"template":"base","allow_internet_access":false}`)
	if status != 201 || sb["status"] != "running" {
		t.Fatalf("create sandbox: %d %v", status, sb)
	}
	id := sb["id"].(string)
	t.Cleanup(func() { rest(t, "DELETE", cp.base+"/v1/sandboxes/"+id, admin, "") })
	raw, err := os.ReadFile(filepath.Join(agent.opts.dir, "sandboxes", id, "sandbox.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Slot int `json:"slot"`
	}
	if err := json.Unmarshal(raw, &rec); err != nil || rec.Slot == 0 {
		t.Fatalf("slot of sandbox %s: %v %s", id, err, raw)
	}
	ns := "wrenn-ns-" + strconv.Itoa(rec.Slot)

	const other = "wrenn-e2e-unrelated"
	_ = exec.Command("ip", "netns", "del", other).Run() // a leftover of an interrupted run
	for _, args := range [][]string{{"netns", "add", other}, {"netns", "del", other}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	if status, body := rest(t, "DELETE", cp.base+"/v1/sandboxes/"+id, admin, ""); status != 204 {
		t.Fatalf("destroy after ip netns add/del: %d %v", status, body)
	}
	if _, err := os.Stat("/var/run/netns/" + ns); !os.IsNotExist(err) {
		t.Errorf("namespace file %s remains: %v", ns, err)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (strings.HasSuffix(f[4], "/netns/"+ns) || strings.HasSuffix(f[4], "/netns/"+other)) {
			t.Errorf("still mounted: %s", line)
		}
	}
}
