package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain lets a test run this test binary as the wrenn command itself (a shell's
// completion script calls `wrenn __complete …`).
func TestMain(m *testing.M) {
	if os.Getenv("WRENN_TEST_RUN_MAIN") == "1" {
		main()
	}
	os.Exit(m.Run())
}

// wrennOnPath puts a `wrenn` that runs this test binary's main on a PATH of its own.
func wrennOnPath(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := "#!/bin/sh\nWRENN_TEST_RUN_MAIN=1 exec " + self + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "wrenn"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir + ":" + os.Getenv("PATH")
}

// bashCompletion is the bash-completion package's loader, which an interactive bash
// on Debian sources and cobra's script needs (scripts/prereqs.sh installs it).
const bashCompletion = "/usr/share/bash-completion/bash_completion"

// The bash completion script loads in bash and completes commands, subcommands and
// flags by asking the wrenn on PATH; zsh and fish scripts are generated.
func TestCompletionLoadsInBash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("no bash: %v", err)
	}
	if _, err := os.Stat(bashCompletion); err != nil {
		t.Fatalf("bash-completion missing (scripts/install-deps.sh installs it): %v", err)
	}
	a, stdout, stderr := newTestApp(t, nil, "")
	if code := run(context.Background(), a, []string{"completion", "bash"}); code != 0 {
		t.Fatalf("completion bash: exit %d: %s", code, stderr)
	}
	script := filepath.Join(t.TempDir(), "wrenn.bash")
	if err := os.WriteFile(script, stdout.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	complete := func(line string) string {
		t.Helper()
		// What bash does on Tab: the words, the cursor, then the registered function.
		// compopt complains outside a real Tab; what it sets does not change COMPREPLY.
		prog := `source ` + bashCompletion + ` && source "$1" && complete -p wrenn >/dev/null || exit 9
compopt() { :; }
COMP_LINE="$2"; COMP_POINT=${#COMP_LINE}; read -ra COMP_WORDS <<<"$COMP_LINE"
[[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
__start_wrenn wrenn "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"`
		cmd := exec.Command(bash, "--norc", "--noprofile", "-c", prog, "bash", script, line)
		cmd.Env = append(os.Environ(), "PATH="+wrennOnPath(t), "XDG_CONFIG_HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("complete %q: %v\n%s", line, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	for line, want := range map[string]string{
		"wrenn sandb":                "sandbox",
		"wrenn sandbox cr":           "create",
		"wrenn sandbox create --tem": "--template",
		"wrenn sandbox ls -o ya":     "yaml",
		"wrenn snapshot ":            "create\nget\nls\nrm",
	} {
		if got := complete(line); !strings.Contains(got, want) {
			t.Errorf("Tab after %q: %q, want %q in it", line, got, want)
		}
	}
	for _, shell := range []string{"zsh", "fish"} {
		a, stdout, _ := newTestApp(t, nil, "")
		if code := run(context.Background(), a, []string{"completion", shell}); code != 0 || !strings.Contains(stdout.String(), "wrenn") {
			t.Errorf("completion %s: exit %d, %d bytes", shell, code, stdout.Len())
		}
	}
}

// Ids are completed from the server the settings point at: a Tab runs no
// PersistentPreRunE, yet WRENN_URL and WRENN_API_KEY count as for the command.
func TestCompletionAsksTheConfiguredServer(t *testing.T) {
	calls, mu, env := fakeAPI(t, "running")
	a, stdout, stderr := newTestApp(t, env, "")
	if code := run(context.Background(), a, []string{"__complete", "sandbox", "get", ""}); code != 0 {
		t.Fatalf("__complete: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout.String(), "sb0123456789abcdefgh\trunning base") {
		t.Errorf("completions: %q", stdout)
	}
	if got := take(calls, mu); len(got) != 1 || got[0].key != env["WRENN_API_KEY"] {
		t.Errorf("asked %+v", got)
	}
}
