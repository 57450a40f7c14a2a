package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wrennhq/wrenn/internal/cliout"
	"github.com/wrennhq/wrenn/pkg/client"
)

func newAuditCmd(a *app) *cobra.Command {
	var (
		o                                     outputFlags
		all                                   bool
		limit                                 int
		before, action, resource, actor, team string
		beforeID                              int64
	)
	cmd := &cobra.Command{
		Use:   "audit [--action A,…] [--actor ID,…] [--resource-type T,…] [--all [--team ID,…]] [--limit N]",
		Short: "A page of the team's audit log, newest first",
		Long: `Print a page of the team's audit log, newest first (a user's login, not an API key):
owners and admins see the team's entries, members their own; --all: every team's
(platform administrators). Filters take comma-separated lists. A page with more after
it ends with the flags that show the next one (on stderr): pass them as they are.`,
		Example: `  wrenn audit
  wrenn audit --action sandbox.create,sandbox.destroy --limit 100
  wrenn audit --actor system -o wide
  wrenn audit --all --team 6f1c2d3e-… -o json`,
		Args: argsRange(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := a.printer(&o)
			if err != nil {
				return err
			}
			q := client.AuditLogQuery{Limit: limit, Actions: commaList(action), ResourceTypes: commaList(resource),
				Actors: commaList(actor), Teams: commaList(team)}
			if (before == "") != (beforeID == 0) {
				return usageErrorf("--before and --before-id go together (the last entry seen)")
			}
			if before != "" {
				t, err := time.Parse(time.RFC3339Nano, before)
				if err != nil {
					return usageErrorf("--before %q is not an RFC 3339 time", before)
				}
				q.Before, q.BeforeID = &t, &beforeID
			}
			if len(q.Teams) > 0 && !all {
				return usageErrorf("--team needs --all (the platform administrators' listing)")
			}
			c, _, err := a.client()
			if err != nil {
				return err
			}
			get := c.AuditLogs
			if all {
				get = c.AdminAuditLogs
			}
			page, err := get(cmd.Context(), q)
			if err != nil {
				return err
			}
			next := ""
			if page.NextBefore != nil && page.NextBeforeID != nil {
				next = fmt.Sprintf("--before %s --before-id %d", page.NextBefore.Format(time.RFC3339Nano), *page.NextBeforeID)
			}
			return printPage(a, p, page, page.AuditLogs, func(e client.AuditLog) string { return strconv.FormatInt(e.ID, 10) }, auditColumns, next)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&all, "all", false, "every team's log (platform administrators)")
	f.IntVar(&limit, "limit", 0, "at most this many entries (server default 50, at most 200)")
	f.StringVar(&before, "before", "", "entries older than this one: its time (RFC 3339), with --before-id")
	f.Int64Var(&beforeID, "before-id", 0, "entries older than this one: its id, with --before")
	f.StringVar(&action, "action", "", "only these actions (e.g. sandbox.create,api_key.revoke)")
	f.StringVar(&resource, "resource-type", "", "only these resource types (e.g. sandbox,host)")
	f.StringVar(&actor, "actor", "", "only these actors: user ids, API key ids or system")
	f.StringVar(&team, "team", "", "with --all: only these team ids")
	addOutputFlags(cmd, &o)
	return cmd
}

var auditColumns = []cliout.Column[client.AuditLog]{
	{Header: "ID", Value: func(e client.AuditLog) string { return strconv.FormatInt(e.ID, 10) }},
	{Header: "TIME", Value: func(e client.AuditLog) string { return e.CreatedAt.Format(time.RFC3339) }},
	{Header: "ACTOR", Value: func(e client.AuditLog) string { return actorName(e.Actor) }},
	{Header: "ACTION", Value: func(e client.AuditLog) string { return e.Action }},
	{Header: "RESOURCE", Value: func(e client.AuditLog) string { return e.ResourceType + " " + e.ResourceID }},
	{Header: "TEAM", Wide: true, Value: func(e client.AuditLog) string {
		if e.TeamID == nil {
			return "-" // deleted since
		}
		return *e.TeamID
	}},
	{Header: "METADATA", Wide: true, Value: func(e client.AuditLog) string {
		if s := string(e.Metadata); s != "" && s != "{}" && s != "null" {
			return s
		}
		return "-"
	}},
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

// commaList splits a flag's comma-separated values; "" is none.
func commaList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// printPage prints a page of a paged listing: its items as cliout.List does, except
// that JSON and YAML are the whole page as the API answered it (with what asks for
// the next page). next is the flags that show the next page, "" on the last: they
// go to stderr, so that stdout stays the table or the ids.
func printPage[T any](a *app, p cliout.Printer, page any, items []T, id func(T) string, cols []cliout.Column[T], next string) error {
	if !p.Quiet && (p.Format == "json" || p.Format == "yaml") {
		return p.Value(page)
	}
	if err := cliout.List(p, items, id, cols); err != nil {
		return err
	}
	if next != "" {
		fmt.Fprintf(a.errOut, "more: %s\n", next)
	}
	return nil
}
