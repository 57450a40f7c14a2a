package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/sdktest"
)

// chromium is Debian's browser (scripts/prereqs.sh installs it); playwright-core
// drives it, and downloads none of its own.
const chromium = "/usr/bin/chromium"

// The dashboard in a real browser against a real control plane, agent and VMs:
// test/web/*.test.mjs walk what a user does, in Chromium inside a network
// namespace with no route out (it reaches the control plane on the namespace's
// gateway and nothing else). Screenshots of each page, at desktop and phone width,
// go to WRENN_TEST_ARTIFACTS (default test/web/artifacts, not committed).
func TestDashboardInABrowser(t *testing.T) {
	needVM(t)
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("chromium is missing (scripts/install-deps.sh installs it): %v", err)
	}
	dir := sdktest.ModulesIn(t, "test/web")
	// The namespace first: the control plane's public URL (where GitHub sends the
	// browser back) and the stand-in GitHub are on its gateway.
	ns := sdktest.NewNS(t, "wrenn-e2e-web", "we2e-web", 5)
	_, port, _ := net.SplitHostPort(freeAddr(t))
	publicURL := "http://" + ns.GW + ":" + port
	cp := startServer(t, "0.0.0.0:"+port, githubForBrowser(t, ns.GW, publicURL)...)
	admin := cp.admin(t)
	cp.addAgent(t, admin, agentOpts{})
	busyHostID, busySandbox := busyHost(t, cp, admin)
	// No IPv6 in the browser's namespace: its link-local address settling after the
	// link came up reads to Chromium as a network change, which fails requests in
	// flight (net::ERR_NETWORK_CHANGED). The namespace is reached over IPv4 only.
	if out, err := exec.Command("ip", "netns", "exec", ns.Name, "sysctl", "-qw",
		"net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1").CombinedOutput(); err != nil {
		t.Fatalf("disable IPv6 in %s: %v\n%s", ns.Name, err, out)
	}
	shots := os.Getenv("WRENN_TEST_ARTIFACTS")
	if shots == "" {
		shots = filepath.Join(dir, "artifacts")
	}
	shots = filepath.Join(shots, "dashboard")
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.test.mjs"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no browser tests in %s: %v", dir, err)
	}
	// WRENN_WEB_TESTS=signin,team runs only those files (a quicker round while working
	// on them); the screenshot check below still applies.
	only := os.Getenv("WRENN_WEB_TESTS")
	args := []string{"--test", "--test-reporter=spec", "--test-concurrency=1"}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".test.mjs")
		if only == "" || slices.Contains(strings.Split(only, ","), name) {
			args = append(args, filepath.Base(f))
		}
	}
	if len(args) == 3 {
		t.Fatalf("WRENN_WEB_TESTS=%s names none of %v", only, files)
	}
	out, err := sdktest.RunNode(t, ns, dir, 10*time.Minute, []string{
		"WRENN_WEB_URL=" + publicURL,
		"WRENN_WEB_GITHUB_EMAIL=" + webGitHubUser.Emails[0].Email,
		"WRENN_WEB_BUSY_HOST=" + busyHostID,
		"WRENN_WEB_BUSY_SANDBOX=" + busySandbox,
		"WRENN_WEB_CHROMIUM=" + chromium,
		"WRENN_WEB_SHOTS=" + shots,
		"WRENN_WEB_ADMIN_TOKEN=" + admin,
	}, args...)
	t.Logf("browser test output:\n%s", out)
	if err != nil {
		t.Fatalf("browser test: %v", err)
	}
	// node --test exits non-zero on a failure; a skipped or cancelled test would not.
	for _, want := range []string{"ℹ fail 0", "ℹ skipped 0", "ℹ cancelled 0", "ℹ todo 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("browser test output lacks %q", want)
		}
	}
	if entries, _ := os.ReadDir(shots); len(entries) == 0 {
		t.Errorf("no screenshots in %s", shots)
	}
}
