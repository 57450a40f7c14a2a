package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wrennhq/wrenn/internal/cliout"
	"github.com/wrennhq/wrenn/pkg/client"
)

// roles are a team member's roles.
var roles = []string{"member", "admin", "owner"}

func newMemberCmd(a *app) *cobra.Command {
	cmd := group("member", "A team's members: list, add, change roles, remove",
		`A team's members, each with a role: owner, admin or member. --team names the team
(its id); the default is the one your login acts for. A member is given by user id or
by email. These commands need a user's login ('wrenn login'), not an API key.`,
		newMemberListCmd(a), newMemberAddCmd(a), newMemberRoleCmd(a), newMemberRemoveCmd(a))
	cmd.Aliases = []string{"members"}
	cmd.Example = "  wrenn member ls\n  wrenn member add --role admin bob@example.com"
	return cmd
}

var memberColumns = []cliout.Column[client.Member]{
	{Header: "USER ID", Value: func(m client.Member) string { return m.UserID }},
	{Header: "EMAIL", Value: func(m client.Member) string { return m.Email }},
	{Header: "NAME", Value: func(m client.Member) string { return m.Name }},
	{Header: "ROLE", Value: func(m client.Member) string { return m.Role }},
	{Header: "JOINED", Value: func(m client.Member) string { return m.JoinedAt.Format(time.RFC3339) }},
}

func memberUserID(m client.Member) string { return m.UserID }

// checkRole refuses a role the API does not have before any request is sent.
func checkRole(role string) error {
	for _, r := range roles {
		if role == r {
			return nil
		}
	}
	return usageErrorf("unknown role %q: a role is member, admin or owner", role)
}

// addTeamFlag adds --team, completed with the user's teams.
func addTeamFlag(a *app, cmd *cobra.Command, team *string) {
	cmd.Flags().StringVar(team, "team", "", "the team's id (default: the one your login acts for)")
	_ = cmd.RegisterFlagCompletionFunc("team", a.completion(true, teamChoices))
}

// memberTeam is --team, else the team the login acts for (read with Me, which is
// also returned when withMe: removing oneself needs one's id and current team).
func memberTeam(ctx context.Context, c *client.Client, team string, withMe bool) (string, *client.Me, error) {
	if team != "" && !withMe {
		return team, nil, nil
	}
	me, err := c.Me(ctx)
	if err != nil {
		return "", nil, fmt.Errorf("read which team the login acts for: %w", err)
	}
	if team == "" {
		team = me.CurrentTeamID
	}
	return team, me, nil
}

func newMemberListCmd(a *app) *cobra.Command {
	var (
		o    outputFlags
		team string
	)
	cmd := &cobra.Command{
		Use: "ls [--team ID]", Aliases: []string{"list"},
		Short:   "List a team's members: owners, then admins, then members",
		Example: "  wrenn member ls\n  wrenn member ls --team 6f1c2d3e-… -o json",
		Args:    argsRange(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, c, err := a.printerAndUserClient(&o)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if team, _, err = memberTeam(ctx, c, team, false); err != nil {
				return err
			}
			list, err := c.Members(ctx, team)
			if err != nil {
				return fmt.Errorf("list the members of team %s: %w", team, err)
			}
			return cliout.List(p, list, memberUserID, memberColumns)
		},
	}
	addTeamFlag(a, cmd, &team)
	addOutputFlags(cmd, &o)
	return cmd
}

func newMemberAddCmd(a *app) *cobra.Command {
	var (
		o          outputFlags
		team, role string
	)
	cmd := &cobra.Command{
		Use:     "add [--role ROLE] [--team ID] EMAIL",
		Short:   "Add the user with this email to a team (owners and admins)",
		Long:    "Add the user with this email (an existing account) to a team, as a member unless --role says admin or owner.",
		Example: "  wrenn member add bob@example.com\n  wrenn member add --role admin --team 6f1c2d3e-… bob@example.com",
		Args:    argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := a.printer(&o)
			if err != nil {
				return err
			}
			if err := checkRole(role); err != nil {
				return err
			}
			c, _, err := a.userClient()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if team, _, err = memberTeam(ctx, c, team, false); err != nil {
				return err
			}
			m, err := c.AddMember(ctx, team, args[0], role)
			if err != nil {
				return fmt.Errorf("add %s to team %s: %w", args[0], team, err)
			}
			return cliout.One(p, *m, memberUserID, memberColumns)
		},
	}
	cmd.Flags().StringVar(&role, "role", "member", "the new member's role: member, admin or owner")
	_ = cmd.RegisterFlagCompletionFunc("role", cobra.FixedCompletions(roles, cobra.ShellCompDirectiveNoFileComp))
	addTeamFlag(a, cmd, &team)
	addOutputFlags(cmd, &o)
	return cmd
}

