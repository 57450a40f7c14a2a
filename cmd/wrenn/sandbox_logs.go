package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

func newSandboxLogsCmd(a *app) *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs [-f] ID",
		Short: "Print a sandbox's console log (its kernel and init output)",
		Long: `Print the serial console of a sandbox's VM: the kernel's boot messages and what the
guest's init printed — where to look first when a sandbox fails to boot. -f follows
it until the sandbox stops (or Ctrl-C), also while it is still starting.`,
		Example:           "  wrenn sandbox logs sb-1a2b3c4d\n  id=$(wrenn sandbox create -q --wait=false) && wrenn sandbox logs -f $id",
		Args:              argsRange(1, 1),
		ValidArgsFunction: a.completion(false, sandboxChoices),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := a.client()
			if err != nil {
				return err
			}
			if follow {
				err := c.FollowLogs(cmd.Context(), args[0], 0, a.out)
				if errors.Is(err, context.Canceled) {
					return nil // Ctrl-C is how a follow ends
				}
				return err
			}
			// A read answers at most 1 MiB: read on to the end as it was when asked.
			for offset := int64(0); ; {
				l, err := c.SandboxLogs(cmd.Context(), args[0], offset)
				if err != nil {
					return fmt.Errorf("console log of %s: %w", args[0], err)
				}
				if _, err := fmt.Fprint(a.out, l.Log); err != nil {
					return err
				}
				if l.NextOffset >= l.Size || l.NextOffset <= offset {
					return nil
				}
				offset = l.NextOffset
			}
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing what the console prints until the sandbox stops")
	return cmd
}

func newSandboxMetricsCmd(a *app) *cobra.Command {
	var (
		o   outputFlags
		rng string
	)
	cmd := &cobra.Command{
		Use:   "metrics [--range R] ID",
		Short: "Show a sandbox's CPU, memory and disk over time",
		Long: `Show a sandbox's CPU, memory and disk use over the last R (5m, 10m, 1h, 2h, 6h,
12h, 24h): live from its host while it runs, as kept at its last pause or destroy
otherwise.`,
		Example:           "  wrenn sandbox metrics sb-1a2b3c4d\n  wrenn sandbox metrics --range 1h -o json sb-1a2b3c4d",
		Args:              argsRange(1, 1),
		ValidArgsFunction: a.completion(false, sandboxChoices),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, c, err := a.printerAndClient(&o)
			if err != nil {
				return err
			}
			m, err := c.SandboxMetrics(cmd.Context(), args[0], rng)
			if err != nil {
				return fmt.Errorf("metrics of sandbox %s: %w", args[0], err)
			}
			return p.Show(m, m.SandboxID, func(w io.Writer) error { printMetrics(w, m); return nil })
		},
	}
	cmd.Flags().StringVar(&rng, "range", "10m", "how far back: 5m, 10m, 1h, 2h, 6h, 12h or 24h")
	addOutputFlags(cmd, &o)
	return cmd
}
