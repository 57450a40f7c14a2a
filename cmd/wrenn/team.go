package main

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wrennhq/wrenn/internal/cliconfig"
	"github.com/wrennhq/wrenn/internal/cliout"
	"github.com/wrennhq/wrenn/pkg/client"
)

func newTeamCmd(a *app) *cobra.Command {
	cmd := group("team", "Your teams: list, create, rename, delete, switch, leave",
		`A user is in one or more teams, with a role in each (owner, admin or member); the
saved login acts for one of them at a time ('wrenn team switch'), and sandboxes, snapshots
and API keys are that team's. These commands need a user's login ('wrenn login'), not an
API key. A NAME with spaces is one argument: quote it ('wrenn team create "Data team"').`,
		newTeamListCmd(a), newTeamCreateCmd(a), newTeamShowCmd(a), newTeamRenameCmd(a),
		newTeamRemoveCmd(a), newTeamSwitchCmd(a), newTeamLeaveCmd(a))
	cmd.Aliases = []string{"teams"}
	cmd.Example = "  wrenn team ls\n  wrenn team create \"Data team\"\n  wrenn team switch 6f1c2d3e-…"
	return cmd
}

// teamColumns are a team's columns where one team is shown (create, show, rename).
var teamColumns = []cliout.Column[client.Team]{
	{Header: "ID", Value: func(t client.Team) string { return t.ID }},
	{Header: "NAME", Value: func(t client.Team) string { return t.Name }},
	{Header: "SLUG", Value: func(t client.Team) string { return t.Slug }},
	{Header: "ROLE", Value: func(t client.Team) string { return t.Role }},
	{Header: "MEMBERS", Value: func(t client.Team) string { return strconv.Itoa(t.Members) }},
	{Header: "DEFAULT", Value: func(t client.Team) string { return strconv.FormatBool(t.IsDefault) }},
	{Header: "BYOC", Value: func(t client.Team) string { return strconv.FormatBool(t.IsBYOC) }},
	{Header: "CREATED", Value: func(t client.Team) string { return t.CreatedAt.Format(time.RFC3339) }},
}

// teamListColumns are `team ls`'s: the last, headerless, marks the team the login acts
// for (current) and the user's default one.
func teamListColumns(current string) []cliout.Column[client.Team] {
	return []cliout.Column[client.Team]{
		{Header: "ID", Value: func(t client.Team) string { return t.ID }},
		{Header: "NAME", Value: func(t client.Team) string { return t.Name }},
		{Header: "SLUG", Value: func(t client.Team) string { return t.Slug }},
		{Header: "ROLE", Value: func(t client.Team) string { return t.Role }},
		{Header: "MEMBERS", Value: func(t client.Team) string { return strconv.Itoa(t.Members) }},
		{Header: "BYOC", Wide: true, Value: func(t client.Team) string { return strconv.FormatBool(t.IsBYOC) }},
		{Header: "CREATED", Wide: true, Value: func(t client.Team) string { return t.CreatedAt.Format(time.RFC3339) }},
		{Header: "", Value: func(t client.Team) string {
			var marks []string
			if t.ID == current {
				marks = append(marks, "current")
			}
			if t.IsDefault {
				marks = append(marks, "default")
			}
			return strings.Join(marks, ",")
		}},
	}
}

func teamID(t client.Team) string { return t.ID }

func newTeamListCmd(a *app) *cobra.Command {
	var o outputFlags
	cmd := &cobra.Command{
		Use: "ls", Aliases: []string{"list"},
		Short:   "List your teams, with your role in each",
		Long:    "List your teams and your role in each; the one your login acts for is marked current, your default one default.",
		Example: "  wrenn team ls\n  wrenn team ls -o json",
		Args:    argsRange(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, c, err := a.printerAndUserClient(&o)
			if err != nil {
				return err
			}
			teams, err := c.Teams(cmd.Context())
			if err != nil {
				return fmt.Errorf("list teams: %w", err)
			}
			current := ""
			if !p.Quiet && (p.Format == "table" || p.Format == "wide") { // only a table marks the current team
				me, err := c.Me(cmd.Context())
				if err != nil {
					return fmt.Errorf("read which team the login acts for: %w", err)
				}
				current = me.CurrentTeamID
			}
			return cliout.List(p, teams, teamID, teamListColumns(current))
		},
	}
	addOutputFlags(cmd, &o)
	return cmd
}