func newMemberRoleCmd(a *app) *cobra.Command {
	var (
		o    outputFlags
		team string
	)
	cmd := &cobra.Command{
		Use:   "role [--team ID] USER_ID|EMAIL ROLE",
		Short: "Change a member's role (member, admin or owner)",
		Long: `Change a member's role (owners and admins; only owners make or unmake owners).
ROLE is member, admin or owner. Nobody changes their own role, and a team keeps at
least one owner.`,
		Example: "  wrenn member role bob@example.com admin\n  wrenn member role --team 6f1c2d3e-… 1a2b3c4d-… member",
		Args:    argsRange(2, 2),
		ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(args) == 1 {
				return roles, cobra.ShellCompDirectiveNoFileComp
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := a.printer(&o)
			if err != nil {
				return err
			}
			who, role := args[0], args[1]
			if err := checkRole(role); err != nil {
				return err
			}
			c, _, err := a.userClient()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if team, _, err = memberTeam(ctx, c, team, false); err != nil {
				return err
			}
			userID, err := memberID(ctx, c, team, who)
			if err != nil {
				return err
			}
			m, err := c.SetMemberRole(ctx, team, userID, role)
			if err != nil {
				return fmt.Errorf("make %s %s in team %s: %w", who, role, team, err)
			}
			return cliout.One(p, *m, memberUserID, memberColumns)
		},
	}
	addTeamFlag(a, cmd, &team)
	addOutputFlags(cmd, &o)
	return cmd
}

func newMemberRemoveCmd(a *app) *cobra.Command {
	var team string
	cmd := &cobra.Command{
		Use:   "rm [--team ID] USER_ID|EMAIL",
		Short: "Remove a member from a team",
		Long: `Remove a member from a team (owners and admins; admins do not remove owners). To
leave a team yourself, 'wrenn team leave ID'.`,
		Example: "  wrenn member rm bob@example.com\n  wrenn member rm --team 6f1c2d3e-… 1a2b3c4d-…",
		Args:    argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			who := args[0]
			c, r, err := a.userClient()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			// The user's own id and current team are needed whatever --team says:
			// removing themselves from the team the login acts for would leave it dead.
			team, me, err := memberTeam(ctx, c, team, true)
			if err != nil {
				return err
			}
			userID, err := memberID(ctx, c, team, who)
			if err != nil {
				return err
			}
			remove := func() error {
				if err := c.RemoveMember(ctx, team, userID); err != nil {
					return fmt.Errorf("remove %s from team %s: %w", who, team, err)
				}
				return nil
			}
			if userID != me.User.ID {
				return remove()
			}
			return a.keepLogin(ctx, r, c, me, team, remove)
		},
	}
	addTeamFlag(a, cmd, &team)
	return cmd
}

// memberID is the user id of a member given by id or by email (anything with an @),
// the email looked up in the team's member list: the routes take ids, people know
// emails.
func memberID(ctx context.Context, c *client.Client, teamID, who string) (string, error) {
	if !strings.Contains(who, "@") {
		return who, nil
	}
	list, err := c.Members(ctx, teamID)
	if err != nil {
		return "", fmt.Errorf("look up %s in team %s: %w", who, teamID, err)
	}
	for _, m := range list {
		if strings.EqualFold(m.Email, who) {
			return m.UserID, nil
		}
	}
	return "", fmt.Errorf("%s is not a member of team %s ('wrenn member ls --team %s' lists them)", who, teamID, teamID)
}
