package envdclient_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/envd/envdapi"
	"github.com/wrennhq/wrenn/internal/envd/envdtest"
	"github.com/wrennhq/wrenn/internal/envdclient"
)

func TestInitAndExecAgainstRealEnvd(t *testing.T) {
	e := envdtest.Start(t)
	c := envdclient.New(e.URL, "", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	token := "tok-1"
	now := time.Now()
	if err := c.Init(ctx, envdapi.InitRequest{AccessToken: &token, DefaultUser: "user", DefaultWorkdir: "/home/user", Timestamp: &now, SandboxID: "sbtest", EnvVars: map[string]string{"X": "1"}}); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	res, err := c.Exec(ctx, "/bin/bash", []string{"-c", "echo $X $E2B_SANDBOX_ID $(whoami); echo oops >&2; exit 4"}, &out, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != "1 sbtest user\n" || errOut.String() != "oops\n" || res.ExitCode != 4 || res.Status != "exit status 4" || res.PID == 0 {
		t.Errorf("exec: %+v stdout %q stderr %q", res, out.String(), errOut.String())
	}

	// A client without the token is refused; rotation needs the current token.
	stranger := envdclient.New(e.URL, "", nil)
	if _, err := stranger.Exec(ctx, "true", nil, nil, nil); err == nil || !strings.Contains(err.Error(), "unauthenticated") {
		t.Errorf("exec without token: %v", err)
	}
	next := "tok-2"
	if err := stranger.Init(ctx, envdapi.InitRequest{AccessToken: &next}); err == nil {
		t.Error("token rotated without proof")
	}
	if err := c.Init(ctx, envdapi.InitRequest{AccessToken: &next}); err != nil {
		t.Fatalf("rotation with proof: %v", err)
	}
	if _, err := c.Exec(ctx, "true", nil, nil, nil); err != nil {
		t.Errorf("exec after rotation: %v", err)
	}

	// /metrics answers with the token only.
	m, err := c.Metrics(ctx)
	if err != nil || m.CPUCount < 1 || m.MemTotal == 0 || m.MemUsed == 0 || m.DiskTotal == 0 || m.CPUUsedPct < 0 || m.CPUUsedPct > 100 {
		t.Errorf("metrics: %+v %v", m, err)
	}
	if _, err := stranger.Metrics(ctx); err == nil || !strings.Contains(err.Error(), "status 401") {
		t.Errorf("metrics without the token: %v", err)
	}
}
