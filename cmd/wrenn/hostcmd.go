package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wrennhq/wrenn/gen/db"
	"github.com/wrennhq/wrenn/internal/server/accounts"
	"github.com/wrennhq/wrenn/internal/server/store"
)

// hostCmd: wrenn host create [--platform] NAME | ls | get ID | rm [--force] ID | tag ID TAG | untag ID TAG
func hostCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: wrenn host create [--platform] NAME | ls | get ID | rm [--force] ID | tag|untag ID TAG")
	}
	sub := args[0]
	fs := flag.NewFlagSet("wrenn host "+sub, flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	platform := fs.Bool("platform", false, "create: a platform host (platform admins), not one of the team's own")
	force := fs.Bool("force", false, "rm: destroy the host's sandboxes too")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	c := loadConfig().client()
	switch sub {
	case "create":
		if fs.NArg() != 1 {
			return errors.New("usage: wrenn host create [--platform] NAME")
		}
		h, err := c.CreateHost(ctx, fs.Arg(0), *platform)
		if err != nil {
			return err
		}
		if *asJSON {
			return output(true, h, nil)
		}
		fmt.Printf("host %s created; on the new machine, within %s, run (as root):\n\n  wrenn agent --server %s --token %s --advertise ADDRESS:50051\n\n",
			h.ID, time.Until(h.TokenExpiresAt).Round(time.Minute), loadConfig().URL, h.RegistrationToken)
		return nil
	case "ls":
		list, err := c.ListHosts(ctx)
		if err != nil {
			return err
		}
		return output(*asJSON, list, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "ID\tNAME\tSTATUS\tADDRESS\tSANDBOXES\tTAGS")
			for _, h := range list {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\n", h.ID, h.Name, h.Status, h.Address, h.Sandboxes, strings.Join(h.Tags, ","))
			}
		})
	case "get":
		if fs.NArg() != 1 {
			return errors.New("usage: wrenn host get ID")
		}
		h, err := c.GetHost(ctx, fs.Arg(0))
		if err != nil {
			return err
		}
		return output(*asJSON, h, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "ID\tNAME\tSTATUS\tADDRESS\tVCPUS\tMEMORY\tSANDBOXES\n%s\t%s\t%s\t%s\t%d\t%d MiB\t%d\n",
				h.ID, h.Name, h.Status, h.Address, h.VCPUs, h.MemoryMB, h.Sandboxes)
		})
	case "rm":
		if fs.NArg() != 1 {
			return errors.New("usage: wrenn host rm [--force] ID")
		}
		return c.DeleteHost(ctx, fs.Arg(0), *force)
	case "tag", "untag":
		if fs.NArg() != 2 {
			return fmt.Errorf("usage: wrenn host %s ID TAG", sub)
		}
		if sub == "tag" {
			return c.TagHost(ctx, fs.Arg(0), fs.Arg(1))
		}
		return c.UntagHost(ctx, fs.Arg(0), fs.Arg(1))
	}
	return fmt.Errorf("unknown host command %q", sub)
}

// adminUsage is adminCmd's.
const adminUsage = "usage: wrenn admin grant|revoke EMAIL | create-user [--name NAME] EMAIL  " +
	"(needs WRENN_DATABASE_URL; create-user reads the password from WRENN_PASSWORD or stdin)"

// adminCmd: wrenn admin grant|revoke EMAIL makes a user a platform administrator or no
// longer one; wrenn admin create-user EMAIL makes an account (the only way to, with
// WRENN_SIGNUP=closed). Both go straight to the database (WRENN_DATABASE_URL): the
// operator's bootstrap, no API.
func adminCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New(adminUsage)
	}
	fs := flag.NewFlagSet("wrenn admin "+args[0], flag.ContinueOnError)
	name := fs.String("name", "", "create-user: the user's name")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 || (args[0] != "grant" && args[0] != "revoke" && args[0] != "create-user") {
		return errors.New(adminUsage)
	}
	email := fs.Arg(0)
	dsn := cliSettings().DatabaseURL
	if dsn == "" {
		return errors.New("WRENN_DATABASE_URL is required")
	}
	pool, err := store.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	if args[0] == "create-user" {
		pw, err := readPassword()
		if err != nil {
			return err
		}
		userID, teamID, err := accounts.CreateUser(ctx, pool, email, *name, pw)
		if err != nil {
			return err
		}
		fmt.Printf("created user %s (%s) with team %s; they log in with `wrenn login --email %s`\n", email, userID, teamID, email)
		return nil
	}
	u, err := db.New(pool).SetUserAdmin(ctx, db.SetUserAdminParams{Email: strings.ToLower(strings.TrimSpace(email)), IsAdmin: args[0] == "grant"})
	if err != nil {
		return fmt.Errorf("%s %s: %w (does the user exist?)", args[0], email, err)
	}
	fmt.Printf("%s is %sa platform administrator\n", u.Email, map[bool]string{true: "", false: "no longer "}[u.IsAdmin])
	return nil
}
