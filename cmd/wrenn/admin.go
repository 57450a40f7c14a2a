package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/internal/cliout"
	"github.com/wrennhq/wrenn/internal/server/accounts"
	"github.com/wrennhq/wrenn/internal/server/store"
	"github.com/wrennhq/wrenn/pkg/client"
)

// newAdminCmd is `wrenn admin`: the operator's bootstrap straight in the database
// (grant, revoke, create-user: there may be no administrator to log in as yet), and
// platform administration through the API with the user's login (the rest: the
// server checks on every request that the user is an administrator).
func newAdminCmd(a *app) *cobra.Command {
	cmd := group("admin", "Platform administration",
		`grant, revoke and create-user go straight to the control plane's database
(WRENN_DATABASE_URL): there may be no administrator to log in as yet. The others go
through the API with your login ('wrenn login'), as a platform administrator; a page
with more after it ends with the --cursor of the next one (on stderr).`,
		newAdminDatabaseCmd(a, "grant", "Make a user a platform administrator (in the database)"),
		newAdminDatabaseCmd(a, "revoke", "Make a user no longer a platform administrator (in the database)"),
		newAdminDatabaseCmd(a, "create-user", "Make an account with a team of its own (in the database)"),
		newAdminTeamsCmd(a), newAdminUsersCmd(a), newAdminSandboxesCmd(a), newAdminBYOCCmd(a),
		newAdminTemplatesCmd(a), newAdminTemplateCmd(a))
	cmd.Example = "  WRENN_DATABASE_URL=postgres://… wrenn admin grant ann@example.com\n  wrenn admin teams\n  wrenn admin byoc 6f1c2d3e-… on"
	return cmd
}

// newAdminDatabaseCmd is grant, revoke or create-user: the operator's bootstrap, with
// only the database (WRENN_DATABASE_URL), no API and no login.
func newAdminDatabaseCmd(a *app, name, short string) *cobra.Command {
	var display string
	cmd := &cobra.Command{
		Use:     name + " EMAIL",
		Short:   short,
		Long:    short + ": WRENN_DATABASE_URL is the control plane's PostgreSQL.",
		Example: "  WRENN_DATABASE_URL=postgres://… wrenn admin " + name + " ann@example.com",
		Args:    argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.adminInDatabase(cmd.Context(), name, args[0], display)
		},
	}
	if name == "create-user" {
		cmd.Use = "create-user [--name NAME] EMAIL"
		cmd.Long = `Make an account, with a team of its own, straight in the database
(WRENN_DATABASE_URL); the password comes from WRENN_PASSWORD, else stdin. With
WRENN_SIGNUP=closed this is the only way accounts are made.`
		cmd.Example = "  WRENN_DATABASE_URL=postgres://… WRENN_PASSWORD=… wrenn admin create-user --name Ann ann@example.com"
		cmd.Flags().StringVar(&display, "name", "", "the user's name")
	}
	return cmd
}

func (a *app) adminInDatabase(ctx context.Context, sub, email, name string) error {
	dsn := a.settings.DatabaseURL
	if dsn == "" {
		return errors.New("WRENN_DATABASE_URL is required")
	}
	pool, err := store.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	if sub == "create-user" {
		pw, err := a.readPassword()
		if err != nil {
			return err
		}
		userID, teamID, err := accounts.CreateUser(ctx, pool, email, name, pw)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(a.out, "created user %s (%s) with team %s; they log in with `wrenn login --email %s`\n", email, userID, teamID, email)
		return err
	}
	u, err := db.New(pool).SetUserAdmin(ctx, db.SetUserAdminParams{Email: strings.ToLower(strings.TrimSpace(email)), IsAdmin: sub == "grant"})
	if err != nil {
		return fmt.Errorf("%s %s: %w (does the user exist?)", sub, email, err)
	}
	_, err = fmt.Fprintf(a.out, "%s is %sa platform administrator\n", u.Email, map[bool]string{true: "", false: "no longer "}[u.IsAdmin])
	return err
}

// pageFlags are --limit and --cursor of a paged listing.
type pageFlags struct {
	limit  int
	cursor string
}

