package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wrennhq/wrenn/pkg/client"
)

// sandboxCommands is `wrenn sandbox`.
var sandboxCommands = commandGroup{name: "sandbox", subs: []subcommand{
	{"create", "[--template T] [--vcpus N] [--memory MiB] [--timeout D]", "create a sandbox; --timeout is its idle timeout, after which it is paused"},
	{"ls", "[--all]", "list the team's sandboxes (--all: stopped and failed ones too)"},
	{"get", "ID", "show a sandbox"},
	{"exec", "[-i] [-t] [--timeout D] [--max-output BYTES] ID [--] CMD [ARGS…]", "run a command in a sandbox"},
	{"cp", "SRC DST", "copy a file in or out: one side is ID:PATH, the other a local path or - (stdin/stdout)"},
	{"ping", "ID", "postpone a sandbox's idle timeout"},
	{"pause", "ID", "freeze a running sandbox into a snapshot on its host: its files and processes stay, its CPU and memory are freed"},
	{"resume", "ID [--timeout D]", "restore a paused sandbox; --timeout replaces its idle timeout"},
	{"rm", "ID", "destroy a sandbox (in any state, paused ones too)"},
	{"metrics", "[--range R] ID", "a sandbox's CPU, memory and disk over the last R (5m, 10m, 1h, 2h, 6h, 12h, 24h; default 10m)"},
}, notes: func(shown []subcommand) string {
	notes := ""
	for _, c := range shown {
		if strings.Contains(c.synopsis, " D]") {
			notes = "Durations (D) are seconds (300) or Go durations (5m, 1h30m).\n"
			break
		}
	}
	return notes + "--json prints JSON.\n"
}}

// secondsFlag is a duration given as whole seconds ("300") or a Go duration ("5m").
type secondsFlag time.Duration

func (d *secondsFlag) String() string { return time.Duration(*d).String() }

func (d *secondsFlag) Set(s string) error {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 {
			return errors.New("must not be negative")
		}
		*d = secondsFlag(time.Duration(n) * time.Second)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("%q is neither seconds nor a duration like 5m", s)
	}
	*d = secondsFlag(v)
	return nil
}

