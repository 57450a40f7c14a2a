package envdclient_test

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/wrennhq/wrenn/internal/envd/envdapi"
	"github.com/wrennhq/wrenn/internal/envd/envdtest"
	"github.com/wrennhq/wrenn/internal/envdclient"
)

// TestFilesystemAgainstRealEnvd drives ListDir, MakeDir, Stat and Remove through a real
// envd, and checks that its refusals match the io/fs errors the layers above map.
func TestFilesystemAgainstRealEnvd(t *testing.T) {
	e := envdtest.Start(t)
	c := envdclient.New(e.URL, "", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	token := "tok-fs"
	if err := c.Init(ctx, envdapi.InitRequest{AccessToken: &token, DefaultUser: "user", DefaultWorkdir: "/home/user"}); err != nil {
		t.Fatal(err)
	}

	made, err := c.MakeDir(ctx, "/home/user/d/sub", "")
	if err != nil || made.Type != envdclient.TypeDir || made.Path != "/home/user/d/sub" || made.Owner != "user" {
		t.Fatalf("mkdir: %+v %v", made, err)
	}
	if _, err := c.MakeDir(ctx, "/home/user/d/sub", ""); !errors.Is(err, fs.ErrExist) {
		t.Errorf("mkdir again: %v, want fs.ErrExist", err)
	}
	if err := c.WriteFile(ctx, "/home/user/d/sub/f.txt", "", strings.NewReader("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "ln", []string{"-s", "/home/user/d/sub/f.txt", "/home/user/d/link"}, nil, nil); err != nil {
		t.Fatal(err)
	}

	one, err := c.ListDir(ctx, "/home/user/d", 1, "")
	if err != nil || len(one) != 2 || one[0].Name != "link" || one[0].Type != envdclient.TypeSymlink || one[0].SymlinkTarget != "/home/user/d/sub/f.txt" ||
		one[1].Name != "sub" || one[1].Type != envdclient.TypeDir {
		t.Errorf("list depth 1: %+v %v", one, err)
	}
	two, err := c.ListDir(ctx, "/home/user/d", 2, "")
	if err != nil || len(two) != 3 || two[2].Path != "/home/user/d/sub/f.txt" || two[2].Type != envdclient.TypeFile || two[2].Size != 5 ||
		two[2].Permissions == "" || two[2].Modified.IsZero() || time.Since(two[2].Modified) > time.Minute {
		t.Errorf("list depth 2: %+v %v", two, err)
	}
	if st, err := c.Stat(ctx, "/home/user/d/sub/f.txt", ""); err != nil || st.Size != 5 || st.Type != envdclient.TypeFile {
		t.Errorf("stat: %+v %v", st, err)
	}

	if err := c.Remove(ctx, "/home/user/d", ""); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		err  error
		want error
	}{
		{"list removed", func() error { _, err := c.ListDir(ctx, "/home/user/d", 1, ""); return err }(), fs.ErrNotExist},
		{"stat removed", func() error { _, err := c.Stat(ctx, "/home/user/d", ""); return err }(), fs.ErrNotExist},
		{"list a file", func() error { _, err := c.ListDir(ctx, "/etc/hostname", 1, ""); return err }(), fs.ErrInvalid},
		{"mkdir over a file", func() error { _, err := c.MakeDir(ctx, "/etc/hostname", ""); return err }(), fs.ErrInvalid},
	} {
		var fe *envdclient.FSError
		if !errors.Is(c.err, c.want) || !errors.As(c.err, &fe) || fe.Message == "" {
			t.Errorf("%s: %v, want %v", c.name, c.err, c.want)
		}
	}
	// The user header reaches envd: what it makes is that user's (in the throwaway
	// home: envdtest's guest shares the host's /tmp).
	if d, err := c.MakeDir(ctx, "/home/user/rootdir", "root"); err != nil || d.Owner != "root" {
		t.Errorf("mkdir as root: %+v %v", d, err)
	}
	if _, err := c.ListDir(ctx, "/home/user", 1, "nobody-such"); err == nil {
		t.Errorf("list as an unknown user: no error")
	}
}

// TestFSErrorMeaning pins the codes envd answers to the io/fs errors they match,
// including its internal answer to a refused remove.
func TestFSErrorMeaning(t *testing.T) {
	for _, c := range []struct {
		code    connect.Code
		msg     string
		want    error
		notWant error
	}{
		{connect.CodeNotFound, "path not found: /x", fs.ErrNotExist, fs.ErrInvalid},
		{connect.CodeAlreadyExists, "directory already exists: /x", fs.ErrExist, fs.ErrNotExist},
		{connect.CodePermissionDenied, "nope", fs.ErrPermission, fs.ErrInvalid},
		{connect.CodeInternal, "error removing file or directory: unlinkat /x: permission denied", fs.ErrPermission, fs.ErrInvalid},
		{connect.CodeInvalidArgument, "open /x: permission denied", fs.ErrPermission, fs.ErrInvalid},
		{connect.CodeInvalidArgument, "path is not a directory: /x", fs.ErrInvalid, fs.ErrPermission},
		{connect.CodeFailedPrecondition, "too many levels of symbolic links", envdclient.ErrPrecondition, fs.ErrInvalid},
		{connect.CodeInternal, "disk on fire", nil, fs.ErrPermission},
	} {
		err := &envdclient.FSError{Op: "op", Path: "/x", Code: c.code, Message: c.msg}
		if c.want != nil && !errors.Is(err, c.want) || errors.Is(err, c.notWant) {
			t.Errorf("%v %q: want %v, not %v", c.code, c.msg, c.want, c.notWant)
		}
	}
}
