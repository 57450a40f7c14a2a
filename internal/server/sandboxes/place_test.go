package sandboxes_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/internal/server/core"
	"github.com/wrennhq/wrenn/internal/server/sandboxes"
	"github.com/wrennhq/wrenn/internal/server/servertest"
	"github.com/wrennhq/wrenn/pkg/client"
)

// setCapacity makes a host report room for vcpus and memoryMB.
func setCapacity(t *testing.T, env *servertest.Env, hostID string, vcpus, memoryMB int) {
	t.Helper()
	if _, err := env.DB.Exec(context.Background(), `UPDATE hosts SET vcpus = $2, memory_mb = $3 WHERE id = $1`, hostID, vcpus, memoryMB); err != nil {
		t.Fatal(err)
	}
}

// hostLoad is what a host has reserved, as placement counts it.
func hostLoad(t *testing.T, env *servertest.Env, hostID string) db.HostLoadRow {
	t.Helper()
	id, err := core.ParseUUID(hostID)
	if err != nil {
		t.Fatal(err)
	}
	load, err := db.New(env.DB).HostLoad(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return load
}

// TestConcurrentCreatesDoNotOvercommit: n creates at once against the only host,
// which has room for k < n sandboxes. Exactly k succeed; the others get the
// scheduler's "no host" answer (503), and the host's reserved usage is k sandboxes.
// Without the reservation every create read the same free capacity, and most of the
// n succeeded.
func TestConcurrentCreatesDoNotOvercommit(t *testing.T) {
	const n, k = 24, 5
	env := servertest.New(t)
	team := env.NewTeam(t, "ann@example.com")
	setCapacity(t, env, env.HostID, k, k*512) // k sandboxes of the default 1 vCPU, 512 MiB

	ctx := context.Background()
	start := make(chan struct{})
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			<-start
			_, err := team.Client.CreateSandbox(ctx, client.CreateSandboxRequest{})
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)

	created := 0
	for err := range errs {
		var ce *client.Error
		switch {
		case err == nil:
			created++
		case errors.As(err, &ce) && ce.Status == 503 && ce.Code == "unavailable" &&
			strings.Contains(ce.Message, "no host can take this sandbox: every eligible host is full (needs 1 vCPUs, 512 MiB)"):
		default:
			t.Errorf("create: %v, want success or 503 no host", err)
		}
	}
	if created != k {
		t.Errorf("%d of %d concurrent creates succeeded on a host with room for %d", created, n, k)
	}
	if load := hostLoad(t, env, env.HostID); load.Sandboxes != k || load.Vcpus != k || load.MemoryMB != k*512 {
		t.Errorf("reserved on the host: %+v, want %d sandboxes, %d vCPUs, %d MiB", load, k, k, k*512)
	}
	if got := len(env.Agent.SandboxIDs()); got != k {
		t.Errorf("the agent runs %d sandboxes, want %d", got, k)
	}
	t.Logf("%d concurrent creates, room for %d: %d created, %d refused with 503", n, k, created, n-created)
}

// TestFailedCreateReleasesCapacity: when the agent fails a create, the sandbox is
// recorded failed and its reservation is given back.
func TestFailedCreateReleasesCapacity(t *testing.T) {
	env := servertest.New(t)
	team := env.NewTeam(t, "ann@example.com")
	setCapacity(t, env, env.HostID, 1, 512) // room for one
	ctx := context.Background()

	env.Agent.Driver.FailNextStart(errors.New("disk full"))
	if _, err := team.Client.CreateSandbox(ctx, client.CreateSandboxRequest{}); err == nil {
		t.Fatal("create succeeded though the agent failed it")
	}
	if load := hostLoad(t, env, env.HostID); load.Sandboxes != 0 {
		t.Fatalf("a failed create still reserves: %+v", load)
	}
	if _, err := team.Client.CreateSandbox(ctx, client.CreateSandboxRequest{}); err != nil {
		t.Fatalf("create after a failed one: %v", err)
	}
	var ce *client.Error
	if _, err := team.Client.CreateSandbox(ctx, client.CreateSandboxRequest{}); !errors.As(err, &ce) || ce.Status != 503 {
		t.Fatalf("create on a full host: %v, want 503", err)
	}
}

// TestCreatePlacedByTag: a create asking for host tags lands only on a host carrying
// all of them; host tags come from the database (PUT /v1/hosts/{id}/tags/{tag}).
func TestCreatePlacedByTag(t *testing.T) {
	env := servertest.New(t)
	team := env.NewTeam(t, "ann@example.com")
	ctx := context.Background()
	gpu, gpuAgent := env.AddHost(t, "")
	q := db.New(env.DB)
	for _, tag := range []string{"gpu", "eu"} {
		id, _ := core.ParseUUID(gpu)
		if err := q.AddHostTag(ctx, db.AddHostTagParams{HostID: id, Tag: tag}); err != nil {
			t.Fatal(err)
		}
	}
	p, err := env.Service.Accounts.FromAPIKey(ctx, team.Key)
	if err != nil {
		t.Fatal(err)
	}
	svc := env.Service.Sandboxes
	for i := range 3 {
		if _, err := svc.CreateSandbox(ctx, p, sandboxes.SandboxSpec{HostTags: []string{"eu", "gpu"}}); err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	if got, other := len(gpuAgent.SandboxIDs()), len(env.Agent.SandboxIDs()); got != 3 || other != 0 {
		t.Errorf("tagged creates: %d on the tagged host, %d on the other, want 3 and 0", got, other)
	}
	_, err = svc.CreateSandbox(ctx, p, sandboxes.SandboxSpec{HostTags: []string{"gpu", "arm"}})
	if !errors.Is(err, core.ErrUnavailable) || !strings.Contains(err.Error(), "none of platform hosts has the tags gpu, arm") {
		t.Errorf("create asking for a tag no host has: %v", err)
	}
	_, err = svc.CreateSandbox(ctx, p, sandboxes.SandboxSpec{HostTags: []string{"GPU"}})
	if !errors.Is(err, core.ErrInvalid) {
		t.Errorf("create with a malformed tag: %v", err)
	}
}
