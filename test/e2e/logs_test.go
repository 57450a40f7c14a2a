package e2e

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/pkg/client"
)

// bootLine is what Wrenn's initramfs prints on a real VM's serial console before it
// starts envd: a boot that got this far shows it in the console log.
const bootLine = "wrenn-init: starting envd"

// kernelLine is a line the guest kernel printed (timestamped; the kernel boots quiet,
// so only warnings show, the first well before the initramfs runs).
var kernelLine = regexp.MustCompile(`(?m)^\[ *[0-9]+\.[0-9]{6}\] `)

// bootShown reports whether a console log shows the guest booting.
func bootShown(log string) bool {
	return strings.Contains(log, bootLine) || kernelLine.MatchString(log)
}

// What `wrenn sandbox create --wait=false` and `wrenn sandbox logs -f` do on a real
// VM: the create answers while the host still boots the sandbox, its console log shows
// the boot while the sandbox is still starting, the follow goes on until the sandbox
// runs, and then it runs commands. Another team, or an id that is not a sandbox, gets
// 404; once the sandbox is stopped its log is gone and a follow ends.
func TestCreateWithoutWaitingShowsTheBoot(t *testing.T) {
	needVM(t)
	base := startControlPlaneWithHost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ann := signupClient(t, ctx, base, "ann@e2e.test")
	bob := signupClient(t, ctx, base, "bob@e2e.test")

	begin := time.Now()
	sb, err := ann.CreateSandbox(ctx, client.CreateSandboxRequest{NoWait: true})
	if err != nil || sb.Status != "starting" {
		t.Fatalf("create without waiting: %+v %v", sb, err)
	}
	t.Logf("create answered in %v", time.Since(begin))
	id := sb.ID
	t.Cleanup(func() { _ = ann.DestroySandbox(context.Background(), id) })

	var followed logBuffer
	followCtx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	followDone := make(chan error, 1)
	go func() { followDone <- ann.FollowLogs(followCtx, id, 0, &followed) }()

	// The console as the boot writes it, read while the sandbox is still starting.
	var sawBoot bool
	for {
		l, err := ann.SandboxLogs(ctx, id, 0)
		if err != nil {
			t.Fatalf("console while booting: %v", err)
		}
		if l.Status != "starting" {
			break
		}
		if bootShown(l.Log) && !sawBoot {
			sawBoot = true
			t.Logf("the console shows the boot %v after the create, the sandbox still starting:\n%s", time.Since(begin), l.Log)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !sawBoot {
		t.Errorf("the console never showed the boot while the sandbox was starting")
	}
	running, err := ann.WaitSandbox(ctx, id)
	if err != nil || running.Status != "running" {
		t.Fatalf("wait: %+v %v", running, err)
	}
	t.Logf("running %v after the create", time.Since(begin))
	res, err := ann.Exec(ctx, id, "/bin/sh", []string{"-c", "echo up in $(hostname)"}, 30*time.Second)
	if err != nil || string(res.Stdout) != "up in "+id+"\n" {
		t.Fatalf("exec once running: %+v %v", res, err)
	}

	// The follow wrote the console as it came: the log as it is now, from its start.
	whole, err := ann.SandboxLogs(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(followed.String(), bootLine) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if got := followed.String(); !strings.Contains(got, bootLine) || !strings.HasPrefix(whole.Log, got) && !strings.HasPrefix(got, whole.Log) {
		t.Errorf("followed log:\n%s\nthe log now:\n%s", got, whole.Log)
	}
	select {
	case err := <-followDone:
		t.Fatalf("follow ended while the sandbox runs: %v", err)
	default:
	}

	// Bob's team, or a bad id: not found, from logs and a follow alike.
	if _, err := bob.SandboxLogs(ctx, id, 0); !client.IsNotFound(err) {
		t.Errorf("another team reads the log: %v", err)
	}
	if err := bob.FollowLogs(ctx, id, 0, &followed); !client.IsNotFound(err) {
		t.Errorf("another team follows the log: %v", err)
	}
	for _, bad := range []string{"sbnotanid", "sb0123456789abcdefgh"} {
		if _, err := ann.SandboxLogs(ctx, bad, 0); !client.IsNotFound(err) {
			t.Errorf("log of %s: %v", bad, err)
		}
	}

	// Stopped: the log went with the sandbox, and the follow ends by itself.
	if err := ann.DestroySandbox(ctx, id); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-followDone:
		if err != nil {
			t.Errorf("follow of a stopped sandbox: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the follow went on after the sandbox stopped")
	}
	if _, err := ann.SandboxLogs(ctx, id, 0); !client.IsConflict(err) {
		t.Errorf("log of a stopped sandbox: %v", err)
	}
}

// signupClient signs email up and returns a client acting as them.
func signupClient(t *testing.T, ctx context.Context, base, email string) *client.Client {
	t.Helper()
	s, err := client.New(base).Signup(ctx, email, "", "correct horse battery")
	if err != nil {
		t.Fatalf("signup %s: %v", email, err)
	}
	return client.New(base, client.WithToken(s.Token))
}
