package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/internal/server/accounts"
	"github.com/wrennhq/wrenn/internal/server/store"
	"github.com/wrennhq/wrenn/pkg/client"
)

// adminCommands is `wrenn admin`: the operator's bootstrap straight in the database
// (grant, revoke, create-user: there may be no administrator to log in as yet), and
// platform administration through the API with the user's login (the rest: the
// server checks on every request that the user is an administrator).
var adminCommands = commandGroup{name: "admin", subs: []subcommand{
	{"grant", "EMAIL", "make a user a platform administrator (in the database: WRENN_DATABASE_URL)"},
	{"revoke", "EMAIL", "make a user no longer a platform administrator (in the database: WRENN_DATABASE_URL)"},
	{"create-user", "[--name NAME] EMAIL", "make an account with a team of its own (in the database: WRENN_DATABASE_URL; the password from WRENN_PASSWORD or stdin); with WRENN_SIGNUP=closed the only way"},
	{"teams", "[--deleted] [--limit N] [--cursor C]", "every team, newest first, with its members and live sandboxes; --deleted: deleted teams too"},
	{"users", "[--email PREFIX] [--limit N] [--cursor C]", "every user, newest first; --email: those whose email starts with PREFIX"},
	{"byoc", "TEAM_ID on|off", "let a team run on its own hosts only (on), or on the platform's again (off)"},
	{"templates", "[--team ID]", "the platform's templates, or with --team that team's snapshots"},
	{"template", "get|rm NAME [--team ID]", "show or delete a template of the platform (or with --team a team's snapshot); rm removes its files from every host, then its record, and sandboxes made from it run on"},
	{"sandboxes", "[--state S] [--team ID] [--host ID] [--limit N] [--cursor C]", "every team's sandboxes, newest first; --state as 'wrenn sandbox ls' (comma-separated, or all)"},
}, notes: func(shown []subcommand) string {
	var inDB, viaAPI bool
	for _, c := range shown {
		switch c.name {
		case "grant", "revoke", "create-user":
			inDB = true
		default:
			viaAPI = true
		}
	}
	notes := ""
	if inDB {
		notes += "grant, revoke and create-user go straight to the control plane's database (WRENN_DATABASE_URL).\n"
	}
	if viaAPI {
		notes += "The others go through the API with your login ('wrenn login'), as a platform administrator.\n" +
			"--json prints JSON; a page with more after it ends with the --cursor of the next one.\n"
	}
	return notes
}}

// adminFlags are every `wrenn admin` flag; each subcommand reads its own.
type adminFlags struct {
	json, deleted                          *bool
	name, email, team, state, host, cursor *string
	limit                                  *int
}

func adminCmd(ctx context.Context, args []string) error {
	sub, fs, err := adminCommands.start(args)
	if err != nil {
		return err
	}
	f := adminFlags{
		json:    fs.Bool("json", false, "print JSON"),
		deleted: fs.Bool("deleted", false, "teams: deleted teams too"),
		name:    fs.String("name", "", "create-user: the user's name"),
		email:   fs.String("email", "", "users: only those whose email starts with this"),
		team:    fs.String("team", "", "templates, template, sandboxes: this team's (its id)"),
		state:   fs.String("state", "", "sandboxes: these states, comma-separated, or all (default: the live ones)"),
		host:    fs.String("host", "", "sandboxes: only those on this host (its id)"),
		cursor:  fs.String("cursor", "", "teams, users, sandboxes: the page after the one that printed it"),
		limit:   fs.Int("limit", 0, "teams, users, sandboxes: at most this many (server default 50, at most 200)"),
	}
	if err := parseInterspersed(fs, args[1:]); err != nil {
		return err
	}
	usageErr := func() error { return adminCommands.usageError(sub) }
	switch sub {
	case "grant", "revoke", "create-user":
		if fs.NArg() != 1 {
			return usageErr()
		}
		return adminInDatabase(ctx, sub, fs.Arg(0), *f.name)
	case "teams", "users", "sandboxes", "templates":
		if fs.NArg() != 0 {
			return usageErr()
		}
		return adminList(ctx, sub, f)
	case "byoc":
		if fs.NArg() != 2 {
			return usageErr()
		}
		on, ok := map[string]bool{"on": true, "true": true, "off": false, "false": false}[fs.Arg(1)]
		if !ok {
			return fmt.Errorf("byoc: %q is neither on nor off\n%s", fs.Arg(1), adminCommands.usage(sub))
		}
		if err := loadConfig().client().SetTeamBYOC(ctx, fs.Arg(0), on); err != nil {
			return err
		}
		fmt.Printf("team %s runs on %s\n", fs.Arg(0), map[bool]string{true: "its own hosts only", false: "the platform's hosts"}[on])
		return nil
	case "template":
		if fs.NArg() != 2 || (fs.Arg(0) != "get" && fs.Arg(0) != "rm") {
			return usageErr()
		}
		c := loadConfig().client()
		if fs.Arg(0) == "rm" {
			return c.DeleteAdminTemplate(ctx, fs.Arg(1), *f.team)
		}
		t, err := c.AdminTemplate(ctx, fs.Arg(1), *f.team)
		if err != nil {
			return err
		}
		return printTemplates(*f.json, t, []client.AdminTemplate{*t})
	}
	return adminCommands.unknown(sub)
}

