package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/wrennhq/wrenn/internal/cliconfig"
)

// newTestApp is an app for running commands in-process: stdout and stderr are the
// buffers returned, stdin is stdin, no stream is a terminal (set a.inTTY to ask), and
// env is the whole environment. env gets XDG_CONFIG_HOME (a fresh directory: the
// profiles file) unless it has one; it stays the app's environment, so a test may
// change it between runs.
func newTestApp(t *testing.T, env map[string]string, stdin string) (*app, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	if env == nil {
		env = map[string]string{}
	}
	if _, ok := env["XDG_CONFIG_HOME"]; !ok {
		env["XDG_CONFIG_HOME"] = t.TempDir()
	}
	var out, errOut bytes.Buffer
	a := &app{in: strings.NewReader(stdin), out: &out, errOut: &errOut, getenv: func(k string) string { return env[k] }}
	return a, &out, &errOut
}

// runApp runs the command line args in a and returns its exit status and what it
// printed on stdout and stderr (the buffers are emptied first).
func runApp(a *app, out, errOut *bytes.Buffer, args ...string) (code int, stdout, stderr string) {
	out.Reset()
	errOut.Reset()
	code = run(context.Background(), a, args)
	return code, out.String(), errOut.String()
}

// saveLogin saves a user's login (token) with url as the profile "default", the
// current one, as 'wrenn login' does.
func saveLogin(t *testing.T, a *app, url, token string) {
	t.Helper()
	f, path, err := a.loadProfiles()
	if err != nil {
		t.Fatal(err)
	}
	f.Put(cliconfig.DefaultProfile, cliconfig.Profile{URL: url, Token: token, Email: "ann@example.com"})
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
}

// savedProfile is the profile name as saved, and which profile is current.
func savedProfile(t *testing.T, a *app, name string) (cliconfig.Profile, string) {
	t.Helper()
	f, _, err := a.loadProfiles()
	if err != nil {
		t.Fatal(err)
	}
	p, ok := f.Profiles[name]
	if !ok {
		t.Fatalf("no profile %q saved (%v)", name, f.Names())
	}
	return p, f.Current
}
