package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/wrennhq/wrenn/internal/cliconfig"
	"github.com/wrennhq/wrenn/internal/cliout"
	"github.com/wrennhq/wrenn/internal/config"
	"github.com/wrennhq/wrenn/pkg/client"
)

// app is what every CLI command shares: its streams and environment (so that tests
// run commands in-process) and the root's flags.
type app struct {
	in          io.Reader
	out, errOut io.Writer
	getenv      func(string) string
	// inTTY, outTTY and errTTY: the streams are terminals (prompts, colour, progress).
	inTTY, outTTY, errTTY bool

	// --profile, --url, --api-key, --no-color.
	profile, url, apiKey string
	noColor              bool

	settings config.CLI // read before any command runs
}

// newOSApp is the app of the process: its stdio and environment.
func newOSApp() *app {
	isTerm := func(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }
	return &app{
		in: os.Stdin, out: os.Stdout, errOut: os.Stderr, getenv: os.Getenv,
		inTTY: isTerm(os.Stdin), outTTY: isTerm(os.Stdout), errTTY: isTerm(os.Stderr),
	}
}

// configPath is the profiles file.
func (a *app) configPath() (string, error) { return cliconfig.Path(a.getenv) }

// loadProfiles reads the profiles file and where it is.
func (a *app) loadProfiles() (*cliconfig.File, string, error) {
	path, err := a.configPath()
	if err != nil {
		return nil, "", err
	}
	f, err := cliconfig.Load(path)
	return f, path, err
}

// resolve is the profile, URL and credential a command uses (cliconfig.Resolve).
func (a *app) resolve() (cliconfig.Resolved, error) {
	f, _, err := a.loadProfiles()
	if err != nil {
		return cliconfig.Resolved{}, err
	}
	return cliconfig.Resolve(f, a.overrides())
}

func (a *app) overrides() cliconfig.Overrides {
	return cliconfig.Overrides{
		Profile: a.profile, URL: a.url, APIKey: a.apiKey,
		EnvProfile: a.settings.Profile, EnvURL: a.settings.URL, EnvAPIKey: a.settings.APIKey,
	}
}

// client is the API client of the resolved profile; without a credential it says how
// to get one.
func (a *app) client() (*client.Client, cliconfig.Resolved, error) {
	r, err := a.resolve()
	if err != nil {
		return nil, r, err
	}
	switch {
	case r.Profile.Token != "":
		return client.New(r.Profile.URL, client.WithToken(r.Profile.Token)), r, nil
	case r.Profile.APIKey != "":
		return client.New(r.Profile.URL, client.WithAPIKey(r.Profile.APIKey)), r, nil
	}
	return nil, r, errNotLoggedIn(r)
}

func errNotLoggedIn(r cliconfig.Resolved) error {
	return fmt.Errorf("not logged in (profile %q): run 'wrenn login' (email and password, or --api-key), or set WRENN_API_KEY", r.Name)
}

// userClient is the client of a user's login: teams and members are a user's, and the
// server refuses an API key there, so that case is named here instead.
func (a *app) userClient() (*client.Client, cliconfig.Resolved, error) {
	c, r, err := a.client()
	if err != nil {
		return nil, r, err
	}
	if r.Profile.Token == "" {
		return nil, r, fmt.Errorf("this needs a user's login ('wrenn login --email E'), not an API key (from %s)", r.CredFrom)
	}
	return c, r, nil
}

// saveToken replaces the session token of the resolved profile (after a team switch).
func (a *app) saveToken(r cliconfig.Resolved, token string) error {
	f, path, err := a.loadProfiles()
	if err != nil {
		return err
	}
	p := f.Profiles[r.Name]
	if p.URL == "" {
		p.URL = r.Profile.URL
	}
	p.Token, p.APIKey = token, ""
	current := f.Current
	f.Put(r.Name, p)
	f.Current = current // a switch is not a login: which profile is current stays
	if f.Current == "" {
		f.Current = r.Name
	}
	return f.Save(path)
}

// color says whether stdout gets colour.
func (a *app) color() bool { return !a.noColor && cliout.UseColor(a.outTTY, a.getenv) }

// progress reports slow steps on stderr (quiet: not at all).
func (a *app) progress(quiet bool) *cliout.Progress {
	return &cliout.Progress{W: a.errOut, Terminal: a.errTTY, Quiet: quiet,
		Color: !a.noColor && cliout.UseColor(a.errTTY, a.getenv)}
}

// confirm asks a yes/no question on the terminal; without one it refuses, so a script
// never waits on a prompt nobody sees, nor acts because its input had a line in it.
func (a *app) confirm(question, noTerminal string) error {
	if !a.inTTY {
		return errors.New(noTerminal)
	}
	fmt.Fprintf(a.errOut, "%s [y/N] ", question)
	line, _ := bufio.NewReader(a.in).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return errors.New("cancelled")
}

// outputFlags are -o and --quiet of a command that lists or shows things.
type outputFlags struct {
	format string
	quiet  bool
	json   bool // --json, the flag before -o json; kept for scripts
}

func addOutputFlags(cmd *cobra.Command, o *outputFlags) {
	cmd.Flags().StringVarP(&o.format, "output", "o", "table", "output format: table, wide, json or yaml")
	cmd.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "print only ids, one per line (for scripts)")
	cmd.Flags().BoolVar(&o.json, "json", false, "same as -o json")
	_ = cmd.Flags().MarkHidden("json")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(cliout.Formats, cobra.ShellCompDirectiveNoFileComp))
}

// printer is the printer the output flags ask for.
func (a *app) printer(o *outputFlags) (cliout.Printer, error) {
	if o.json {
		o.format = "json"
	}
	if err := cliout.CheckFormat(o.format); err != nil {
		return cliout.Printer{}, usageErrorf("%v", err)
	}
	return cliout.Printer{Out: a.out, Format: o.format, Quiet: o.quiet, Color: a.color()}, nil
}

// printerAndClient is what a command that asks the server and prints the answer
// needs first.
func (a *app) printerAndClient(o *outputFlags) (cliout.Printer, *client.Client, error) {
	p, err := a.printer(o)
	if err != nil {
		return p, nil, err
	}
	c, _, err := a.client()
	return p, c, err
}

// printerAndUserClient is printerAndClient for the commands that need a user's login.
func (a *app) printerAndUserClient(o *outputFlags) (cliout.Printer, *client.Client, error) {
	p, err := a.printer(o)
	if err != nil {
		return p, nil, err
	}
	c, _, err := a.userClient()
	return p, c, err
}

// completion is a completion function offering what list returns for the first
// argument (every one with every), asked of the server with a short deadline so a
// slow one does not hang the shell; with an error, nothing.
func (a *app) completion(every bool, list func(ctx context.Context, c *client.Client) ([]string, error)) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 && !every {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, _, err := a.client()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Second)
		defer cancel()
		out, err := list(ctx, c)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
