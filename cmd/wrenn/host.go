package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wrennhq/wrenn/internal/cliout"
	"github.com/wrennhq/wrenn/pkg/client"
)

func newHostCmd(a *app) *cobra.Command {
	cmd := group("host", "The machines sandboxes run on: add, list, tag, remove",
		`Hosts run the agent ('wrenn agent') and the sandboxes. Platform hosts (added by
platform administrators) serve every team; a BYOC team's owners and admins add hosts of
its own, which only it uses.`,
		newHostCreateCmd(a), newHostListCmd(a), newHostGetCmd(a), newHostRemoveCmd(a),
		newHostTagCmd(a, "tag", "Label a host (placement may ask for hosts with a tag)"),
		newHostTagCmd(a, "untag", "Remove a label from a host"))
	cmd.Aliases = []string{"hosts"}
	cmd.Example = "  wrenn host create --platform worker-2\n  wrenn host ls\n  wrenn host tag 6f1c2d3e-… gpu"
	return cmd
}

var hostColumns = []cliout.Column[client.Host]{
	{Header: "ID", Value: func(h client.Host) string { return h.ID }},
	{Header: "NAME", Value: func(h client.Host) string { return h.Name }},
	{Header: "STATUS", State: true, Value: func(h client.Host) string { return h.Status }},
	{Header: "ADDRESS", Value: func(h client.Host) string { return h.Address }},
	{Header: "VCPUS", Value: func(h client.Host) string { return strconv.Itoa(h.VCPUs) }},
	{Header: "MEMORY", Value: func(h client.Host) string { return fmt.Sprintf("%d MiB", h.MemoryMB) }},
	{Header: "SANDBOXES", Value: func(h client.Host) string { return strconv.Itoa(h.Sandboxes) }},
	{Header: "TAGS", Value: func(h client.Host) string { return strings.Join(h.Tags, ",") }},
	{Header: "TEAM", Wide: true, Value: func(h client.Host) string {
		if h.TeamID == "" {
			return "platform"
		}
		return h.TeamID
	}},
	{Header: "AGENT", Wide: true, Value: func(h client.Host) string { return h.AgentVersion }},
	{Header: "CREATED", Wide: true, Value: func(h client.Host) string { return h.CreatedAt.Format(time.RFC3339) }},
	{Header: "LAST HEARTBEAT", Wide: true, Value: func(h client.Host) string { return timeOrDash(h.LastHeartbeatAt) }},
}

func hostID(h client.Host) string { return h.ID }

func newHostCreateCmd(a *app) *cobra.Command {
	var (
		o        outputFlags
		platform bool
	)
	cmd := &cobra.Command{
		Use:   "create [--platform] NAME",
		Short: "Add a host; prints the command that registers its agent",
		Long: `Add a host and print the one-time registration token, in the command to run (as
root) on the new machine, before the token expires. --platform adds a platform host
(platform administrators); without it the host is the team's own (a BYOC team's owners
and admins). -q prints only the host's id; -o json the token with the host.`,
		Example: "  wrenn host create --platform worker-2\n  wrenn host create gpu-box -o json",
		Args:    argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := a.printer(&o)
			if err != nil {
				return err
			}
			c, r, err := a.client()
			if err != nil {
				return err
			}
			h, err := c.CreateHost(cmd.Context(), args[0], platform)
			if err != nil {
				return err
			}
			return p.Show(h, h.ID, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "host %s created; on the new machine, within %s, run (as root):\n\n  wrenn agent --server %s --token %s --advertise ADDRESS:50051\n\n",
					h.ID, time.Until(h.TokenExpiresAt).Round(time.Minute), r.Profile.URL, h.RegistrationToken)
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&platform, "platform", false, "a platform host (platform administrators), not one of the team's own")
	addOutputFlags(cmd, &o)
	return cmd
}

func newHostListCmd(a *app) *cobra.Command {
	var o outputFlags
	cmd := &cobra.Command{
		Use: "ls", Aliases: []string{"list"},
		Short:   "List the hosts you may see",
		Example: "  wrenn host ls\n  wrenn host ls -o wide",
		Args:    argsRange(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, c, err := a.printerAndClient(&o)
			if err != nil {
				return err
			}
			list, err := c.ListHosts(cmd.Context())
			if err != nil {
				return err
			}
			return cliout.List(p, list, hostID, hostColumns)
		},
	}
	addOutputFlags(cmd, &o)
	return cmd
}

func newHostGetCmd(a *app) *cobra.Command {
	var o outputFlags
	cmd := &cobra.Command{
		Use: "get ID", Aliases: []string{"show"},
		Short:             "Show a host",
		Example:           "  wrenn host get 6f1c2d3e-… -o yaml",
		Args:              argsRange(1, 1),
		ValidArgsFunction: a.completion(false, hostChoices),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, c, err := a.printerAndClient(&o)
			if err != nil {
				return err
			}
			h, err := c.GetHost(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return cliout.One(p, *h, hostID, hostColumns)
		},
	}
	addOutputFlags(cmd, &o)
	return cmd
}

func newHostRemoveCmd(a *app) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rm [--force] ID",
		Short: "Remove a host",
		Long: `Remove a host: its credentials stop working. While sandboxes run there it is
refused (the answer lists them); --force destroys them too.`,
		Example:           "  wrenn host rm 6f1c2d3e-…\n  wrenn host rm --force 6f1c2d3e-…",
		Args:              argsRange(1, 1),
		ValidArgsFunction: a.completion(false, hostChoices),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := a.client()
			if err != nil {
				return err
			}
			return c.DeleteHost(cmd.Context(), args[0], force)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "destroy the host's sandboxes too")
	return cmd
}

// newHostTagCmd is `host tag` or `host untag`.
func newHostTagCmd(a *app, name, short string) *cobra.Command {
	return &cobra.Command{
		Use:               name + " ID TAG",
		Short:             short,
		Example:           "  wrenn host " + name + " 6f1c2d3e-… gpu",
		Args:              argsRange(2, 2),
		ValidArgsFunction: a.completion(false, hostChoices),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := a.client()
			if err != nil {
				return err
			}
			if name == "tag" {
				return c.TagHost(cmd.Context(), args[0], args[1])
			}
			return c.UntagHost(cmd.Context(), args[0], args[1])
		},
	}
}

// hostChoices are the hosts' ids, each with its name and status.
func hostChoices(ctx context.Context, c *client.Client) ([]string, error) {
	list, err := c.ListHosts(ctx)
	var out []string
	for _, h := range list {
		out = append(out, h.ID+"\t"+h.Name+" "+h.Status)
	}
	return out, err
}