func addPageFlags(cmd *cobra.Command, f *pageFlags) {
	cmd.Flags().IntVar(&f.limit, "limit", 0, "at most this many (server default 50, at most 200)")
	cmd.Flags().StringVar(&f.cursor, "cursor", "", "the page after the one that printed it")
}

// nextCursor is the flag that shows the page after, "" on the last.
func nextCursor(c *string) string {
	if c == nil {
		return ""
	}
	return "--cursor " + *c
}

func newAdminTeamsCmd(a *app) *cobra.Command {
	var (
		o       outputFlags
		pf      pageFlags
		deleted bool
	)
	cmd := &cobra.Command{
		Use:     "teams [--deleted] [--limit N] [--cursor C]",
		Short:   "Every team, newest first, with its members and live sandboxes",
		Example: "  wrenn admin teams\n  wrenn admin teams --deleted --limit 200 -o json",
		Args:    argsRange(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, c, err := a.printerAndClient(&o)
			if err != nil {
				return err
			}
			page, err := c.AdminTeams(cmd.Context(), client.AdminTeamsQuery{Limit: pf.limit, Cursor: pf.cursor, IncludeDeleted: deleted})
			if err != nil {
				return err
			}
			return printPage(a, p, page, page.Teams, func(t client.AdminTeam) string { return t.ID }, adminTeamColumns, nextCursor(page.NextCursor))
		},
	}
	cmd.Flags().BoolVar(&deleted, "deleted", false, "deleted teams too")
	addPageFlags(cmd, &pf)
	addOutputFlags(cmd, &o)
	return cmd
}

var adminTeamColumns = []cliout.Column[client.AdminTeam]{
	{Header: "ID", Value: func(t client.AdminTeam) string { return t.ID }},
	{Header: "NAME", Value: func(t client.AdminTeam) string { return t.Name }},
	{Header: "SLUG", Value: func(t client.AdminTeam) string { return t.Slug }},
	{Header: "BYOC", Value: func(t client.AdminTeam) string { return yesNo(t.BYOC) }},
	{Header: "MEMBERS", Value: func(t client.AdminTeam) string { return strconv.Itoa(t.Members) }},
	{Header: "SANDBOXES", Value: func(t client.AdminTeam) string { return strconv.Itoa(t.Sandboxes) }},
	{Header: "CREATED", Value: func(t client.AdminTeam) string { return t.CreatedAt.Format(time.RFC3339) }},
	{Header: "DELETED", Value: func(t client.AdminTeam) string { return timeOrDash(t.DeletedAt) }},
}

func newAdminUsersCmd(a *app) *cobra.Command {
	var (
		o     outputFlags
		pf    pageFlags
		email string
	)
	cmd := &cobra.Command{
		Use:     "users [--email PREFIX] [--limit N] [--cursor C]",
		Short:   "Every user, newest first",
		Long:    "Every user, newest first; --email: those whose email starts with PREFIX (taken literally).",
		Example: "  wrenn admin users\n  wrenn admin users --email ann@",
		Args:    argsRange(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, c, err := a.printerAndClient(&o)
			if err != nil {
				return err
			}
			page, err := c.AdminUsers(cmd.Context(), client.AdminUsersQuery{Limit: pf.limit, Cursor: pf.cursor, Email: email})
			if err != nil {
				return err
			}
			return printPage(a, p, page, page.Users, func(u client.AdminUser) string { return u.ID }, adminUserColumns, nextCursor(page.NextCursor))
		},
	}
	cmd.Flags().StringVar(&email, "email", "", "only those whose email starts with this")
	addPageFlags(cmd, &pf)
	addOutputFlags(cmd, &o)
	return cmd
}

var adminUserColumns = []cliout.Column[client.AdminUser]{
	{Header: "ID", Value: func(u client.AdminUser) string { return u.ID }},
	{Header: "EMAIL", Value: func(u client.AdminUser) string { return u.Email }},
	{Header: "NAME", Value: func(u client.AdminUser) string { return u.Name }},
	{Header: "ADMIN", Value: func(u client.AdminUser) string { return yesNo(u.Admin) }},
	{Header: "TEAMS", Value: func(u client.AdminUser) string { return strconv.Itoa(u.Teams) }},
	{Header: "CREATED", Value: func(u client.AdminUser) string { return u.CreatedAt.Format(time.RFC3339) }},
}