func sandboxCmd(ctx context.Context, args []string) error {
	sub, fs, err := sandboxCommands.start(args)
	if err != nil {
		return err
	}
	asJSON := fs.Bool("json", false, "print JSON")
	template := fs.String("template", "base", "template (create)")
	vcpus := fs.Int("vcpus", 0, "vCPUs (create)")
	mem := fs.Int("memory", 0, "memory in MiB (create)")
	var timeoutFlag secondsFlag
	fs.Var(&timeoutFlag, "timeout", "idle timeout (create, resume) or command timeout (exec): seconds or a duration like 5m")
	interactive := fs.Bool("i", false, "exec: keep stdin open and forward it")
	tty := fs.Bool("t", false, "exec: run in a terminal (with -i: an interactive shell)")
	maxOutput := fs.Int64("max-output", 0, "exec: bytes of stdout and of stderr to keep (0 = the server's 1 MiB, at most 16 MiB; -i streams all)")
	all := fs.Bool("all", false, "ls: include stopped and failed sandboxes")
	rng := fs.String("range", "10m", "metrics: how far back (5m, 10m, 1h, 2h, 6h, 12h, 24h)")
	switch sub {
	case "exec", "cp":
		// Everything after exec's ID is the command's, flags included; cp's paths may
		// be "-".
		err = fs.Parse(splitShortFlags(args[1:]))
	default:
		err = parseInterspersed(fs, args[1:])
	}
	if err != nil {
		return err
	}
	timeout := time.Duration(timeoutFlag)
	c := loadConfig().client()
	show := func(sb *client.Sandbox) error {
		return output(*asJSON, sb, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "ID\tTEMPLATE\tSTATUS\tVCPUS\tMEMORY\tCREATED\n%s\t%s\t%s\t%d\t%d MiB\t%s\n",
				sb.ID, sb.Template, sb.Status, sb.VCPUs, sb.MemoryMB, sb.CreatedAt.Format(time.RFC3339))
		})
	}
	needID := func() (string, error) {
		if fs.NArg() != 1 {
			return "", sandboxCommands.usageError(sub)
		}
		return fs.Arg(0), nil
	}
	switch sub {
	case "create":
		sb, err := c.CreateSandbox(ctx, client.CreateSandboxRequest{Template: *template, VCPUs: *vcpus, MemoryMB: *mem, TimeoutSec: int(timeout.Seconds())})
		if err != nil {
			return err
		}
		return show(sb)
	case "ls":
		var states []string
		if *all {
			states = []string{"all"}
		}
		list, err := c.ListSandboxes(ctx, states...)
		if err != nil {
			return err
		}
		return output(*asJSON, list, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "ID\tTEMPLATE\tSTATUS\tCREATED")
			for _, sb := range list {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", sb.ID, sb.Template, sb.Status, sb.CreatedAt.Format(time.RFC3339))
			}
		})
	case "get", "pause", "resume":
		id, err := needID()
		if err != nil {
			return err
		}
		var sb *client.Sandbox
		switch sub {
		case "get":
			sb, err = c.GetSandbox(ctx, id)
		case "pause":
			sb, err = c.Pause(ctx, id)
		case "resume":
			// Whole seconds: the API's unit; a part second would be lost, so it rounds up.
			sb, err = c.Resume(ctx, id, int((timeout+time.Second-1)/time.Second))
		}
		if err != nil {
			return err
		}
		return show(sb)
	case "metrics":
		id, err := needID()
		if err != nil {
			return err
		}
		return sandboxMetrics(ctx, c, id, *rng, *asJSON)
	case "rm", "ping":
		id, err := needID()
		if err != nil {
			return err
		}
		if sub == "rm" {
			return c.DestroySandbox(ctx, id)
		}
		return c.Ping(ctx, id)
	case "exec":
		rest := fs.Args()
		if len(rest) > 1 && rest[1] == "--" { // `exec ID -- CMD…`, so CMD's flags stay CMD's
			rest = append(rest[:1], rest[2:]...)
		}
		if len(rest) < 2 {
			return sandboxCommands.usageError("exec")
		}
		if *interactive || *tty {
			return streamExec(ctx, c, rest[0], client.Command{Cmd: rest[1], Args: rest[2:], Timeout: timeout}, *interactive, *tty)
		}
		res, err := c.Run(ctx, rest[0], client.Command{Cmd: rest[1], Args: rest[2:], Timeout: timeout, MaxOutputBytes: *maxOutput})
		if err != nil {
			return err
		}
		if *asJSON {
			return output(true, res, nil)
		}
		os.Stdout.Write(res.Stdout)
		os.Stderr.Write(res.Stderr)
		warnTruncated(os.Stderr, res)
		if res.TimedOut {
			return errors.New("command timed out")
		}
		if res.ExitCode != 0 {
			return exitError{res.ExitCode}
		}
		return nil
	case "cp":
		return copyCmd(ctx, c, fs.Args())
	}
	return sandboxCommands.unknown(sub)
}

// parseInterspersed parses flags before and after the positional arguments, so that
// `wrenn sandbox resume ID --timeout 300` reads as it is written (the flag package
// stops at the first non-flag); what follows "--" is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) error {
	var positional []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return err
		}
		rest := fs.Args()
		if consumed := args[:len(args)-len(rest)]; len(consumed) > 0 && consumed[len(consumed)-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	return fs.Parse(append([]string{"--"}, positional...))
}

// splitShortFlags turns docker-style "-it" into "-i" "-t" (the flag package takes
// one flag per argument), up to the first non-flag argument.
func splitShortFlags(args []string) []string {
	out := make([]string, 0, len(args)+1)
	for i, a := range args {
		if a == "--" || !strings.HasPrefix(a, "-") {
			return append(out, args[i:]...)
		}
		if a == "-it" || a == "-ti" {
			out = append(out, "-i", "-t")
			continue
		}
		out = append(out, a)
	}
	return out
}

func copyCmd(ctx context.Context, c *client.Client, args []string) error {
	if len(args) != 2 {
		return errors.New("usage: wrenn sandbox cp SRC DST  (one side ID:PATH)")
	}
	remote := func(s string) (id, path string, ok bool) {
		id, path, ok = strings.Cut(s, ":")
		return id, path, ok && strings.HasPrefix(id, "sb")
	}
	if id, path, ok := remote(args[1]); ok {
		var in io.Reader = os.Stdin
		if args[0] != "-" {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			in = f
		}
		return c.WriteFile(ctx, id, path, in)
	}
	if id, path, ok := remote(args[0]); ok {
		rc, err := c.ReadFile(ctx, id, path)
		if err != nil {
			return err
		}
		defer rc.Close()
		var out io.Writer = os.Stdout
		if args[1] != "-" {
			f, err := os.Create(args[1])
			if err != nil {
				return err
			}
			defer f.Close()
			out = f
		}
		_, err = io.Copy(out, rc)
		return err
	}
	return errors.New("one side of cp must be ID:PATH")
}
