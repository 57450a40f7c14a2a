package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/wrennhq/wrenn/internal/cliout"
	"github.com/wrennhq/wrenn/pkg/client"
)

func newSnapshotCmd(a *app) *cobra.Command {
	var (
		o         outputFlags
		overwrite bool
	)
	create := &cobra.Command{
		Use:   "create [--overwrite] ID NAME",
		Short: "Freeze a sandbox into the team's snapshot NAME",
		Long: `Save a running or paused sandbox (memory, disk, processes) as the team's snapshot
NAME; a running one runs on. New sandboxes start from it with 'wrenn sandbox create
--template NAME' (with its vCPUs and memory). --overwrite replaces a snapshot of that name.`,
		Example:           "  wrenn snapshot create sb-1a2b3c4d py-ready\n  wrenn sandbox create --template py-ready",
		Args:              argsRange(2, 2),
		ValidArgsFunction: a.completion(false, sandboxChoices),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, c, err := a.printerAndClient(&o)
			if err != nil {
				return err
			}
			var s *client.Snapshot
			err = a.progress(o.quiet).Step("snapshotting "+args[0]+" as "+args[1], func() error {
				s, err = c.CreateSnapshot(cmd.Context(), args[0], args[1], overwrite)
				return err
			})
			if err != nil {
				return err
			}
			return cliout.One(p, *s, snapshotName, snapshotColumns)
		},
	}
	create.Flags().BoolVar(&overwrite, "overwrite", false, "replace a snapshot of that name")
	addOutputFlags(create, &o)

	var lo outputFlags
	ls := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "List the team's snapshots",
		Example: "  wrenn snapshot ls\n  wrenn snapshot ls -o wide",
		Args:    argsRange(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, c, err := a.printerAndClient(&lo)
			if err != nil {
				return err
			}
			list, err := c.ListSnapshots(cmd.Context())
			if err != nil {
				return err
			}
			return cliout.List(p, list, snapshotName, snapshotColumns)
		},
	}
	addOutputFlags(ls, &lo)

	var gotO outputFlags
	get := &cobra.Command{
		Use: "get NAME", Short: "Show a snapshot",
		Example:           "  wrenn snapshot get py-ready -o yaml",
		Args:              argsRange(1, 1),
		ValidArgsFunction: a.completion(false, snapshotChoices),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, c, err := a.printerAndClient(&gotO)
			if err != nil {
				return err
			}
			s, err := c.GetSnapshot(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return cliout.One(p, *s, snapshotName, snapshotColumns)
		},
	}
	addOutputFlags(get, &gotO)

	rm := &cobra.Command{
		Use: "rm NAME", Short: "Delete a snapshot (sandboxes created from it run on)",
		Example:           "  wrenn snapshot rm py-ready",
		Args:              argsRange(1, 1),
		ValidArgsFunction: a.completion(false, snapshotChoices),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := a.client()
			if err != nil {
				return err
			}
			return c.DeleteSnapshot(cmd.Context(), args[0])
		},
	}
	return group("snapshot", "Named snapshots of sandboxes, to create new ones from",
		"A snapshot is a sandbox's memory and disk saved under a name in the team; every\nsandbox created from it starts where it was.", create, ls, get, rm)
}

func snapshotName(s client.Snapshot) string { return s.Name }

var snapshotColumns = []cliout.Column[client.Snapshot]{
	{Header: "NAME", Value: func(s client.Snapshot) string { return s.Name }},
	{Header: "SANDBOX", Value: func(s client.Snapshot) string { return s.SandboxID }},
	{Header: "TEMPLATE", Value: func(s client.Snapshot) string { return s.Template }},
	{Header: "VCPUS", Value: func(s client.Snapshot) string { return strconv.Itoa(s.VCPUs) }},
	{Header: "MEMORY", Value: func(s client.Snapshot) string { return fmt.Sprintf("%d MiB", s.MemoryMB) }},
	{Header: "DISK", Wide: true, Value: func(s client.Snapshot) string { return fmt.Sprintf("%d MiB", s.DiskMB) }},
	{Header: "SIZE", Value: func(s client.Snapshot) string { return mib(s.SizeBytes) }},
	{Header: "CREATED", Wide: true, Value: func(s client.Snapshot) string { return s.CreatedAt.Format(time.RFC3339) }},
	{Header: "UPDATED", Value: func(s client.Snapshot) string { return s.UpdatedAt.Format(time.RFC3339) }},
}

// mib is a byte count in whole MiB, rounded up so that a snapshot that takes any space
// never reads as 0 MiB; the table's other sizes (memory, disk) are MiB too.
func mib(n int64) string { return fmt.Sprintf("%d MiB", (n+1<<20-1)>>20) }

// snapshotChoices are the team's snapshot names, each with its template.
func snapshotChoices(ctx context.Context, c *client.Client) ([]string, error) {
	list, err := c.ListSnapshots(ctx)
	var out []string
	for _, s := range list {
		out = append(out, s.Name+"\t"+s.Template)
	}
	return out, err
}
