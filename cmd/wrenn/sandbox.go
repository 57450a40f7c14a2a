package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wrennhq/wrenn/internal/cliout"
	"github.com/wrennhq/wrenn/pkg/client"
)

func newSandboxCmd(a *app) *cobra.Command {
	cmd := group("sandbox", "Create, use and destroy sandboxes",
		`Sandboxes are microVMs with their own kernel, filesystem and network. They take a
user's login or a team API key. Durations (D) are seconds (300) or Go durations
(5m, 1h30m).`,
		newSandboxCreateCmd(a), newSandboxListCmd(a), newSandboxGetCmd(a), newSandboxExecCmd(a),
		newSandboxShellCmd(a), newSandboxCopyCmd(a), newSandboxFilesCmd(a), newSandboxLogsCmd(a), newSandboxMetricsCmd(a),
		newSandboxPingCmd(a), newSandboxPauseCmd(a), newSandboxResumeCmd(a), newSandboxRemoveCmd(a))
	cmd.Aliases = []string{"sandboxes", "sb"}
	return cmd
}

// sandboxColumns are a sandbox's table columns.
var sandboxColumns = []cliout.Column[client.Sandbox]{
	{Header: "ID", Value: func(s client.Sandbox) string { return s.ID }},
	{Header: "TEMPLATE", Value: func(s client.Sandbox) string { return s.Template }},
	{Header: "STATUS", State: true, Value: func(s client.Sandbox) string { return s.Status }},
	{Header: "VCPUS", Value: func(s client.Sandbox) string { return strconv.Itoa(s.VCPUs) }},
	{Header: "MEMORY", Value: func(s client.Sandbox) string { return fmt.Sprintf("%d MiB", s.MemoryMB) }},
	{Header: "AGE", Value: func(s client.Sandbox) string { return age(s.CreatedAt) }},
	{Header: "CREATED", Wide: true, Value: func(s client.Sandbox) string { return s.CreatedAt.Format(time.RFC3339) }},
	{Header: "IDLE TIMEOUT", Wide: true, Value: func(s client.Sandbox) string { return seconds(s.TimeoutSec) }},
	{Header: "INTERNET", Wide: true, Value: func(s client.Sandbox) string { return onOff(s.AllowInternetAccess) }},
	{Header: "LIMITS", Wide: true, Value: func(s client.Sandbox) string { return limits(s.Limits) }},
	{Header: "ERROR", Wide: true, Value: func(s client.Sandbox) string { return s.Error }},
}