// adminList prints a listing: a page of teams, users or sandboxes (with the flag of
// the next page, on stderr so that stdout stays the table), or the templates.
func adminList(ctx context.Context, sub string, f adminFlags) error {
	c := loadConfig().client()
	var next *string
	var err error
	switch sub {
	case "teams":
		var page *client.AdminTeamPage
		if page, err = c.AdminTeams(ctx, client.AdminTeamsQuery{Limit: *f.limit, Cursor: *f.cursor, IncludeDeleted: *f.deleted}); err != nil {
			return err
		}
		next = page.NextCursor
		err = output(*f.json, page, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "ID\tNAME\tSLUG\tBYOC\tMEMBERS\tSANDBOXES\tCREATED\tDELETED")
			for _, t := range page.Teams {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", t.ID, t.Name, t.Slug, yesNo(t.BYOC), t.Members, t.Sandboxes,
					t.CreatedAt.Format(time.RFC3339), timeOrDash(t.DeletedAt))
			}
		})
	case "users":
		var page *client.AdminUserPage
		if page, err = c.AdminUsers(ctx, client.AdminUsersQuery{Limit: *f.limit, Cursor: *f.cursor, Email: *f.email}); err != nil {
			return err
		}
		next = page.NextCursor
		err = output(*f.json, page, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "ID\tEMAIL\tNAME\tADMIN\tTEAMS\tCREATED")
			for _, u := range page.Users {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\n", u.ID, u.Email, u.Name, yesNo(u.Admin), u.Teams, u.CreatedAt.Format(time.RFC3339))
			}
		})
	case "sandboxes":
		var page *client.AdminSandboxPage
		q := client.AdminSandboxesQuery{States: list(*f.state), TeamID: *f.team, HostID: *f.host, Limit: *f.limit, Cursor: *f.cursor}
		if page, err = c.AdminSandboxes(ctx, q); err != nil {
			return err
		}
		next = page.NextCursor
		err = output(*f.json, page, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "ID\tTEAM\tSTATUS\tTEMPLATE\tVCPUS\tMEMORY\tCREATED")
			for _, sb := range page.Sandboxes {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d MiB\t%s\n", sb.ID, sb.TeamID, sb.Status, sb.Template, sb.VCPUs, sb.MemoryMB, sb.CreatedAt.Format(time.RFC3339))
			}
		})
	case "templates":
		templates, err := c.AdminTemplates(ctx, *f.team)
		if err != nil {
			return err
		}
		return printTemplates(*f.json, templates, templates)
	}
	if err != nil {
		return err
	}
	if next != nil && !*f.json {
		fmt.Fprintf(os.Stderr, "more: --cursor %s\n", *next)
	}
	return nil
}

// printTemplates prints templates as a table, or v (what the API answered) as JSON.
func printTemplates(asJSON bool, v any, list []client.AdminTemplate) error {
	return output(asJSON, v, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "NAME\tTEAM\tKIND\tBASE\tVCPUS\tMEMORY\tSIZE\tHOSTS\tCREATED")
		for _, t := range list {
			team, base, vcpus, memory := "platform", "-", "-", "-"
			if t.TeamID != nil {
				team = *t.TeamID
			}
			if t.BaseTemplate != nil {
				base = *t.BaseTemplate
			}
			if t.VCPUs != nil {
				vcpus = fmt.Sprint(*t.VCPUs)
			}
			if t.MemoryMB != nil {
				memory = fmt.Sprintf("%d MiB", *t.MemoryMB)
			}
			hosts := strings.Join(t.Hosts, ",")
			if hosts == "" {
				hosts = "-"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, team, t.Kind, base, vcpus, memory, mib(t.SizeBytes), hosts, t.CreatedAt.Format(time.RFC3339))
		}
	})
}

func yesNo(b bool) string { return map[bool]string{true: "yes", false: "no"}[b] }

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}

// adminInDatabase is grant, revoke and create-user: the operator's bootstrap, with
// only the database (WRENN_DATABASE_URL), no API and no login.
func adminInDatabase(ctx context.Context, sub, email, name string) error {
	dsn := cliSettings().DatabaseURL
	if dsn == "" {
		return errors.New("WRENN_DATABASE_URL is required")
	}
	pool, err := store.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	if sub == "create-user" {
		pw, err := readPassword()
		if err != nil {
			return err
		}
		userID, teamID, err := accounts.CreateUser(ctx, pool, email, name, pw)
		if err != nil {
			return err
		}
		fmt.Printf("created user %s (%s) with team %s; they log in with `wrenn login --email %s`\n", email, userID, teamID, email)
		return nil
	}
	u, err := db.New(pool).SetUserAdmin(ctx, db.SetUserAdminParams{Email: strings.ToLower(strings.TrimSpace(email)), IsAdmin: sub == "grant"})
	if err != nil {
		return fmt.Errorf("%s %s: %w (does the user exist?)", sub, email, err)
	}
	fmt.Printf("%s is %sa platform administrator\n", u.Email, map[bool]string{true: "", false: "no longer "}[u.IsAdmin])
	return nil
}
