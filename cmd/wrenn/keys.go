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

func newKeysCmd(a *app) *cobra.Command {
	var co outputFlags
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Make a team API key; its secret is shown this once",
		Long: `Make an API key for the team the login acts for (owners and admins). The key is
printed once, also in the form the e2b SDKs take (E2B_API_KEY); the server keeps only
its hash. NAME may be several words. With -q only the key itself is printed, so that a
script can keep it.`,
		Example: `  wrenn keys create ci
  export WRENN_API_KEY=$(wrenn keys create -q "laptop of Ann")`,
		Args: argsRange(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, c, err := a.printerAndClient(&co)
			if err != nil {
				return err
			}
			k, err := c.CreateAPIKey(cmd.Context(), strings.Join(args, " "))
			if err != nil {
				return err
			}
			// The secret is the only thing of a new key that cannot be read again: -q
			// prints it, not the id ('wrenn keys ls -q' lists those).
			return cliout.One(p, *k, func(k client.APIKey) string { return k.Key }, newKeyColumns)
		},
	}
	addOutputFlags(create, &co)

	var lo outputFlags
	ls := &cobra.Command{
		Use: "ls", Aliases: []string{"list"},
		Short:   "List the team's API keys (without their secrets)",
		Example: "  wrenn keys ls\n  wrenn keys ls -o wide\n  wrenn keys ls -q",
		Args:    argsRange(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, c, err := a.printerAndClient(&lo)
			if err != nil {
				return err
			}
			keys, err := c.ListAPIKeys(cmd.Context())
			if err != nil {
				return err
			}
			return cliout.List(p, keys, func(k client.APIKey) string { return k.ID }, keyColumns)
		},
	}
	addOutputFlags(ls, &lo)

	rm := &cobra.Command{
		Use: "rm ID", Aliases: []string{"revoke"},
		Short:             "Revoke an API key: it stops working at once",
		Example:           "  wrenn keys rm 6f1c2d3e-…",
		Args:              argsRange(1, 1),
		ValidArgsFunction: a.completion(false, keyChoices),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := a.client()
			if err != nil {
				return err
			}
			return c.RevokeAPIKey(cmd.Context(), args[0])
		},
	}
	cmd := group("keys", "The team's API keys",
		`API keys act for one team (the one your login acts for when it makes them), for
scripts, CI and the SDKs (WRENN_API_KEY, or E2B_API_KEY in its e2b_ form).`, create, ls, rm)
	cmd.Aliases = []string{"key"}
	cmd.Example = "  wrenn keys create ci\n  wrenn keys ls\n  wrenn keys rm 6f1c2d3e-…"
	return cmd
}

var newKeyColumns = []cliout.Column[client.APIKey]{
	{Header: "ID", Value: func(k client.APIKey) string { return k.ID }},
	{Header: "NAME", Value: func(k client.APIKey) string { return k.Name }},
	{Header: "KEY (shown once)", Value: func(k client.APIKey) string { return k.Key }},
	{Header: "E2B_API_KEY (the same key)", Value: func(k client.APIKey) string { return k.E2BKey }},
}

var keyColumns = []cliout.Column[client.APIKey]{
	{Header: "ID", Value: func(k client.APIKey) string { return k.ID }},
	{Header: "NAME", Value: func(k client.APIKey) string { return k.Name }},
	{Header: "PREFIX", Value: func(k client.APIKey) string { return k.Prefix + "…" }},
	{Header: "CREATED", Value: func(k client.APIKey) string { return k.CreatedAt.Format(time.RFC3339) }},
	{Header: "LAST USED", Value: func(k client.APIKey) string {
		if k.LastUsedAt == nil {
			return "never"
		}
		return k.LastUsedAt.Format(time.RFC3339)
	}},
	{Header: "CREATED BY", Wide: true, Value: func(k client.APIKey) string { return k.CreatedBy }},
}

// keyChoices are the team's API key ids, each with its name and prefix.
func keyChoices(ctx context.Context, c *client.Client) ([]string, error) {
	keys, err := c.ListAPIKeys(ctx)
	var out []string
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%s\t%s (%s…)", k.ID, k.Name, k.Prefix))
	}
	return out, err
}
