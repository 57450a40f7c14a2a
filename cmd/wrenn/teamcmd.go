package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/wrennhq/wrenn/pkg/client"
)

// teamCommands is `wrenn team`.
var teamCommands = commandGroup{name: "team", subs: []subcommand{
	{"ls", "", "list your teams, with your role in each; the one your login acts for is marked current"},
	{"create", "NAME", "make a team, with you as its owner ('wrenn team switch ID' to act for it)"},
	{"show", "[ID]", "show a team (default: the one your login acts for)"},
	{"rename", "ID NAME", "rename a team (owners and admins); its id and slug stay"},
	{"rm", "[--yes] ID", "delete a team (owners): its sandboxes and snapshots are destroyed and its API keys revoked"},
	{"switch", "ID", "make your saved login act for another of your teams"},
	{"leave", "ID", "leave a team"},
}, notes: func(shown []subcommand) string {
	var named, rm bool
	for _, c := range shown {
		named = named || strings.Contains(c.synopsis, "NAME")
		rm = rm || c.name == "rm"
	}
	notes := ""
	if named {
		notes += "A NAME with spaces is one argument: quote it ('wrenn team create \"Data team\"').\n"
	}
	if rm {
		notes += "rm asks you to type the team's name; without a terminal to ask on, --yes is needed.\n"
	}
	return notes + "These need a user's login ('wrenn login'), not an API key. --json prints JSON.\n"
}}

// memberCommands is `wrenn member`.
var memberCommands = commandGroup{name: "member", subs: []subcommand{
	{"ls", "[--team ID]", "list a team's members: owners, then admins, then members"},
	{"add", "[--role ROLE] [--team ID] EMAIL", "add the user with this email to a team (default role member)"},
	{"role", "[--team ID] USER_ID|EMAIL ROLE", "change a member's role"},
	{"rm", "[--team ID] USER_ID|EMAIL", "remove a member from a team"},
}, notes: func(shown []subcommand) string {
	notes := ""
	for _, c := range shown {
		if strings.Contains(c.synopsis, "ROLE") {
			notes = "ROLE is member, admin or owner. "
			break
		}
	}
	return notes + "--team defaults to the team your login acts for.\n" +
		"These need a user's login ('wrenn login'), not an API key. --json prints JSON.\n"
}}

// checkRole refuses a role the API does not have before any request is sent.
func checkRole(role string) error {
	switch role {
	case "member", "admin", "owner":
		return nil
	}
	return fmt.Errorf("unknown role %q: a role is member, admin or owner", role)
}

// console is where `wrenn team rm` asks for confirmation: the user's terminal, or
// nothing (in == nil) when stdin is not one, so that a script never waits on a
// prompt nobody sees, nor deletes a team because its input had a line in it.
type console struct {
	in  io.Reader
	out io.Writer
}

// stdinConsole is the terminal on stdin (prompts on stderr), if stdin is one.
func stdinConsole() console {
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		return console{}
	}
	return console{in: os.Stdin, out: os.Stderr}
}

// userClient is the saved login's client. Teams and members are a user's: an API key
// belongs to one team and the server refuses it, so that case is named here instead.
func userClient(cfg cliConfig) (*client.Client, error) {
	if cfg.Token == "" {
		if cfg.APIKey != "" {
			return nil, errors.New("teams and members need a user's login ('wrenn login'), not an API key (unset WRENN_API_KEY)")
		}
		return nil, errors.New("not logged in: run 'wrenn login --email E' first")
	}
	return cfg.client(), nil
}

func teamCmd(ctx context.Context, args []string) error {
	return runTeamCmd(ctx, args, stdinConsole())
}

