package main

import (
	"flag"
	"os"

	"github.com/spf13/cobra"
	"github.com/wrennhq/wrenn/internal/config"
)

// legacy wraps a command not yet ported to cobra: it parses its own flags.
func legacy(use, short string, fn func(cmd *cobra.Command, args []string) error) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, DisableFlagParsing: true, RunE: fn}
}

func newKeysCmd(a *app) *cobra.Command {
	return legacy("keys", "Team API keys", func(cmd *cobra.Command, args []string) error { return keysCmd(cmd.Context(), args) })
}
func newTeamCmd(a *app) *cobra.Command {
	return legacy("team", "Your teams", func(cmd *cobra.Command, args []string) error { return teamCmd(cmd.Context(), args) })
}
func newMemberCmd(a *app) *cobra.Command {
	return legacy("member", "A team's members", func(cmd *cobra.Command, args []string) error { return memberCmd(cmd.Context(), args) })
}
func newAuditCmd(a *app) *cobra.Command {
	return legacy("audit", "The team's audit log", func(cmd *cobra.Command, args []string) error { return auditCmd(cmd.Context(), args) })
}
func newHostCmd(a *app) *cobra.Command {
	return legacy("host", "Hosts", func(cmd *cobra.Command, args []string) error { return hostCmd(cmd.Context(), args) })
}
func newAdminCmd(a *app) *cobra.Command {
	return legacy("admin", "Platform administration", func(cmd *cobra.Command, args []string) error { return adminCmd(cmd.Context(), args) })
}

// cliSettings: legacy commands read settings themselves.
func cliSettings() config.CLI {
	c, _ := config.LoadCLI(os.Getenv)
	return c
}

// parseInterspersed parses flags before and after the positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) error {
	var positional []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return err
		}
		rest := fs.Args()
		if consumed := args[:len(args)-len(rest)]; len(consumed) > 0 && consumed[len(consumed)-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	return fs.Parse(append([]string{"--"}, positional...))
}