// limits is what the host holds a sandbox's VMM to, briefly: "1 CPU, 768 MiB, 512
// tasks, uid 1000000007, disk 256 MiB/s, 8000 IOPS"; "-" when its host reported none.
func limits(l *client.SandboxLimits) string {
	if l == nil {
		return "-"
	}
	var parts []string
	if l.CPUs > 0 {
		parts = append(parts, strconv.FormatFloat(l.CPUs, 'g', 3, 64)+" CPU")
	}
	if l.MemoryBytes > 0 {
		parts = append(parts, fmt.Sprintf("%d MiB", l.MemoryBytes>>20))
	}
	if l.Pids > 0 {
		parts = append(parts, fmt.Sprintf("%d tasks", l.Pids))
	}
	if l.JailUID > 0 {
		parts = append(parts, fmt.Sprintf("uid %d", l.JailUID))
	}
	if l.DiskBytesPerSec > 0 {
		parts = append(parts, fmt.Sprintf("disk %d MiB/s", l.DiskBytesPerSec>>20))
	}
	if l.DiskOpsPerSec > 0 {
		parts = append(parts, fmt.Sprintf("%d IOPS", l.DiskOpsPerSec))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func sandboxID(s client.Sandbox) string { return s.ID }

// age is how long ago t was, in the largest whole unit: 42s, 5m, 3h, 2d.
func age(t time.Time) string {
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func seconds(s int) string {
	if s == 0 {
		return "none"
	}
	return (time.Duration(s) * time.Second).String()
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// durationValue is a duration flag given as whole seconds ("300") or a Go duration
// ("5m").
type durationValue time.Duration

func (d *durationValue) String() string {
	if *d == 0 {
		return "0"
	}
	return time.Duration(*d).String()
}
func (d *durationValue) Type() string { return "D" }

func (d *durationValue) Set(s string) error {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 {
			return errors.New("must not be negative")
		}
		*d = durationValue(time.Duration(n) * time.Second)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("%q is neither seconds nor a duration like 5m", s)
	}
	*d = durationValue(v)
	return nil
}

// wholeSeconds rounds up: the API's unit is the second, and a part second would be lost.
func (d durationValue) wholeSeconds() int {
	return int((time.Duration(d) + time.Second - 1) / time.Second)
}

// keyValues parses repeated K=V flags.
func keyValues(flag string, kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageErrorf("--%s %q: want KEY=VALUE", flag, kv)
		}
		m[k] = v
	}
	return m, nil
}

func newSandboxCreateCmd(a *app) *cobra.Command {
	var (
		o              outputFlags
		req            client.CreateSandboxRequest
		timeout        durationValue
		internet, wait bool
		env, metadata  []string
	)
	cmd := &cobra.Command{
		Use:   "create [--template T] [--vcpus N] [--memory MiB] [--timeout D] [flags]",
		Short: "Create a sandbox",
		Long: `Create a sandbox from a template or a team snapshot and wait until it answers
(--wait=false: return as soon as it is placed, status starting; 'wrenn sandbox logs -f
ID' follows its boot). --timeout is its idle timeout, after which it is paused.`,
		Example: `  wrenn sandbox create
  id=$(wrenn sandbox create -q --memory 1024 --timeout 10m)
  wrenn sandbox create --template my-snapshot --env DEBUG=1 --metadata owner=ci`,
		Args: argsRange(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := a.printer(&o)
			if err != nil {
				return err
			}
			if req.EnvVars, err = keyValues("env", env); err != nil {
				return err
			}
			if req.Metadata, err = keyValues("metadata", metadata); err != nil {
				return err
			}
			if cmd.Flags().Changed("internet") {
				req.AllowInternetAccess = &internet
			}
			req.TimeoutSec = timeout.wholeSeconds()
			req.NoWait = !wait
			c, _, err := a.client()
			if err != nil {
				return err
			}
			var sb *client.Sandbox
			msg := "creating a sandbox from " + req.Template
			err = a.progress(o.quiet).Step(msg, func() error {
				sb, err = c.CreateSandbox(cmd.Context(), req)
				return err
			})
			if err != nil {
				return err
			}
			return cliout.One(p, *sb, sandboxID, sandboxColumns)
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Template, "template", "base", "template or team snapshot to start from")
	f.IntVar(&req.VCPUs, "vcpus", 0, "vCPUs (default: the server's, 1)")
	f.IntVar(&req.MemoryMB, "memory", 0, "memory in MiB (default: the server's, 512)")
	f.Var(&timeout, "timeout", "idle timeout, after which the sandbox is paused (default: none)")
	f.BoolVar(&internet, "internet", false, "let the sandbox reach the internet, or not with --internet=false (default: the server's setting)")
	f.StringArrayVar(&env, "env", nil, "environment variable KEY=VALUE for its commands (repeatable)")
	f.StringArrayVar(&metadata, "metadata", nil, "metadata KEY=VALUE (repeatable)")
	f.BoolVar(&wait, "wait", true, "wait until the sandbox answers; --wait=false returns while it boots")
	addOutputFlags(cmd, &o)
	return cmd
}

func newSandboxListCmd(a *app) *cobra.Command {
	var (
		o   outputFlags
		all bool
	)
	cmd := &cobra.Command{
		Use:     "ls [--all]",
		Aliases: []string{"list"},
		Short:   "List the team's sandboxes",
		Long:    "List the team's running, paused and starting sandboxes, newest first (--all: stopped and failed ones too).",
		Example: "  wrenn sandbox ls\n  wrenn sandbox ls --all -o wide\n  wrenn sandbox ls -q | xargs -n1 wrenn sandbox pause",
		Args:    argsRange(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, c, err := a.printerAndClient(&o)
			if err != nil {
				return err
			}
			var states []string
			if all {
				states = []string{"all"}
			}
			list, err := c.ListSandboxes(cmd.Context(), states...)
			if err != nil {
				return err
			}
			return cliout.List(p, list, sandboxID, sandboxColumns)
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "include stopped and failed sandboxes")
	addOutputFlags(cmd, &o)
	return cmd
}

// sandboxAction is a command on one sandbox that answers with the sandbox (get,
// pause, resume), shown as a step on stderr while it runs when verb is set.
func sandboxAction(a *app, use, short, long, example, verb string, setup func(*cobra.Command),
	act func(ctx context.Context, c *client.Client, id string) (*client.Sandbox, error)) *cobra.Command {
	var o outputFlags
	cmd := &cobra.Command{
		Use: use, Short: short, Long: long, Example: example,
		Args:              argsRange(1, 1),
		ValidArgsFunction: a.completion(false, sandboxChoices),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, c, err := a.printerAndClient(&o)
			if err != nil {
				return err
			}
			var sb *client.Sandbox
			do := func() error {
				sb, err = act(cmd.Context(), c, args[0])
				return err
			}
			if verb == "" {
				err = do()
			} else {
				err = a.progress(o.quiet).Step(verb+" "+args[0], do)
			}
			if err != nil {
				return err
			}
			return cliout.One(p, *sb, sandboxID, sandboxColumns)
		},
	}
	if setup != nil {
		setup(cmd)
	}
	addOutputFlags(cmd, &o)
	return cmd
}

func newSandboxGetCmd(a *app) *cobra.Command {
	return sandboxAction(a, "get ID", "Show a sandbox", "", "  wrenn sandbox get sb-1a2b3c4d -o yaml", "", nil,
		func(ctx context.Context, c *client.Client, id string) (*client.Sandbox, error) {
			return c.GetSandbox(ctx, id)
		})
}

func newSandboxPauseCmd(a *app) *cobra.Command {
	return sandboxAction(a, "pause ID", "Freeze a running sandbox into a snapshot on its host",
		"Pause a running sandbox: its memory and disk are saved on its host, its files and\nprocesses stay, its CPU and memory are freed until 'wrenn sandbox resume'.",
		"  wrenn sandbox pause sb-1a2b3c4d", "pausing", nil,
		func(ctx context.Context, c *client.Client, id string) (*client.Sandbox, error) {
			return c.Pause(ctx, id)
		})
}

func newSandboxResumeCmd(a *app) *cobra.Command {
	var timeout durationValue
	return sandboxAction(a, "resume ID [--timeout D]", "Restore a paused sandbox",
		"Resume a paused sandbox where it was. --timeout replaces its idle timeout.",
		"  wrenn sandbox resume sb-1a2b3c4d --timeout 10m", "resuming",
		func(cmd *cobra.Command) {
			cmd.Flags().Var(&timeout, "timeout", "new idle timeout (default: keep the old one)")
		},
		func(ctx context.Context, c *client.Client, id string) (*client.Sandbox, error) {
			return c.Resume(ctx, id, timeout.wholeSeconds())
		})
}

func newSandboxPingCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use: "ping ID", Short: "Postpone a sandbox's idle timeout",
		Example:           "  wrenn sandbox ping sb-1a2b3c4d",
		Args:              argsRange(1, 1),
		ValidArgsFunction: a.completion(false, sandboxChoices),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := a.client()
			if err != nil {
				return err
			}
			return c.Ping(cmd.Context(), args[0])
		},
	}
}

