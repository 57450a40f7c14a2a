package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/wrennhq/wrenn/pkg/client"
)

// snapshotCommands is `wrenn snapshot`.
var snapshotCommands = commandGroup{name: "snapshot", subs: []subcommand{
	{"create", "[--overwrite] ID NAME", "freeze a running or paused sandbox into the team's snapshot NAME (a running one runs on); --overwrite replaces a snapshot of that name"},
	{"ls", "", "list the team's snapshots"},
	{"get", "NAME", "show a snapshot"},
	{"rm", "NAME", "delete a snapshot (sandboxes created from it run on)"},
}, notes: func(shown []subcommand) string {
	notes := ""
	if len(shown) > 1 || shown[0].name == "create" {
		notes = "A new sandbox starts from a snapshot with 'wrenn sandbox create --template NAME' (its vCPUs and memory are the snapshot's).\n"
	}
	return notes + "--json prints JSON.\n"
}}

func snapshotCmd(ctx context.Context, args []string) error {
	sub, fs, err := snapshotCommands.start(args)
	if err != nil {
		return err
	}
	asJSON := fs.Bool("json", false, "print JSON")
	overwrite := fs.Bool("overwrite", false, "create: replace a snapshot of that name")
	if err := parseInterspersed(fs, args[1:]); err != nil {
		return err
	}
	c := loadConfig().client()
	// Wrong positional arguments are checked before any request: a mistake reaches
	// no server.
	usageErr := func() error { return snapshotCommands.usageError(sub) }
	switch sub {
	case "create":
		if fs.NArg() != 2 {
			return usageErr()
		}
		s, err := c.CreateSnapshot(ctx, fs.Arg(0), fs.Arg(1), *overwrite)
		if err != nil {
			return err
		}
		return showSnapshot(*asJSON, s)
	case "ls":
		if fs.NArg() != 0 {
			return usageErr()
		}
		list, err := c.ListSnapshots(ctx)
		if err != nil {
			return err
		}
		return output(*asJSON, list, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "NAME\tSANDBOX\tTEMPLATE\tVCPUS\tMEMORY\tSIZE\tUPDATED")
			for _, s := range list {
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d MiB\t%s\t%s\n",
					s.Name, s.SandboxID, s.Template, s.VCPUs, s.MemoryMB, mib(s.SizeBytes), s.UpdatedAt.Format(time.RFC3339))
			}
		})
	case "get":
		if fs.NArg() != 1 {
			return usageErr()
		}
		s, err := c.GetSnapshot(ctx, fs.Arg(0))
		if err != nil {
			return err
		}
		return showSnapshot(*asJSON, s)
	case "rm":
		if fs.NArg() != 1 {
			return usageErr()
		}
		return c.DeleteSnapshot(ctx, fs.Arg(0))
	}
	return snapshotCommands.unknown(sub)
}

// showSnapshot prints one snapshot: every field, as create and get answer it.
func showSnapshot(asJSON bool, s *client.Snapshot) error {
	return output(asJSON, s, func(w *tabwriter.Writer) {
		fmt.Fprintf(w, "NAME\tSANDBOX\tTEMPLATE\tVCPUS\tMEMORY\tDISK\tSIZE\tCREATED\tUPDATED\n%s\t%s\t%s\t%d\t%d MiB\t%d MiB\t%s\t%s\t%s\n",
			s.Name, s.SandboxID, s.Template, s.VCPUs, s.MemoryMB, s.DiskMB, mib(s.SizeBytes),
			s.CreatedAt.Format(time.RFC3339), s.UpdatedAt.Format(time.RFC3339))
	})
}

// mib is a byte count in whole MiB, rounded up so that a snapshot that takes any space
// never reads as 0 MiB; the table's other sizes (memory, disk) are MiB too.
func mib(n int64) string { return fmt.Sprintf("%d MiB", (n+1<<20-1)>>20) }
