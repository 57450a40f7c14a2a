package client_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/server/servertest"
	"github.com/wrennhq/wrenn/internal/vmm"
	"github.com/wrennhq/wrenn/pkg/client"
)

// lockedBuffer is a bytes.Buffer written by FollowLogs' goroutine and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// What `wrenn sandbox create --wait=false` then `wrenn sandbox logs -f` do: the
// create answers while the host still boots the sandbox, the follow shows the console
// as the boot writes it and ends once the sandbox has ended; WaitSandbox reports the
// boot's end, a failed one as ErrSandboxFailed with the host's reason.
func TestFollowLogsOfACreateWithoutWaiting(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv := servertest.New(t)
	c := srv.NewTeam(t, "sdk@example.com").Client
	release := make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	srv.Agent.Driver.SetHooks(func(_ context.Context, cfg vmm.Config) error {
		if err := os.WriteFile(filepath.Join(cfg.Dir, vmm.ConsoleLogName), []byte("Linux version 6.1\n"), 0o600); err != nil {
			return err
		}
		<-release
		return nil
	}, nil)

	private := false
	sb, err := c.CreateSandbox(ctx, client.CreateSandboxRequest{NoWait: true, AllowPublicTraffic: &private})
	if err != nil || sb.Status != "starting" || !strings.HasPrefix(sb.TrafficAccessToken, "wrt_") || sb.AllowPublicTraffic {
		t.Fatalf("create without waiting: %+v %v", sb, err)
	}
	var out lockedBuffer
	followed := make(chan error, 1)
	go func() { followed <- c.FollowLogs(ctx, sb.ID, 0, &out) }()
	for !strings.Contains(out.String(), "Linux version") {
		select {
		case err := <-followed:
			t.Fatalf("follow ended while the sandbox boots: %v (%q)", err, out.String())
		case <-ctx.Done():
			t.Fatalf("the boot's console never showed: %q", out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if got, err := c.GetSandbox(ctx, sb.ID); err != nil || got.Status != "starting" {
		t.Fatalf("while its console shows the boot: %+v %v", got, err)
	}
	releaseOnce.Do(func() { close(release) })
	srv.Agent.Driver.SetHooks(nil, nil)
	running, err := c.WaitSandbox(ctx, sb.ID)
	if err != nil || running.Status != "running" {
		t.Fatalf("wait: %+v %v", running, err)
	}
	if res, err := c.Exec(ctx, sb.ID, "echo", []string{"up"}, 0); err != nil || string(res.Stdout) != "up\n" {
		t.Errorf("exec once running: %+v %v", res, err)
	}
	select {
	case err := <-followed:
		t.Fatalf("follow ended while the sandbox runs: %v", err)
	case <-time.After(3 * client.PollInterval):
	}
	if err := c.DestroySandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-followed:
		if err != nil {
			t.Errorf("follow of a sandbox that ended: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow went on after the sandbox was stopped")
	}
	if !strings.HasPrefix(out.String(), "Linux version 6.1\n") {
		t.Errorf("followed log: %q", out.String())
	}

	srv.Agent.Driver.FailNextStart(errors.New("disk full"))
	failing, err := c.CreateSandbox(ctx, client.CreateSandboxRequest{NoWait: true})
	if err != nil || failing.Status != "starting" {
		t.Fatalf("create without waiting, to fail: %+v %v", failing, err)
	}
	if got, err := c.WaitSandbox(ctx, failing.ID); !errors.Is(err, client.ErrSandboxFailed) || !strings.Contains(err.Error(), "disk full") || got.Status != "error" {
		t.Errorf("wait for a failing create: %+v %v", got, err)
	}
	// Its log went with the failed create: nothing to follow, and no error.
	if err := c.FollowLogs(ctx, failing.ID, 0, &out); err != nil {
		t.Errorf("follow of a failed create: %v", err)
	}
	if _, err := c.SandboxLogs(ctx, failing.ID, 0); !client.IsConflict(err) {
		t.Errorf("log of a failed create: %v", err)
	}
	if err := c.FollowLogs(ctx, "sb0123456789abcdefgh", 0, &out); !client.IsNotFound(err) {
		t.Errorf("follow of no sandbox: %v", err)
	}
	if _, err := c.WaitSandbox(ctx, "sb0123456789abcdefgh"); !client.IsNotFound(err) {
		t.Errorf("wait for no sandbox: %v", err)
	}
}