func newSandboxRemoveCmd(a *app) *cobra.Command {
	var all, yes bool
	cmd := &cobra.Command{
		Use:     "rm ID... | --all",
		Aliases: []string{"destroy", "kill"},
		Short:   "Destroy sandboxes (in any state, paused ones too)",
		Long: `Destroy one or more sandboxes, or --all of the team's running, paused and starting
ones. More than one is confirmed on the terminal first; --yes skips that (and is
needed without a terminal).`,
		Example:           "  wrenn sandbox rm sb-1a2b3c4d\n  wrenn sandbox rm --all --yes",
		ValidArgsFunction: a.completion(true, sandboxChoices),
		RunE: func(cmd *cobra.Command, ids []string) error {
			switch {
			case all && len(ids) > 0:
				return usageErrorf("give sandbox ids or --all, not both")
			case !all && len(ids) == 0:
				return usageErrorf("which sandboxes? give their ids, or --all; usage: %s", cmd.UseLine())
			}
			c, _, err := a.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if all {
				list, err := c.ListSandboxes(ctx)
				if err != nil {
					return err
				}
				for _, s := range list {
					ids = append(ids, s.ID)
				}
				if len(ids) == 0 {
					fmt.Fprintln(a.errOut, "no sandboxes to destroy")
					return nil
				}
			}
			if len(ids) > 1 && !yes {
				sort.Strings(ids)
				q := fmt.Sprintf("Destroy %d sandboxes (%s)? Their files and processes are lost.", len(ids), strings.Join(ids, ", "))
				if err := a.confirm(q, fmt.Sprintf("not destroying %d sandboxes: no terminal to confirm on, so pass --yes", len(ids))); err != nil {
					return err
				}
			}
			var failed []string
			for _, id := range ids {
				if err := c.DestroySandbox(ctx, id); err != nil {
					fmt.Fprintf(a.errOut, "wrenn: destroy %s: %v\n", id, err)
					failed = append(failed, id)
					continue
				}
				fmt.Fprintln(a.out, id)
			}
			if len(failed) > 0 {
				return fmt.Errorf("%d of %d sandboxes not destroyed: %s", len(failed), len(ids), strings.Join(failed, ", "))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "destroy all of the team's running, paused and starting sandboxes")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

// sandboxChoices are the team's sandbox ids, each with its status and template.
func sandboxChoices(ctx context.Context, c *client.Client) ([]string, error) {
	list, err := c.ListSandboxes(ctx)
	var out []string
	for _, s := range list {
		out = append(out, s.ID+"\t"+s.Status+" "+s.Template)
	}
	return out, err
}
