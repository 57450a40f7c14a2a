package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/server/servertest"
	"github.com/wrennhq/wrenn/pkg/client"
)

// Every snapshot call of the SDK against the control plane and a real agent: take one,
// refuse and then allow its name again, start a sandbox from it, delete it; and another
// team neither sees nor touches it.
func TestSnapshots(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv := servertest.New(t)
	c := srv.NewTeam(t, "snap@example.com").Client
	// 2 vCPUs, not the default, so that a sandbox made from the snapshot shows it took
	// the snapshot's size.
	sb, err := c.CreateSandbox(ctx, client.CreateSandboxRequest{VCPUs: 2})
	if err != nil || sb.Status != "running" {
		t.Fatalf("create sandbox: %+v %v", sb, err)
	}

	snap, err := c.CreateSnapshot(ctx, sb.ID, "my-snap", false)
	if err != nil || snap.Name != "my-snap" || snap.SandboxID != sb.ID || snap.Template != sb.Template ||
		snap.VCPUs != sb.VCPUs || snap.MemoryMB != sb.MemoryMB || snap.CreatedAt.IsZero() || snap.UpdatedAt.IsZero() {
		t.Fatalf("create snapshot: %+v %v", snap, err)
	}
	if _, err := c.CreateSnapshot(ctx, sb.ID, "my-snap", false); !client.IsConflict(err) {
		t.Errorf("the same name without overwrite: %v", err)
	}
	again, err := c.CreateSnapshot(ctx, sb.ID, "my-snap", true)
	if err != nil || again.Name != "my-snap" || again.SandboxID != sb.ID || again.UpdatedAt.Before(snap.UpdatedAt) {
		t.Fatalf("overwrite: %+v %v", again, err)
	}
	if _, err := c.CreateSnapshot(ctx, "sb0123456789abcdefgh", "other", false); !client.IsNotFound(err) {
		t.Errorf("snapshot of a missing sandbox: %v", err)
	}

	list, err := c.ListSnapshots(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "my-snap" || list[0].SandboxID != sb.ID {
		t.Fatalf("list: %+v %v", list, err)
	}
	if got, err := c.GetSnapshot(ctx, "my-snap"); err != nil || got.Name != "my-snap" || got.VCPUs != sb.VCPUs {
		t.Fatalf("get: %+v %v", got, err)
	}

	// A sandbox from the snapshot has its size without asking.
	from, err := c.CreateSandbox(ctx, client.CreateSandboxRequest{Template: "my-snap"})
	if err != nil || from.Status != "running" || from.VCPUs != snap.VCPUs || from.MemoryMB != snap.MemoryMB {
		t.Fatalf("sandbox from the snapshot: %+v %v", from, err)
	}
	var apiErr *client.Error
	if _, err := c.CreateSandbox(ctx, client.CreateSandboxRequest{Template: "my-snap", VCPUs: 1}); !errors.As(err, &apiErr) || apiErr.Status != 400 {
		t.Errorf("a sandbox from the snapshot with other vCPUs: %v", err)
	}

	// Another team: the snapshot is not there for it, nor is the sandbox.
	other := srv.NewTeam(t, "other@example.com").Client
	if _, err := other.GetSnapshot(ctx, "my-snap"); !client.IsNotFound(err) {
		t.Errorf("another team's get: %v", err)
	}
	if err := other.DeleteSnapshot(ctx, "my-snap"); !client.IsNotFound(err) {
		t.Errorf("another team's delete: %v", err)
	}
	if list, err := other.ListSnapshots(ctx); err != nil || len(list) != 0 {
		t.Errorf("another team's list: %+v %v", list, err)
	}
	if _, err := other.CreateSnapshot(ctx, sb.ID, "stolen", false); !client.IsNotFound(err) {
		t.Errorf("another team snapshotting the sandbox: %v", err)
	}

	if err := c.DeleteSnapshot(ctx, "my-snap"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetSnapshot(ctx, "my-snap"); !client.IsNotFound(err) {
		t.Errorf("get after delete: %v", err)
	}
	if err := c.DeleteSnapshot(ctx, "my-snap"); !client.IsNotFound(err) {
		t.Errorf("delete twice: %v", err)
	}
	for _, id := range []string{from.ID, sb.ID} {
		if err := c.DestroySandbox(ctx, id); err != nil {
			t.Errorf("destroy %s: %v", id, err)
		}
	}
}