func newAdminSandboxesCmd(a *app) *cobra.Command {
	var (
		o                 outputFlags
		pf                pageFlags
		state, team, host string
	)
	cmd := &cobra.Command{
		Use:   "sandboxes [--state S] [--team ID] [--host ID] [--limit N] [--cursor C]",
		Short: "Every team's sandboxes, newest first",
		Long: `Every team's sandboxes, newest first: the live ones, or --state's (comma-separated
states, or all), of one team (--team) or on one host (--host).`,
		Example: "  wrenn admin sandboxes\n  wrenn admin sandboxes --state running,paused --host 6f1c2d3e-… -q",
		Args:    argsRange(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, c, err := a.printerAndClient(&o)
			if err != nil {
				return err
			}
			q := client.AdminSandboxesQuery{States: commaList(state), TeamID: team, HostID: host, Limit: pf.limit, Cursor: pf.cursor}
			page, err := c.AdminSandboxes(cmd.Context(), q)
			if err != nil {
				return err
			}
			return printPage(a, p, page, page.Sandboxes, func(s client.AdminSandbox) string { return s.ID }, adminSandboxColumns, nextCursor(page.NextCursor))
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "these states, comma-separated, or all (default: the live ones)")
	cmd.Flags().StringVar(&team, "team", "", "only this team's (its id)")
	cmd.Flags().StringVar(&host, "host", "", "only those on this host (its id)")
	addPageFlags(cmd, &pf)
	addOutputFlags(cmd, &o)
	return cmd
}

var adminSandboxColumns = []cliout.Column[client.AdminSandbox]{
	{Header: "ID", Value: func(s client.AdminSandbox) string { return s.ID }},
	{Header: "TEAM", Value: func(s client.AdminSandbox) string { return s.TeamID }},
	{Header: "STATUS", State: true, Value: func(s client.AdminSandbox) string { return s.Status }},
	{Header: "TEMPLATE", Value: func(s client.AdminSandbox) string { return s.Template }},
	{Header: "VCPUS", Value: func(s client.AdminSandbox) string { return strconv.Itoa(s.VCPUs) }},
	{Header: "MEMORY", Value: func(s client.AdminSandbox) string { return fmt.Sprintf("%d MiB", s.MemoryMB) }},
	{Header: "CREATED", Value: func(s client.AdminSandbox) string { return s.CreatedAt.Format(time.RFC3339) }},
	{Header: "ERROR", Wide: true, Value: func(s client.AdminSandbox) string { return s.Error }},
}

func newAdminBYOCCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "byoc TEAM_ID on|off",
		Short: "Let a team run on its own hosts only (on), or on the platform's again (off)",
		Long: `Switch a team to its own hosts only (on: its owners and admins then add them with
'wrenn host create'), or back to the platform's hosts (off).`,
		Example: "  wrenn admin byoc 6f1c2d3e-… on",
		Args:    argsRange(2, 2),
		ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(args) == 1 {
				return []string{"on", "off"}, cobra.ShellCompDirectiveNoFileComp
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			on, ok := map[string]bool{"on": true, "true": true, "off": false, "false": false}[args[1]]
			if !ok {
				return usageErrorf("%q is neither on nor off; usage: %s", args[1], cmd.UseLine())
			}
			c, _, err := a.client()
			if err != nil {
				return err
			}
			if err := c.SetTeamBYOC(cmd.Context(), args[0], on); err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.out, "team %s runs on %s\n", args[0], map[bool]string{true: "its own hosts only", false: "the platform's hosts"}[on])
			return err
		},
	}
}

