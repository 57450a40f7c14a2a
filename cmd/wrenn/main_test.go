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
	env := map[string]string{
		"WRENN_DIR":              t.TempDir(),
		"WRENN_DATABASE_URL":     "postgres://wrenn:pw@127.0.0.1:1/wrenn",
		"WRENN_REDIS_URL":        "redis://127.0.0.1:1/0",
		"WRENN_JWT_SECRET":       "0123456789abcdef0123456789abcdef",
		"WRENN_HOST_STALE_AFTER": "abc",
	}
	// The server and the agent read the process environment.
	for k, v := range env {
		t.Setenv(k, v)
	}
	ctx := context.Background()
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"server"}, 1},
		{[]string{"agent", "--vmm", "kvm"}, 1},
		{[]string{"agent", "-h"}, 0},
		{[]string{"nonsense"}, 2},
	} {
		a, _, _ := newTestApp(t, env, "")
		if code := run(ctx, a, c.args); code != c.code {
			t.Errorf("%v: exit %d, want %d", c.args, code, c.code)
		}
	}
	env["WRENN_LOG_LEVEL"] = "loud"
	a, _, stderr := newTestApp(t, env, "")
	if code := run(ctx, a, []string{"sandbox", "ls"}); code != 1 || !strings.Contains(stderr.String(), "WRENN_LOG_LEVEL") {
		t.Errorf("sandbox ls with WRENN_LOG_LEVEL=loud: exit %d, stderr %q", code, stderr)
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