// runTeamCmd is `wrenn team`, confirming deletions on con.
func runTeamCmd(ctx context.Context, args []string, con console) error {
	sub, fs, err := teamCommands.start(args)
	if err != nil {
		return err
	}
	asJSON := fs.Bool("json", false, "print JSON")
	yes := fs.Bool("yes", false, "rm: delete without asking")
	if err := parseInterspersed(fs, args[1:]); err != nil {
		return err
	}
	// Wrong arguments are refused before any request: a mistake reaches no server.
	want := map[string][2]int{"ls": {0, 0}, "create": {1, 1}, "show": {0, 1}, "rename": {2, 2}, "rm": {1, 1}, "switch": {1, 1}, "leave": {1, 1}}
	n, ok := want[sub]
	if !ok {
		return teamCommands.unknown(sub)
	}
	if fs.NArg() < n[0] || fs.NArg() > n[1] {
		return teamCommands.usageError(sub)
	}
	cfg := loadConfig()
	c, err := userClient(cfg)
	if err != nil {
		return err
	}
	switch sub {
	case "ls":
		teams, err := c.Teams(ctx)
		if err != nil {
			return fmt.Errorf("list teams: %w", err)
		}
		if *asJSON {
			return output(true, teams, nil)
		}
		me, err := c.Me(ctx)
		if err != nil {
			return fmt.Errorf("read which team the login acts for: %w", err)
		}
		return output(false, nil, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "ID\tNAME\tSLUG\tROLE\tMEMBERS\t")
			for _, t := range teams {
				var marks []string
				if t.ID == me.CurrentTeamID {
					marks = append(marks, "current")
				}
				if t.IsDefault {
					marks = append(marks, "default")
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\n", t.ID, t.Name, t.Slug, t.Role, t.Members, strings.Join(marks, ","))
			}
		})
	case "create":
		t, err := c.CreateTeam(ctx, fs.Arg(0))
		if err != nil {
			return fmt.Errorf("create team %q: %w", fs.Arg(0), err)
		}
		return showTeam(*asJSON, t)
	case "show":
		id := fs.Arg(0)
		if id == "" {
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
		return showTeam(*asJSON, t)
	case "rename":
		t, err := c.RenameTeam(ctx, fs.Arg(0), fs.Arg(1))
		if err != nil {
			return fmt.Errorf("rename team %s: %w", fs.Arg(0), err)
		}
		return showTeam(*asJSON, t)
	case "rm":
		return removeTeam(ctx, cfg, c, fs.Arg(0), *yes, con)
	case "switch":
		s, err := c.SwitchTeam(ctx, fs.Arg(0))
		if err != nil {
			return fmt.Errorf("switch to team %s: %w", fs.Arg(0), err)
		}
		cfg.Token = s.Token
		if err := cfg.save(); err != nil {
			return fmt.Errorf("save the login for team %s: %w", s.TeamID, err)
		}
		fmt.Printf("your login now acts for team %s (%s); saved to %s\n", s.TeamID, s.Role, configPath())
		return nil
	case "leave":
		id := fs.Arg(0)
		me, err := c.Me(ctx)
		if err != nil {
			return fmt.Errorf("read which team the login acts for: %w", err)
		}
		return keepLogin(ctx, cfg, c, me, id, func() error {
			if err := c.LeaveTeam(ctx, id); err != nil {
				return fmt.Errorf("leave team %s: %w", id, err)
			}
			return nil
		})
	}
	return teamCommands.unknown(sub)
}

// removeTeam is `wrenn team rm`: it destroys what the team has, so on a terminal the
// user types the team's name (as they see it in `wrenn team ls`), and without one
// only --yes deletes.
func removeTeam(ctx context.Context, cfg cliConfig, c *client.Client, id string, yes bool, con console) error {
	if !yes && con.in == nil {
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
		fmt.Fprintf(con.out, "Deleting team %q (%s) destroys its sandboxes and snapshots and revokes its API keys. It cannot be undone.\n"+
			"Type the team's name to delete it: ", t.Name, t.ID)
		line, err := bufio.NewReader(con.in).ReadString('\n')
		if err != nil && line == "" {
			return fmt.Errorf("not deleting team %s: no name typed", id)
		}
		if strings.TrimSpace(line) != strings.TrimSpace(t.Name) {
			return fmt.Errorf("not deleting team %s: %q is not its name", id, strings.TrimSpace(line))
		}
	}
	return keepLogin(ctx, cfg, c, me, id, func() error {
		if err := c.DeleteTeam(ctx, id); err != nil {
			return fmt.Errorf("delete team %s: %w", id, err)
		}
		return nil
	})
}

// keepLogin runs act, which ends the user's membership of teamID (leaving it,
// deleting it, removing themselves). The server checks membership on every request,
// so a token acting for that team stops working once act succeeds, switch-team
// included, and the saved login would be good for nothing but a new login. So when
// the login acts for teamID, a session for another of the user's teams (the default
// one if it can) is taken before act, and saved once act has succeeded.
func keepLogin(ctx context.Context, cfg cliConfig, c *client.Client, me *client.Me, teamID string, act func() error) error {
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
		fmt.Fprintln(os.Stderr, "wrenn: your login acted for that team, your only one; log in again ('wrenn login') once you are in another")
		return nil
	}
	s, err := c.SwitchTeam(ctx, next)
	if err != nil {
		return fmt.Errorf("move the login to team %s before leaving team %s: %w", next, teamID, err)
	}
	if err := act(); err != nil {
		return err
	}
	cfg.Token = s.Token
	if err := cfg.save(); err != nil {
		return fmt.Errorf("save the login for team %s: %w", next, err)
	}
	fmt.Fprintf(os.Stderr, "wrenn: your login acted for team %s; it now acts for team %s (%s)\n", teamID, next, s.Role)
	return nil
}