var adminTemplateColumns = []cliout.Column[client.AdminTemplate]{
	{Header: "NAME", Value: func(t client.AdminTemplate) string { return t.Name }},
	{Header: "TEAM", Value: func(t client.AdminTemplate) string { return deref(t.TeamID, "platform") }},
	{Header: "KIND", Value: func(t client.AdminTemplate) string { return t.Kind }},
	{Header: "BASE", Value: func(t client.AdminTemplate) string { return deref(t.BaseTemplate, "-") }},
	{Header: "VCPUS", Value: func(t client.AdminTemplate) string {
		if t.VCPUs == nil {
			return "-"
		}
		return strconv.Itoa(*t.VCPUs)
	}},
	{Header: "MEMORY", Value: func(t client.AdminTemplate) string {
		if t.MemoryMB == nil {
			return "-"
		}
		return fmt.Sprintf("%d MiB", *t.MemoryMB)
	}},
	{Header: "DISK", Wide: true, Value: func(t client.AdminTemplate) string {
		if t.DiskMB == nil {
			return "-"
		}
		return fmt.Sprintf("%d MiB", *t.DiskMB)
	}},
	{Header: "SIZE", Value: func(t client.AdminTemplate) string { return mib(t.SizeBytes) }},
	{Header: "HOSTS", Value: func(t client.AdminTemplate) string {
		if len(t.Hosts) == 0 {
			return "-"
		}
		return strings.Join(t.Hosts, ",")
	}},
	{Header: "CREATED", Value: func(t client.AdminTemplate) string { return t.CreatedAt.Format(time.RFC3339) }},
}

func adminTemplateName(t client.AdminTemplate) string { return t.Name }

func newAdminTemplatesCmd(a *app) *cobra.Command {
	var (
		o    outputFlags
		team string
	)
	cmd := &cobra.Command{
		Use:     "templates [--team ID]",
		Short:   "The platform's templates, or with --team that team's snapshots",
		Example: "  wrenn admin templates\n  wrenn admin templates --team 6f1c2d3e-…",
		Args:    argsRange(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, c, err := a.printerAndClient(&o)
			if err != nil {
				return err
			}
			list, err := c.AdminTemplates(cmd.Context(), team)
			if err != nil {
				return err
			}
			return cliout.List(p, list, adminTemplateName, adminTemplateColumns)
		},
	}
	cmd.Flags().StringVar(&team, "team", "", "this team's snapshots (its id), not the platform's templates")
	addOutputFlags(cmd, &o)
	return cmd
}

// newAdminTemplateCmd is `admin template get|rm NAME`.
func newAdminTemplateCmd(a *app) *cobra.Command {
	var (
		o            outputFlags
		team, rmTeam string
	)
	get := &cobra.Command{
		Use:     "get NAME [--team ID]",
		Short:   "Show a template of the platform (or with --team a team's snapshot)",
		Example: "  wrenn admin template get base\n  wrenn admin template get py-ready --team 6f1c2d3e-… -o json",
		Args:    argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, c, err := a.printerAndClient(&o)
			if err != nil {
				return err
			}
			t, err := c.AdminTemplate(cmd.Context(), args[0], team)
			if err != nil {
				return err
			}
			return cliout.One(p, *t, adminTemplateName, adminTemplateColumns)
		},
	}
	get.Flags().StringVar(&team, "team", "", "a team's snapshot (the team's id), not a platform template")
	addOutputFlags(get, &o)
	rm := &cobra.Command{
		Use:   "rm NAME [--team ID]",
		Short: "Delete a template of the platform (or with --team a team's snapshot)",
		Long: `Delete a template of the platform (or with --team a team's snapshot): its files are
removed from every host, then its record; sandboxes made from it run on.`,
		Example: "  wrenn admin template rm old-base\n  wrenn admin template rm py-ready --team 6f1c2d3e-…",
		Args:    argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := a.client()
			if err != nil {
				return err
			}
			return c.DeleteAdminTemplate(cmd.Context(), args[0], rmTeam)
		},
	}
	rm.Flags().StringVar(&rmTeam, "team", "", "a team's snapshot (the team's id), not a platform template")
	cmd := group("template", "Show or delete one template (get, rm)", "", get, rm)
	cmd.Example = "  wrenn admin template get base\n  wrenn admin template rm py-ready --team 6f1c2d3e-…"
	return cmd
}

func deref(s *string, none string) string {
	if s == nil {
		return none
	}
	return *s
}

func yesNo(b bool) string { return map[bool]string{true: "yes", false: "no"}[b] }

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}
