package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/wrennhq/wrenn/internal/cliconfig"
	"github.com/wrennhq/wrenn/internal/cliout"
	"github.com/wrennhq/wrenn/pkg/client"
)

// loginOptions are the flags of `wrenn login` and `wrenn signup`.
type loginOptions struct {
	email, name string
}

func newLoginCmd(a *app) *cobra.Command {
	var o loginOptions
	cmd := &cobra.Command{
		Use:   "login [--email E | --api-key KEY] [--profile P] [--url URL]",
		Short: "Log in and save the login as a profile",
		Long: `Log in with an email and password (the password from WRENN_PASSWORD, else asked on
the terminal, else the first line of stdin), or save a team API key with --api-key.
The login is saved, with the server's URL, as a profile in $XDG_CONFIG_HOME/wrenn/config
(~/.config/wrenn/config; mode 0600) and becomes the current profile: later commands use
it with nothing exported. --profile names the profile (default: WRENN_PROFILE, else the
current one, else "default").`,
		Example: `  wrenn login --email ann@example.com
  wrenn login --profile prod --url https://wrenn.example.com --email ann@example.com
  wrenn login --profile ci --api-key wrn_…`,
		Args: argsRange(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error { return a.login(cmd.Context(), false, o) },
	}
	cmd.Flags().StringVar(&o.email, "email", "", "account email (asked on a terminal when missing)")
	return cmd
}

func newSignupCmd(a *app) *cobra.Command {
	var o loginOptions
	cmd := &cobra.Command{
		Use:   "signup --email E [--name N] [--profile P] [--url URL]",
		Short: "Create an account and save its login as a profile",
		Long: `Create an account (with a personal team) and log in to it, saving the login as
'wrenn login' does. The password comes from WRENN_PASSWORD, else the terminal, else
the first line of stdin.`,
		Example: "  wrenn signup --email ann@example.com --name Ann",
		Args:    argsRange(0, 0),
		RunE:    func(cmd *cobra.Command, _ []string) error { return a.login(cmd.Context(), true, o) },
	}
	cmd.Flags().StringVar(&o.email, "email", "", "account email")
	cmd.Flags().StringVar(&o.name, "name", "", "your name")
	return cmd
}

// profileToWrite is the profile login writes: --profile, else WRENN_PROFILE, else the
// current one, else "default".
func (a *app) profileToWrite(f *cliconfig.File) (string, error) {
	name := cliconfig.DefaultProfile
	switch {
	case a.profile != "":
		name = a.profile
	case a.settings.Profile != "":
		name = a.settings.Profile
	case f.Current != "":
		name = f.Current
	}
	return name, cliconfig.CheckName(name)
}

func (a *app) login(ctx context.Context, signup bool, o loginOptions) error {
	f, path, err := a.loadProfiles()
	if err != nil {
		return err
	}
	name, err := a.profileToWrite(f)
	if err != nil {
		return err
	}
	url := cliconfig.DefaultURL
	switch {
	case a.url != "":
		url = a.url
	case a.settings.URL != "":
		url = a.settings.URL
	case f.Profiles[name].URL != "":
		url = f.Profiles[name].URL
	}
	url = strings.TrimRight(url, "/")
	var p cliconfig.Profile
	switch {
	case a.apiKey != "" && !signup:
		if o.email != "" {
			return usageErrorf("--email and --api-key: give one")
		}
		// A key is checked before it is saved: a typo should fail here, not later.
		if _, err := client.New(url, client.WithAPIKey(a.apiKey)).ListSandboxes(ctx); err != nil {
			return fmt.Errorf("check the API key with %s: %w", url, err)
		}
		p = cliconfig.Profile{URL: url, APIKey: a.apiKey}
	default:
		if o.email == "" {
			if signup || !a.inTTY {
				return usageErrorf("--email is needed")
			}
			if o.email, err = a.ask("email: "); err != nil {
				return err
			}
		}
		pw, err := a.readPassword()
		if err != nil {
			return err
		}
		c := client.New(url)
		var s *client.Session
		if signup {
			s, err = c.Signup(ctx, o.email, o.name, pw)
		} else {
			s, err = c.Login(ctx, o.email, pw)
		}
		if err != nil {
			return err
		}
		p = cliconfig.Profile{URL: url, Token: s.Token, Email: o.email}
	}
	f.Put(name, p)
	if err := f.Save(path); err != nil {
		return err
	}
	who := "API key " + keyPrefix(p.APIKey)
	if p.Email != "" {
		who = p.Email
	}
	fmt.Fprintf(a.out, "logged in to %s as %s; saved as profile %q (current) in %s\n", url, who, name, path)
	return nil
}

// keyPrefix shows enough of a key to tell keys apart, never the secret part.
func keyPrefix(key string) string {
	if len(key) > 12 {
		return key[:12] + "…"
	}
	return "(short key)"
}

// ask reads one line from the terminal after a prompt on stderr.
func (a *app) ask(prompt string) (string, error) {
	fmt.Fprint(a.errOut, prompt)
	line, err := bufio.NewReader(a.in).ReadString('\n')
	if err != nil && line == "" {
		return "", fmt.Errorf("no answer to %q", strings.TrimSpace(prompt))
	}
	return strings.TrimSpace(line), nil
}

// readPassword takes WRENN_PASSWORD, else asks on the terminal without echo, else
// reads the first line of stdin.
func (a *app) readPassword() (string, error) {
	if p := a.settings.Password; p != "" {
		return p, nil
	}
	if f, ok := a.in.(*os.File); ok && a.inTTY {
		fmt.Fprint(a.errOut, "password: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.errOut)
		if err != nil {
			return "", fmt.Errorf("read the password: %w", err)
		}
		return string(b), nil
	}
	line, err := bufio.NewReader(a.in).ReadString('\n')
	if err != nil && line == "" {
		return "", errors.New("no password (set WRENN_PASSWORD or type it)")
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func newLogoutCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "logout [--profile P]",
		Short: "Forget a saved login",
		Long: `Remove a profile (the current one unless --profile or WRENN_PROFILE names another)
from the config file. The server's session expires on its own; an API key stays valid
until revoked ('wrenn keys rm').`,
		Example: "  wrenn logout\n  wrenn logout --profile prod",
		Args:    argsRange(0, 0),
		RunE: func(*cobra.Command, []string) error {
			f, path, err := a.loadProfiles()
			if err != nil {
				return err
			}
			name, err := a.profileToWrite(f)
			if err != nil {
				return err
			}
			if !f.Remove(name) {
				return fmt.Errorf("no profile %q in %s (profiles: %s)", name, path, strings.Join(f.Names(), ", "))
			}
			if err := f.Save(path); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "logged out: profile %q removed from %s\n", name, path)
			return nil
		},
	}
}

func newWhoamiCmd(a *app) *cobra.Command {
	var o outputFlags
	cmd := &cobra.Command{
		Use:   "whoami",
		Short: "Show the server, profile, user and team the commands act as",
		Long: `Show which server the commands talk to, with which saved profile or override, and
who that is there: the user and the team (a user's login), or the team API key.`,
		Example: "  wrenn whoami\n  wrenn whoami --profile prod -o json",
		Args:    argsRange(0, 0),
		RunE:    func(cmd *cobra.Command, _ []string) error { return a.whoami(cmd.Context(), &o) },
	}
	addOutputFlags(cmd, &o)
	return cmd
}

// identity is what whoami prints.
type identity struct {
	Server      string `json:"server"`
	ServerFrom  string `json:"server_from"`
	Profile     string `json:"profile"`
	ProfileFrom string `json:"profile_from"`
	Credential  string `json:"credential"` // "login" or "api_key"
	CredFrom    string `json:"credential_from"`
	APIKey      string `json:"api_key,omitempty"` // its prefix
	UserID      string `json:"user_id,omitempty"`
	Email       string `json:"email,omitempty"`
	Name        string `json:"name,omitempty"`
	PlatformAdm bool   `json:"platform_admin,omitempty"`
	TeamID      string `json:"team_id,omitempty"`
	TeamName    string `json:"team_name,omitempty"`
	Role        string `json:"role,omitempty"`
}

func (a *app) whoami(ctx context.Context, o *outputFlags) error {
	p, err := a.printer(o)
	if err != nil {
		return err
	}
	c, r, err := a.client()
	if err != nil {
		return err
	}
	id := identity{Server: r.Profile.URL, ServerFrom: r.URLFrom, Profile: r.Name, ProfileFrom: r.NameFrom, CredFrom: r.CredFrom}
	if r.Profile.Token != "" {
		id.Credential = "login"
		me, err := c.Me(ctx)
		if err != nil {
			return fmt.Errorf("ask %s who this is: %w", r.Profile.URL, err)
		}
		id.UserID, id.Email, id.Name, id.PlatformAdm, id.TeamID = me.User.ID, me.User.Email, me.User.Name, me.User.IsAdmin, me.CurrentTeamID
		for _, t := range me.Teams {
			if t.ID == me.CurrentTeamID {
				id.TeamName, id.Role = t.Name, t.Role
			}
		}
	} else {
		id.Credential, id.APIKey = "api_key", keyPrefix(r.Profile.APIKey)
		// A key answers for one team; the sandbox list is a cheap check that it works.
		if _, err := c.ListSandboxes(ctx); err != nil {
			return fmt.Errorf("check the API key with %s: %w", r.Profile.URL, err)
		}
	}
	if p.Format == "json" || p.Format == "yaml" {
		return p.Value(id)
	}
	if p.Quiet {
		_, err := fmt.Fprintln(a.out, strings.TrimSpace(id.Email+" "+id.APIKey))
		return err
	}
	from := func(s string) string {
		switch s {
		case "", "profile":
			return ""
		case "config":
			return " (current)"
		}
		return " (from " + s + ")"
	}
	fmt.Fprintf(a.out, "server:   %s%s\nprofile:  %s%s\n", id.Server, from(id.ServerFrom), id.Profile, from(id.ProfileFrom))
	if id.Credential == "api_key" {
		fmt.Fprintf(a.out, "as:       team API key %s%s\n", id.APIKey, from(id.CredFrom))
		return nil
	}
	admin := ""
	if id.PlatformAdm {
		admin = ", platform administrator"
	}
	fmt.Fprintf(a.out, "user:     %s (%s)%s\nteam:     %s (%s), %s\n", id.Email, id.Name, admin, id.TeamName, id.TeamID, id.Role)
	return nil
}

func newProfilesCmd(a *app) *cobra.Command {
	var o outputFlags
	ls := &cobra.Command{
		Use:     "ls",
		Short:   "List the saved profiles; the current one is marked",
		Example: "  wrenn profile ls",
		Args:    argsRange(0, 0),
		RunE: func(*cobra.Command, []string) error {
			p, err := a.printer(&o)
			if err != nil {
				return err
			}
			f, _, err := a.loadProfiles()
			if err != nil {
				return err
			}
			type row struct {
				Name    string `json:"name"`
				Current bool   `json:"current"`
				URL     string `json:"url"`
				As      string `json:"as"`
			}
			var rows []row
			for _, n := range f.Names() {
				pr := f.Profiles[n]
				as := pr.Email
				if pr.APIKey != "" {
					as = "API key " + keyPrefix(pr.APIKey)
				}
				rows = append(rows, row{n, n == f.Current, pr.URL, as})
			}
			return cliout.List(p, rows, func(r row) string { return r.Name }, []cliout.Column[row]{
				{Header: "CURRENT", Value: func(r row) string { return map[bool]string{true: "*"}[r.Current] }},
				{Header: "NAME", Value: func(r row) string { return r.Name }},
				{Header: "SERVER", Value: func(r row) string { return r.URL }},
				{Header: "AS", Value: func(r row) string { return r.As }},
			})
		},
	}
	addOutputFlags(ls, &o)
	use := &cobra.Command{
		Use:               "use NAME",
		Short:             "Make a saved profile the current one",
		Example:           "  wrenn profile use prod",
		Args:              argsRange(1, 1),
		ValidArgsFunction: a.completeProfiles,
		RunE: func(_ *cobra.Command, args []string) error {
			f, path, err := a.loadProfiles()
			if err != nil {
				return err
			}
			if _, ok := f.Profiles[args[0]]; !ok {
				return fmt.Errorf("no profile %q (profiles: %s)", args[0], strings.Join(f.Names(), ", "))
			}
			f.Current = args[0]
			if err := f.Save(path); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "profile %q is now current\n", args[0])
			return nil
		},
	}
	return group("profile", "Saved logins: list them, choose the current one",
		"Profiles are saved logins ('wrenn login --profile NAME'). --profile or WRENN_PROFILE\nchoose one for a command; otherwise the current one is used.", ls, use)
}