func newTeamCreateCmd(a *app) *cobra.Command {
	var o outputFlags
	cmd := &cobra.Command{
		Use:     "create NAME",
		Short:   "Make a team, with you as its owner",
		Long:    "Make a team with you as its owner; 'wrenn team switch ID' makes your login act for it.",
		Example: "  wrenn team create \"Data team\"\n  wrenn team switch $(wrenn team create -q \"Data team\")",
		Args:    argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, c, err := a.printerAndUserClient(&o)
			if err != nil {
				return err
			}
			t, err := c.CreateTeam(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("create team %q: %w", args[0], err)
			}
			return cliout.One(p, *t, teamID, teamColumns)
		},
	}
	addOutputFlags(cmd, &o)
	return cmd
}

func newTeamShowCmd(a *app) *cobra.Command {
	var o outputFlags
	cmd := &cobra.Command{
		Use: "show [ID]", Aliases: []string{"get"},
		Short:             "Show a team (default: the one your login acts for)",
		Example:           "  wrenn team show\n  wrenn team show 6f1c2d3e-… -o yaml",
		Args:              argsRange(0, 1),
		ValidArgsFunction: a.completion(false, teamChoices),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, c, err := a.printerAndUserClient(&o)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var id string
			if len(args) > 0 {
				id = args[0]
			} else {
				me, err := c.Me(ctx)
				if err != nil {
					return fmt.Errorf("read which team the login acts for: %w", err)
				}
				id = me.CurrentTeamID
			}
			t, err := c.Team(ctx, id)
			if err != nil {
				return fmt.Errorf("read team %s: %w", id, err)
			}
			return cliout.One(p, *t, teamID, teamColumns)
		},
	}
	addOutputFlags(cmd, &o)
	return cmd
}

func newTeamRenameCmd(a *app) *cobra.Command {
	var o outputFlags
	cmd := &cobra.Command{
		Use:               "rename ID NAME",
		Short:             "Rename a team (owners and admins); its id and slug stay",
		Example:           "  wrenn team rename 6f1c2d3e-… \"Data science\"",
		Args:              argsRange(2, 2),
		ValidArgsFunction: a.completion(false, teamChoices),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, c, err := a.printerAndUserClient(&o)
			if err != nil {
				return err
			}
			t, err := c.RenameTeam(cmd.Context(), args[0], args[1])
			if err != nil {
				return fmt.Errorf("rename team %s: %w", args[0], err)
			}
			return cliout.One(p, *t, teamID, teamColumns)
		},
	}
	addOutputFlags(cmd, &o)
	return cmd
}

func newTeamRemoveCmd(a *app) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use: "rm [--yes] ID", Aliases: []string{"delete"},
		Short: "Delete a team (owners): its sandboxes and snapshots are destroyed, its API keys revoked",
		Long: `Delete a team (owners only). Its sandboxes and snapshots are destroyed and its API
keys revoked; this cannot be undone. On a terminal you type the team's name to confirm;
without one to ask on, --yes is needed. When your login acts for that team it is moved
to another of your teams (your default one if it can) first.`,
		Example:           "  wrenn team rm 6f1c2d3e-…\n  wrenn team rm --yes 6f1c2d3e-…",
		Args:              argsRange(1, 1),
		ValidArgsFunction: a.completion(false, teamChoices),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.removeTeam(cmd.Context(), args[0], yes)
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "delete without asking")
	return cmd
}

// removeTeam is `wrenn team rm`: it destroys what the team has, so on a terminal the
// user types the team's name (as they see it in `wrenn team ls`), and without one
// only --yes deletes: a script never waits on a prompt nobody sees, nor deletes a
// team because its input had a line in it.
func (a *app) removeTeam(ctx context.Context, id string, yes bool) error {
	c, r, err := a.userClient()
	if err != nil {
		return err
	}
	if !yes && !a.inTTY {
		return fmt.Errorf("not deleting team %s: deleting a team destroys its sandboxes and snapshots and revokes its API keys; "+
			"there is no terminal to confirm on, so pass --yes", id)
	}
	me, err := c.Me(ctx)
	if err != nil {
		return fmt.Errorf("read which team the login acts for: %w", err)
	}
	if !yes {
		t, err := c.Team(ctx, id)
		if err != nil {
			return fmt.Errorf("read team %s: %w", id, err)
		}
		fmt.Fprintf(a.errOut, "Deleting team %q (%s) destroys its sandboxes and snapshots and revokes its API keys. It cannot be undone.\n"+
			"Type the team's name to delete it: ", t.Name, t.ID)
		line, err := bufio.NewReader(a.in).ReadString('\n')
		if err != nil && line == "" {
			return fmt.Errorf("not deleting team %s: no name typed", id)
		}
		if strings.TrimSpace(line) != strings.TrimSpace(t.Name) {
			return fmt.Errorf("not deleting team %s: %q is not its name", id, strings.TrimSpace(line))
		}
	}
	return a.keepLogin(ctx, r, c, me, id, func() error {
		if err := c.DeleteTeam(ctx, id); err != nil {
			return fmt.Errorf("delete team %s: %w", id, err)
		}
		return nil
	})
}

func newTeamSwitchCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "switch ID",
		Short: "Make your saved login act for another of your teams",
		Long: `Make the saved login (of the profile in use) act for another of your teams: later
commands create and list that team's sandboxes, snapshots and keys.`,
		Example:           "  wrenn team switch 6f1c2d3e-…",
		Args:              argsRange(1, 1),
		ValidArgsFunction: a.completion(false, teamChoices),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, r, err := a.userClient()
			if err != nil {
				return err
			}
			s, err := c.SwitchTeam(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("switch to team %s: %w", args[0], err)
			}
			if err := a.saveToken(r, s.Token); err != nil {
				return fmt.Errorf("save the login for team %s: %w", s.TeamID, err)
			}
			_, err = fmt.Fprintf(a.out, "your login now acts for team %s (%s); saved in profile %q\n", s.TeamID, s.Role, r.Name)
			return err
		},
	}
}

func newTeamLeaveCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "leave ID",
		Short: "Leave a team",
		Long: `Leave a team (not your default one, nor one you are the last owner of). When your
login acts for that team it is moved to another of your teams first.`,
		Example:           "  wrenn team leave 6f1c2d3e-…",
		Args:              argsRange(1, 1),
		ValidArgsFunction: a.completion(false, teamChoices),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, id := cmd.Context(), args[0]
			c, r, err := a.userClient()
			if err != nil {
				return err
			}
			me, err := c.Me(ctx)
			if err != nil {
				return fmt.Errorf("read which team the login acts for: %w", err)
			}
			return a.keepLogin(ctx, r, c, me, id, func() error {
				if err := c.LeaveTeam(ctx, id); err != nil {
					return fmt.Errorf("leave team %s: %w", id, err)
				}
				return nil
			})
		},
	}
}

// keepLogin runs act, which ends the user's membership of teamID (leaving it,
// deleting it, removing themselves). The server checks membership on every request,
// so a token acting for that team stops working once act succeeds, switch-team
// included, and the saved login would be good for nothing but a new login. So when
// the login acts for teamID, a session for another of the user's teams (the default
// one if it can) is taken before act, and saved in the profile once act has succeeded.
func (a *app) keepLogin(ctx context.Context, r cliconfig.Resolved, c *client.Client, me *client.Me, teamID string, act func() error) error {
	if me.CurrentTeamID != teamID {
		return act()
	}
	next := ""
	for _, t := range me.Teams {
		if t.ID != teamID && (next == "" || t.IsDefault) {
			next = t.ID
		}
	}
	if next == "" {
		if err := act(); err != nil {
			return err
		}
		fmt.Fprintln(a.errOut, "wrenn: your login acted for that team, your only one; log in again ('wrenn login') once you are in another")
		return nil
	}
	s, err := c.SwitchTeam(ctx, next)
	if err != nil {
		return fmt.Errorf("move the login to team %s before leaving team %s: %w", next, teamID, err)
	}
	if err := act(); err != nil {
		return err
	}
	if err := a.saveToken(r, s.Token); err != nil {
		return fmt.Errorf("save the login for team %s: %w", next, err)
	}
	fmt.Fprintf(a.errOut, "wrenn: your login acted for team %s; it now acts for team %s (%s)\n", teamID, next, s.Role)
	return nil
}

// teamChoices are the user's team ids, each with its name and the user's role.
func teamChoices(ctx context.Context, c *client.Client) ([]string, error) {
	me, err := c.Me(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, t := range me.Teams {
		out = append(out, t.ID+"\t"+t.Name+" ("+t.Role+")")
	}
	return out, nil
}
