package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/pkg/client"
)

// Directories of a real guest through the control plane and the SDK: list the root,
// make a directory tree, write into it, list it two levels deep (entries, their
// types, sizes, owners), remove it, and see it gone (404 on read, list and remove).
func TestSandboxDirectories(t *testing.T) {
	needVM(t)
	base := startControlPlaneWithHost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s, err := client.New(base).Signup(ctx, "dirs@example.com", "", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(base, client.WithToken(s.Token))
	sb, err := c.CreateSandbox(ctx, client.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.DestroySandbox(context.Background(), sb.ID) })

	root, err := c.ListDir(ctx, sb.ID, "/", 1)
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]string{}
	for _, e := range root.Entries {
		if strings.Contains(e.Name, "/") || e.Path != "/"+e.Name {
			t.Errorf("root entry %+v: name and path do not agree", e)
		}
		types[e.Name] = e.Type
	}
	if types["etc"] != "dir" || types["home"] != "dir" || root.Truncated {
		t.Errorf("the guest's root: %v (truncated %v)", types, root.Truncated)
	}

	d, err := c.MakeDir(ctx, sb.ID, "/home/user/e2e/sub")
	if err != nil || d.Type != "dir" || d.Owner != "user" || d.Mode != 0o755 {
		t.Fatalf("mkdir: %+v %v", d, err)
	}
	if _, err := c.MakeDir(ctx, sb.ID, "/home/user/e2e/sub"); !client.IsConflict(err) {
		t.Errorf("mkdir again: %v", err)
	}
	if err := c.WriteFile(ctx, sb.ID, "/home/user/e2e/sub/hello.txt", strings.NewReader("hello, guest\n")); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Exec(ctx, sb.ID, "ln", []string{"-s", "/etc/hostname", "/home/user/e2e/link"}, 10*time.Second); err != nil || res.ExitCode != 0 {
		t.Fatalf("ln: %+v %v", res, err)
	}

	l, err := c.ListDir(ctx, sb.ID, "/home/user/e2e", 2)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range l.Entries {
		got = append(got, e.Path+" "+e.Type)
	}
	want := []string{"/home/user/e2e/link symlink", "/home/user/e2e/sub dir", "/home/user/e2e/sub/hello.txt file"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Fatalf("depth 2: %q, want %q", got, want)
	}
	if f := l.Entries[2]; f.Size != 13 || f.Owner != "user" || f.Mode != 0o644 || f.ModifiedAt == nil || time.Since(*f.ModifiedAt).Abs() > 5*time.Minute {
		t.Errorf("the file's entry: %+v", f)
	}
	if ln := l.Entries[0]; ln.SymlinkTarget != "/etc/hostname" {
		t.Errorf("the link's entry: %+v", ln)
	}
	if one, err := c.ListDir(ctx, sb.ID, "/home/user/e2e", 1); err != nil || len(one.Entries) != 2 {
		t.Errorf("depth 1: %+v %v", one, err)
	}

	if err := c.Remove(ctx, sb.ID, "/home/user/e2e"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadFile(ctx, sb.ID, "/home/user/e2e/sub/hello.txt"); !client.IsNotFound(err) {
		t.Errorf("read after remove: %v", err)
	}
	if _, err := c.ListDir(ctx, sb.ID, "/home/user/e2e", 1); !client.IsNotFound(err) {
		t.Errorf("list after remove: %v", err)
	}
	if err := c.Remove(ctx, sb.ID, "/home/user/e2e"); !client.IsNotFound(err) {
		t.Errorf("remove again: %v", err)
	}
	// The link went, not its target.
	if rc, err := c.ReadFile(ctx, sb.ID, "/etc/hostname"); err != nil {
		t.Errorf("the link's target after the remove: %v", err)
	} else {
		rc.Close()
	}
}
