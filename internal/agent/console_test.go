package agent_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/hostagent/v1"
	"github.com/wrennhq/wrenn/internal/agent"
	"github.com/wrennhq/wrenn/internal/agent/agenttest"
	"github.com/wrennhq/wrenn/internal/ident"
	"github.com/wrennhq/wrenn/internal/vmm"
)

func consoleLog(t *testing.T, a *agenttest.Agent, id string, offset, limit int64) (*pb.GetConsoleLogResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := a.Client.GetConsoleLog(ctx, connect.NewRequest(&pb.GetConsoleLogRequest{SandboxId: id, Offset: offset, Limit: limit}))
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

// An operator reads the console of a sandbox whose create is still booting it (the
// create holds the sandbox's transition lock all along), of a running one and of a
// paused one; pieces read by offset join up to the whole log.
func TestConsoleLogInEveryState(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	id := ident.NewSandboxID()
	booting, release := make(chan string), make(chan struct{})
	a.Driver.SetHooks(func(_ context.Context, cfg vmm.Config) error {
		// What a VM writes to its console before envd answers.
		if err := os.WriteFile(filepath.Join(cfg.Dir, vmm.ConsoleLogName), []byte("Linux version 6.1 booting\n"), 0o600); err != nil {
			return err
		}
		booting <- cfg.Dir
		<-release
		return nil
	}, nil)
	created := make(chan error, 1)
	go func() {
		_, _, _, err := a.Manager.Create(context.Background(), agent.Spec{ID: id, Template: agenttest.Template})
		created <- err
	}()
	<-booting
	got, err := consoleLog(t, a, id, 0, 0)
	if err != nil || string(got.GetData()) != "Linux version 6.1 booting\n" || got.GetNextOffset() != got.GetSize() || got.GetSize() != 26 {
		t.Fatalf("console while starting: %v, %v", got, err)
	}
	close(release)
	a.Driver.SetHooks(nil, nil)
	if err := <-created; err != nil {
		t.Fatal(err)
	}

	// The fake VM's console is envd's output; read it whole, then in two pieces.
	whole, err := consoleLog(t, a, id, 0, 0)
	if err != nil || len(whole.GetData()) < 8 || whole.GetNextOffset() != whole.GetSize() || whole.GetOffset() != 0 {
		t.Fatalf("console while running: %v, %v", whole, err)
	}
	first, err := consoleLog(t, a, id, 0, 5)
	if err != nil || len(first.GetData()) != 5 || first.GetNextOffset() != 5 {
		t.Fatalf("first 5 bytes: %v, %v", first, err)
	}
	rest, err := consoleLog(t, a, id, first.GetNextOffset(), 0)
	// envd may log more meanwhile: the pieces join up to what was read whole, and on.
	joined := append(first.GetData(), rest.GetData()...)
	n := min(len(joined), len(whole.GetData()))
	if err != nil || !bytes.Equal(joined[:n], whole.GetData()[:n]) || rest.GetOffset() != 5 || rest.GetNextOffset() != int64(len(joined)) {
		t.Fatalf("pieces do not join up: %q + %q vs %q (%v)", first.GetData(), rest.GetData(), whole.GetData(), err)
	}
	tail, err := consoleLog(t, a, id, -4, 0)
	if err != nil || tail.GetOffset() != tail.GetSize()-4 || len(tail.GetData()) != 4 {
		t.Fatalf("last 4 bytes: %v, %v", tail, err)
	}

	if _, _, err := a.Manager.Pause(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	paused, err := consoleLog(t, a, id, 0, 0)
	if err != nil || len(paused.GetData()) == 0 || paused.GetNextOffset() != paused.GetSize() {
		t.Fatalf("console while paused: %v, %v", paused, err)
	}
}

// A read is capped (a guest can flood its console); an offset past the end (the log
// was started again) reads from 0 and says so; a bad id or a sandbox the agent does
// not have is not found, and a negative limit is refused.
func TestConsoleLogBounds(t *testing.T) {
	a := agenttest.Start(t, agenttest.Options{})
	info := create(t, a)
	id := info.Spec.ID
	if _, _, err := a.Manager.Pause(context.Background(), id); err != nil {
		t.Fatal(err) // paused: nothing rewrites the log file under the test
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), (agent.MaxConsoleRead+4096)/16)
	if err := os.WriteFile(filepath.Join(a.Dir, "sandboxes", id, vmm.ConsoleLogName), big, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := consoleLog(t, a, id, 0, 0)
	if err != nil || len(got.GetData()) != agent.MaxConsoleRead || got.GetNextOffset() != agent.MaxConsoleRead || got.GetSize() != int64(len(big)) {
		t.Fatalf("default read of a big log: %d bytes, next %d, size %d, %v", len(got.GetData()), got.GetNextOffset(), got.GetSize(), err)
	}
	if got, err = consoleLog(t, a, id, 0, 10*agent.MaxConsoleRead); err != nil || len(got.GetData()) != agent.MaxConsoleRead {
		t.Fatalf("a limit over the cap reads the cap: %d bytes, %v", len(got.GetData()), err)
	}
	end, err := consoleLog(t, a, id, int64(len(big)), 0)
	if err != nil || len(end.GetData()) != 0 || end.GetNextOffset() != int64(len(big)) {
		t.Fatalf("read at the end: %v, %v", end, err)
	}
	past, err := consoleLog(t, a, id, int64(len(big))+100, 16)
	if err != nil || past.GetOffset() != 0 || string(past.GetData()) != "0123456789abcdef" {
		t.Fatalf("read past the end: %v, %v", past, err)
	}

	_, err = consoleLog(t, a, id, 0, -1)
	wantConnectCode(t, err, connect.CodeInvalidArgument)
	for _, bad := range []string{"../../../etc/passwd", "sb_bad", ""} {
		_, err = consoleLog(t, a, bad, 0, 0)
		wantConnectCode(t, err, connect.CodeNotFound)
	}
	_, err = consoleLog(t, a, ident.NewSandboxID(), 0, 0)
	wantConnectCode(t, err, connect.CodeNotFound)
	if err := a.Manager.Destroy(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	_, err = consoleLog(t, a, id, 0, 0)
	wantConnectCode(t, err, connect.CodeNotFound)
}

func wantConnectCode(t *testing.T, err error, code connect.Code) {
	t.Helper()
	if connect.CodeOf(err) != code {
		t.Fatalf("got %v, want code %v", err, code)
	}
}
