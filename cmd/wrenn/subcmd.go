package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

// subcommand is one subcommand of a command group (`wrenn sandbox create`): its
// synopsis and what it does, for usage errors and -h.
type subcommand struct{ name, synopsis, about string }

// commandGroup is a command with subcommands that share one flag set.
type commandGroup struct {
	name string // "sandbox"
	subs []subcommand
	// notes ends a usage with what the shown subcommands need explained.
	notes func(shown []subcommand) string
}

// usage is the usage of one subcommand, or of them all when sub is unknown.
func (g commandGroup) usage(sub string) string {
	var shown []subcommand
	for _, c := range g.subs {
		if sub == "" || c.name == sub {
			shown = append(shown, c)
		}
	}
	if len(shown) == 0 {
		return g.usage("")
	}
	var b strings.Builder
	b.WriteString("usage:\n")
	for _, c := range shown {
		fmt.Fprintf(&b, "  wrenn %s %s\n      %s\n", g.name, strings.TrimSpace(c.name+" "+c.synopsis), c.about)
	}
	if g.notes != nil {
		b.WriteString(g.notes(shown))
	}
	return b.String()
}

// usageError is a subcommand's usage as an error (all of them for "").
func (g commandGroup) usageError(sub string) error {
	return errors.New(strings.TrimSuffix(g.usage(sub), "\n"))
}

// unknown refuses a subcommand the group does not have.
func (g commandGroup) unknown(sub string) error {
	return fmt.Errorf("unknown %s command %q\n%s", g.name, sub, strings.TrimSuffix(g.usage(""), "\n"))
}

// start handles a bare or help invocation (printing the usage) and returns the
// subcommand and its flag set, whose -h prints the subcommand's usage and flags.
func (g commandGroup) start(args []string) (string, *flag.FlagSet, error) {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(os.Stderr, g.usage(""))
		if len(args) == 0 {
			return "", nil, fmt.Errorf("a %s command is needed", g.name)
		}
		return "", nil, flag.ErrHelp
	}
	sub := args[0]
	fs := flag.NewFlagSet("wrenn "+g.name+" "+sub, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), g.usage(sub))
		fmt.Fprintln(fs.Output(), "flags:")
		fs.PrintDefaults()
	}
	return sub, fs, nil
}
