package client_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/server/servertest"
	"github.com/wrennhq/wrenn/pkg/client"
)

// The SDK's directory calls against the control plane and a real agent: make, list
// (depth, fields), remove, and the errors a caller tests for.
func TestDirectories(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv := servertest.New(t)
	c := srv.NewTeam(t, "dirs@example.com").Client
	sb, err := c.CreateSandbox(ctx, client.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}

	d, err := c.MakeDir(ctx, sb.ID, "/home/user/a b/c")
	if err != nil || d.Type != "dir" || d.Name != "c" || d.Path != "/home/user/a b/c" || d.Mode != 0o755 {
		t.Fatalf("mkdir: %+v %v", d, err)
	}
	if _, err := c.MakeDir(ctx, sb.ID, "/home/user/a b/c"); !client.IsConflict(err) {
		t.Errorf("mkdir again: %v", err)
	}
	if err := c.WriteFile(ctx, sb.ID, "/home/user/a b/c/f&x.txt", strings.NewReader("12345")); err != nil {
		t.Fatal(err)
	}
	l, err := c.ListDir(ctx, sb.ID, "/home/user/a b", 0)
	if err != nil || len(l.Entries) != 1 || l.Truncated || l.Entries[0].Name != "c" {
		t.Fatalf("list: %+v %v", l, err)
	}
	l, err = c.ListDir(ctx, sb.ID, "/home/user/a b", 2)
	if err != nil || len(l.Entries) != 2 {
		t.Fatalf("list depth 2: %+v %v", l, err)
	}
	if f := l.Entries[1]; f.Path != "/home/user/a b/c/f&x.txt" || f.Type != "file" || f.Size != 5 || f.ModifiedAt == nil || f.Owner != "user" {
		t.Errorf("file entry: %+v", f)
	}
	if _, err := c.ListDir(ctx, sb.ID, "relative", 1); !isStatus(err, 400) {
		t.Errorf("relative path: %v", err)
	}

	if err := c.Remove(ctx, sb.ID, "/home/user/a b"); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx, sb.ID, "/home/user/a b"); !client.IsNotFound(err) {
		t.Errorf("remove again: %v", err)
	}
	if _, err := c.ReadFile(ctx, sb.ID, "/home/user/a b/c/f&x.txt"); !client.IsNotFound(err) {
		t.Errorf("read removed: %v", err)
	}
}
