package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
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
