package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from the current output")

// golden compares got with testdata/NAME, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run 'go test ./cmd/wrenn -run Golden -update' to make it)", err)
	}
	if got != string(want) {
		t.Errorf("%s changed; if that is meant, run 'go test ./cmd/wrenn -run Golden -update' and review the diff.\ngot:\n%s", path, got)
	}
}

// commandPaths lists every command a user can type, as argument lists.
func commandPaths(c *cobra.Command, prefix []string) [][]string {
	var out [][]string
	for _, sub := range c.Commands() {
		if sub.Hidden || sub.Name() == "help" {
			continue
		}
		p := append(append([]string{}, prefix...), sub.Name())
		out = append(out, p)
		out = append(out, commandPaths(sub, p)...)
	}
	return out
}

// ownFlags are the commands that parse their own flags (the server, the agent).
func ownFlags(path []string) bool { return path[0] == "server" || path[0] == "agent" }

// Every command's --help, exactly: its usage line, flags, examples. A change to any
// of them shows in review as a diff of testdata/help/.
func TestGoldenHelp(t *testing.T) {
	a, _, _ := newTestApp(t, nil, "")
	paths := append([][]string{{}}, commandPaths(newRootCmd(a), nil)...)
	for _, p := range paths {
		if len(p) > 0 && ownFlags(p) {
			continue // their -h is the settings table, tested in internal/config
		}
		a, stdout, stderr := newTestApp(t, nil, "")
		code := run(context.Background(), a, append(append([]string{}, p...), "--help"))
		if code != 0 || stderr.Len() != 0 {
			t.Errorf("%v --help: exit %d, stderr %q", p, code, stderr)
		}
		name := strings.Join(append([]string{"wrenn"}, p...), "_")
		golden(t, filepath.Join("help", name+".txt"), stdout.String())
	}
}

// What every command says to a wrong command line — an unknown flag, an unknown
// subcommand, too many or too few arguments — and its exit status, with nothing
// configured. None of these reach a server.
func TestGoldenErrors(t *testing.T) {
	a, _, _ := newTestApp(t, nil, "")
	root := newRootCmd(a)
	var b strings.Builder
	try := func(args ...string) {
		a, stdout, stderr := newTestApp(t, nil, "")
		code := run(context.Background(), a, args)
		fmt.Fprintf(&b, "$ wrenn %s\nexit %d\n%s%s\n", strings.Join(args, " "), code, stdout, stderr)
	}
	try("frobnicate")
	try("--no-such-flag")
	for _, p := range commandPaths(root, nil) {
		c, _, err := root.Find(p)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case ownFlags(p):
			continue
		case c.HasSubCommands():
			try(append(p, "frobnicate")...)
			continue
		}
		try(append(p, "--no-such-flag")...)
		// Too many arguments, where a command's arguments have a limit (vm run's are
		// a command to run, exec's too: those are not tried).
		if p[0] != "vm" && !(len(p) > 1 && (p[1] == "exec" || p[1] == "rm")) {
			try(append(p, "a1", "a2", "a3", "a4", "a5", "a6")...)
		}
	}
	golden(t, "errors.txt", b.String())
}