// showTeam prints one team.
func showTeam(asJSON bool, t *client.Team) error {
	return output(asJSON, t, func(w *tabwriter.Writer) {
		fmt.Fprintf(w, "ID\tNAME\tSLUG\tROLE\tMEMBERS\tDEFAULT\tBYOC\tCREATED\n%s\t%s\t%s\t%s\t%d\t%t\t%t\t%s\n",
			t.ID, t.Name, t.Slug, t.Role, t.Members, t.IsDefault, t.IsBYOC, t.CreatedAt.Format(time.RFC3339))
	})
}

// memberCmd is `wrenn member`.
func memberCmd(ctx context.Context, args []string) error {
	sub, fs, err := memberCommands.start(args)
	if err != nil {
		return err
	}
	asJSON := fs.Bool("json", false, "print JSON")
	team := fs.String("team", "", "the team's id (default: the one your login acts for)")
	role := fs.String("role", "member", "add: the new member's role (member, admin or owner)")
	if err := parseInterspersed(fs, args[1:]); err != nil {
		return err
	}
	want := map[string]int{"ls": 0, "add": 1, "role": 2, "rm": 1}
	n, ok := want[sub]
	if !ok {
		return memberCommands.unknown(sub)
	}
	if fs.NArg() != n {
		return memberCommands.usageError(sub)
	}
	switch sub {
	case "add":
		if err := checkRole(*role); err != nil {
			return err
		}
	case "role":
		if err := checkRole(fs.Arg(1)); err != nil {
			return err
		}
	}
	cfg := loadConfig()
	c, err := userClient(cfg)
	if err != nil {
		return err
	}
	// rm needs the user's own id and current team whatever --team says: removing
	// themselves from the team the login acts for would leave the login dead.
	var me *client.Me
	if *team == "" || sub == "rm" {
		if me, err = c.Me(ctx); err != nil {
			return fmt.Errorf("read which team the login acts for: %w", err)
		}
		if *team == "" {
			*team = me.CurrentTeamID
		}
	}
	switch sub {
	case "ls":
		list, err := c.Members(ctx, *team)
		if err != nil {
			return fmt.Errorf("list the members of team %s: %w", *team, err)
		}
		return output(*asJSON, list, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "USER ID\tEMAIL\tNAME\tROLE\tJOINED")
			for _, m := range list {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", m.UserID, m.Email, m.Name, m.Role, m.JoinedAt.Format(time.RFC3339))
			}
		})
	case "add":
		m, err := c.AddMember(ctx, *team, fs.Arg(0), *role)
		if err != nil {
			return fmt.Errorf("add %s to team %s: %w", fs.Arg(0), *team, err)
		}
		return showMember(*asJSON, m)
	case "role":
		userID, err := memberID(ctx, c, *team, fs.Arg(0))
		if err != nil {
			return err
		}
		m, err := c.SetMemberRole(ctx, *team, userID, fs.Arg(1))
		if err != nil {
			return fmt.Errorf("make %s %s in team %s: %w", fs.Arg(0), fs.Arg(1), *team, err)
		}
		return showMember(*asJSON, m)
	case "rm":
		userID, err := memberID(ctx, c, *team, fs.Arg(0))
		if err != nil {
			return err
		}
		remove := func() error {
			if err := c.RemoveMember(ctx, *team, userID); err != nil {
				return fmt.Errorf("remove %s from team %s: %w", fs.Arg(0), *team, err)
			}
			return nil
		}
		if userID != me.User.ID {
			return remove()
		}
		return keepLogin(ctx, cfg, c, me, *team, remove)
	}
	return memberCommands.unknown(sub)
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

// showMember prints one member.
func showMember(asJSON bool, m *client.Member) error {
	return output(asJSON, m, func(w *tabwriter.Writer) {
		fmt.Fprintf(w, "USER ID\tEMAIL\tNAME\tROLE\tJOINED\n%s\t%s\t%s\t%s\t%s\n", m.UserID, m.Email, m.Name, m.Role, m.JoinedAt.Format(time.RFC3339))
	})
}
