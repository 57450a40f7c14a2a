package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wrennhq/wrenn/pkg/client"
)

const auditUsage = `usage: wrenn audit [flags]
    a page of the team's audit log, newest first (a user's login, not an API key):
    owners and admins see the team's entries, members their own; --all: every
    team's (platform administrators). Filters take comma-separated lists; a page
    with more after it ends with the flags that show the next one.
flags:
`

// auditCmd is `wrenn audit`.
func auditCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("wrenn audit", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), auditUsage)
		fs.PrintDefaults()
	}
	asJSON := fs.Bool("json", false, "print JSON")
	all := fs.Bool("all", false, "every team's log (platform administrators)")
	limit := fs.Int("limit", 0, "at most this many entries (server default 50, at most 200)")
	before := fs.String("before", "", "entries older than this one: its time (RFC 3339), with --before-id")
	beforeID := fs.Int64("before-id", 0, "entries older than this one: its id, with --before")
	action := fs.String("action", "", "only these actions (e.g. sandbox.create,api_key.revoke)")
	resource := fs.String("resource-type", "", "only these resource types (e.g. sandbox,host)")
	actor := fs.String("actor", "", "only these actors: user ids, API key ids or system")
	team := fs.String("team", "", "with --all: only these team ids")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("wrenn audit takes no arguments, only flags (%q)", fs.Args())
	}
	q := client.AuditLogQuery{Limit: *limit, Actions: list(*action), ResourceTypes: list(*resource), Actors: list(*actor), Teams: list(*team)}
	if (*before == "") != (*beforeID == 0) {
		return errors.New("--before and --before-id go together (the last entry seen)")
	}
	if *before != "" {
		t, err := time.Parse(time.RFC3339Nano, *before)
		if err != nil {
			return fmt.Errorf("--before %q is not an RFC 3339 time", *before)
		}
		q.Before, q.BeforeID = &t, beforeID
	}
	if len(q.Teams) > 0 && !*all {
		return errors.New("--team needs --all (the platform administrators' listing)")
	}
	c := loadConfig().client()
	get := c.AuditLogs
	if *all {
		get = c.AdminAuditLogs
	}
	page, err := get(ctx, q)
	if err != nil {
		return err
	}
	if err := output(*asJSON, page, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "ID\tTIME\tACTOR\tACTION\tRESOURCE")
		for _, e := range page.AuditLogs {
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s %s\n", e.ID, e.CreatedAt.Format(time.RFC3339), actorName(e.Actor), e.Action, e.ResourceType, e.ResourceID)
		}
	}); err != nil {
		return err
	}
	if page.NextBefore != nil && !*asJSON {
		fmt.Fprintf(os.Stderr, "more: --before %s --before-id %d\n", page.NextBefore.Format(time.RFC3339Nano), *page.NextBeforeID)
	}
	return nil
}

// actorName is an entry's actor in a table cell: a user's email, an API key's
// name and prefix, or system.
func actorName(a client.AuditActor) string {
	switch a.Type {
	case "user":
		if a.Email != "" {
			return a.Email
		}
	case "api_key":
		return fmt.Sprintf("key %s (%s)", a.Name, a.Prefix)
	}
	if a.ID != "" {
		return a.Type + " " + a.ID
	}
	return a.Type
}

// list splits a flag's comma-separated values; "" is none.
func list(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
