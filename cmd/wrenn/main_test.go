package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wrennhq/wrenn/internal/config"
	"github.com/wrennhq/wrenn/pkg/client"
)

// A bad setting stops the server and the agent before they touch anything (the agent
// would otherwise lock WRENN_DIR, the server dial its database).
func TestBadSettingsFail(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("WRENN_DIR", dir)
	t.Setenv("WRENN_DATABASE_URL", "postgres://wrenn:pw@127.0.0.1:1/wrenn")
	t.Setenv("WRENN_REDIS_URL", "redis://127.0.0.1:1/0")
	t.Setenv("WRENN_JWT_SECRET", "0123456789abcdef0123456789abcdef")
	t.Setenv("WRENN_HOST_STALE_AFTER", "abc")
	ctx := context.Background()
	if code := run(ctx, []string{"server"}); code != 1 {
		t.Errorf("server with WRENN_HOST_STALE_AFTER=abc: exit %d", code)
	}
	if code := run(ctx, []string{"agent", "--vmm", "kvm"}); code != 1 {
		t.Errorf("agent --vmm kvm: exit %d", code)
	}
	if code := run(ctx, []string{"agent", "-h"}); code != 0 {
		t.Errorf("agent -h: exit %d", code)
	}
	if code := run(ctx, []string{"nonsense"}); code != 2 {
		t.Errorf("unknown command: exit %d", code)
	}
	t.Setenv("WRENN_LOG_LEVEL", "loud")
	if code := run(ctx, []string{"sandbox", "ls"}); code != 1 {
		t.Errorf("sandbox ls with WRENN_LOG_LEVEL=loud: exit %d", code)
	}
}

func TestWarnTruncated(t *testing.T) {
	var b strings.Builder
	warnTruncated(&b, &client.ExecResult{Stdout: []byte("abc"), StdoutTotalBytes: 3, StderrTotalBytes: 0})
	if b.Len() != 0 {
		t.Errorf("whole output warned: %q", b.String())
	}
	warnTruncated(&b, &client.ExecResult{Stdout: make([]byte, 10), StdoutTruncated: true, StdoutTotalBytes: 99, StderrTotalBytes: 5, Stderr: []byte("12345")})
	if got := b.String(); got != "wrenn: stdout truncated: 10 of 99 bytes shown (--max-output keeps up to 16 MiB; -i streams all output)\n" {
		t.Errorf("warning: %q", got)
	}
}

// The GitHub client secret comes from the variable or, trimmed, from the file; an
// unreadable or empty file is an error naming the variable.
func TestReadGitHubSecret(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "gh")
	if err := os.WriteFile(file, []byte("  s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := readGitHubSecret(config.Server{GitHubClientSecret: "direct"}); s != "direct" || err != nil {
		t.Errorf("from the variable: %q %v", s, err)
	}
	if s, err := readGitHubSecret(config.Server{GitHubClientSecretFile: file}); s != "s3cret" || err != nil {
		t.Errorf("from the file: %q %v", s, err)
	}
	for _, f := range []string{empty, filepath.Join(dir, "missing")} {
		if _, err := readGitHubSecret(config.Server{GitHubClientSecretFile: f}); err == nil || !strings.HasPrefix(err.Error(), "WRENN_GITHUB_CLIENT_SECRET_FILE") {
			t.Errorf("%s: %v", f, err)
		}
	}
}
