package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wrennhq/wrenn/internal/config"
	"github.com/wrennhq/wrenn/internal/version"
)

// Exit codes of every command.
const (
	exitOK    = 0
	exitError = 1 // the command failed (the server refused, a network error…)
	exitUsage = 2 // the command line is wrong: unknown command or flag, wrong arguments
)

const rootLong = `wrenn — microVM sandboxes on machines you own.

Log in once ('wrenn login', or 'make up' saves a "local" profile), then:
  wrenn sandbox create          a fresh VM, ready in about a second
  wrenn sandbox exec ID -- CMD  run a command in it; 'wrenn sandbox shell ID' for a shell
  wrenn sandbox ls              what the team runs

Every setting (flags, WRENN_* variables, the config file) is listed in README.md,
Settings. Exit status: 0 done, 1 failed, 2 wrong command line; 'sandbox exec' and
'sandbox shell' exit with the command's status.`

// newRootCmd is the whole command tree, bound to a's streams and environment.
func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:           "wrenn",
		Short:         "microVM sandboxes on machines you own",
		Long:          rootLong,
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.ArbitraryArgs,
		// The CLI's settings are read, and a bad one refused, before any command that
		// uses them runs; the server and the agent read their own.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Annotations[ownSettings] != "" {
				return nil
			}
			s, err := config.LoadCLI(a.getenv)
			if err != nil {
				return err
			}
			a.settings = s
			return nil
		},
		RunE: helpOrUnknown,
	}
	root.SetIn(a.in)
	root.SetOut(a.out)
	root.SetErr(a.errOut)
	root.SetVersionTemplate("wrenn {{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&a.profile, "profile", "", "saved login to use (default: WRENN_PROFILE, else the current one)")
	pf.StringVar(&a.url, "url", "", "control plane URL (default: WRENN_URL, else the profile's)")
	pf.StringVar(&a.apiKey, "api-key", "", "team API key to use instead of the profile's login (default: WRENN_API_KEY)")
	pf.BoolVar(&a.noColor, "no-color", false, "no colours (NO_COLOR=1 does the same)")
	_ = root.RegisterFlagCompletionFunc("profile", a.completeProfiles)

	root.AddGroup(
		&cobra.Group{ID: "use", Title: "Sandboxes:"},
		&cobra.Group{ID: "account", Title: "Account and team:"},
		&cobra.Group{ID: "operate", Title: "Running Wrenn:"},
	)
	add := func(group string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	add("use", newSandboxCmd(a), newSnapshotCmd(a))
	add("account", newLoginCmd(a), newSignupCmd(a), newLogoutCmd(a), newWhoamiCmd(a), newProfilesCmd(a),
		newKeysCmd(a), newTeamCmd(a), newMemberCmd(a), newAuditCmd(a))
	add("operate", newHostCmd(a), newAdminCmd(a), newImageCmd(a), newVMCmd(a), newServerCmd(), newAgentCmd(), newVersionCmd(a))
	root.SetHelpCommandGroupID("operate")
	root.SetCompletionCommandGroupID("operate")
	return root
}

// ownSettings marks commands (server, agent) that read their own settings and flags.
const ownSettings = "own-settings"

// group is a command whose subcommands do the work: bare, it prints its help; with an
// unknown subcommand it is a usage error naming the command (cobra would print the
// help and succeed).
func group(use, short, long string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use: use, Short: short, Long: long,
		Args: cobra.ArbitraryArgs,
		RunE: helpOrUnknown,
	}
	c.AddCommand(subs...)
	return c
}

// helpOrUnknown is the RunE of a command with subcommands: its help when bare, else
// an unknown command, with the likely ones.
func helpOrUnknown(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	msg := fmt.Sprintf("unknown command %q", args[0])
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // cobra's own default, set only on its path
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageError{errors.New(msg)}
}

// usageError is a wrong command line (exit 2); run adds where to read the usage.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// argsRange accepts min to max positional arguments (max -1: any number); otherwise
// a usage error showing the command's usage line.
func argsRange(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) >= min && (max < 0 || len(args) <= max) {
			return nil
		}
		want := fmt.Sprintf("%d", min)
		switch {
		case max < 0:
			want = fmt.Sprintf("at least %d", min)
		case max != min:
			want = fmt.Sprintf("%d to %d", min, max)
		}
		noun := "arguments"
		if want == "1" || want == "at least 1" {
			noun = "argument"
		}
		return usageErrorf("takes %s %s, got %d; usage: %s", want, noun, len(args), strings.TrimSuffix(cmd.UseLine(), " [flags]"))
	}
}

// exitStatus carries a process exit status through the error path (the status of a
// command run in a sandbox).
type exitStatus struct{ code int }

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// run runs the command line args with a's streams and returns the exit status.
func run(ctx context.Context, a *app, args []string) int {
	root := newRootCmd(a)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	var es exitStatus
	if errors.As(err, &es) {
		return es.code
	}
	if errors.Is(err, flag.ErrHelp) { // the server's or the agent's -h
		return exitOK
	}
	var ue usageError
	if errors.As(err, &ue) {
		if cmd == nil {
			cmd = root
		}
		// Which command the flag or argument was wrong for.
		fmt.Fprintf(a.errOut, "%s: %v\nRun '%s --help' for usage.\n", cmd.CommandPath(), err, cmd.CommandPath())
		return exitUsage
	}
	fmt.Fprintln(a.errOut, "wrenn:", err)
	return exitError
}

func newVersionCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use: "version", Short: "Print the version", Args: argsRange(0, 0),
		Example: "  wrenn version",
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintln(a.out, "wrenn", version.Version)
			return err
		},
	}
}

// completeProfiles offers the saved profiles' names.
func (a *app) completeProfiles(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	f, _, err := a.loadProfiles()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return f.Names(), cobra.ShellCompDirectiveNoFileComp
}
