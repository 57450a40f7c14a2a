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

func newSandboxFilesCmd(a *app) *cobra.Command {
	return group("files", "List, make and remove paths in a sandbox",
		`Work with a sandbox's filesystem: list a directory, make one, remove a file or a
directory with everything in it. PATH is absolute. To copy a file in or out use
'wrenn sandbox cp'.`,
		newFilesListCmd(a), newFilesMkdirCmd(a), newFilesRemoveCmd(a))
}

// entryColumns are a listing's table columns; the first is the entry's path below
// the listed directory (its name at depth 1, sub/name deeper), so a deep listing
// reads as a tree without repeating the directory on every line.
func entryColumns(dir string) []cliout.Column[client.Entry] {
	prefix := strings.TrimSuffix(dir, "/") + "/"
	return []cliout.Column[client.Entry]{
		{Header: "NAME", Value: func(e client.Entry) string { return strings.TrimPrefix(e.Path, prefix) }},
		{Header: "TYPE", Value: func(e client.Entry) string { return e.Type }},
		{Header: "SIZE", Value: func(e client.Entry) string { return strconv.FormatInt(e.Size, 10) }},
		{Header: "MODIFIED", Value: func(e client.Entry) string {
			if e.ModifiedAt == nil {
				return ""
			}
			return e.ModifiedAt.Format(time.RFC3339)
		}},
		{Header: "PERMISSIONS", Wide: true, Value: func(e client.Entry) string { return e.Permissions }},
		{Header: "OWNER", Wide: true, Value: func(e client.Entry) string { return e.Owner }},
		{Header: "GROUP", Wide: true, Value: func(e client.Entry) string { return e.Group }},
		{Header: "TARGET", Wide: true, Value: func(e client.Entry) string { return e.SymlinkTarget }},
	}
}

func entryPath(e client.Entry) string { return e.Path }

func newFilesListCmd(a *app) *cobra.Command {
	var (
		o     outputFlags
		depth int
	)
	cmd := &cobra.Command{
		Use: "ls [--depth N] ID PATH", Aliases: []string{"list"}, Short: "List a directory in a sandbox",
		Long: `List the entries below a directory of a sandbox, --depth levels down (1: its own
entries; at most 10), in lexical order with each directory's content after it.
Symlinks are listed, not followed. -q prints the entries' absolute paths.`,
		Example:           "  wrenn sandbox files ls sb-1a2b3c4d /home/user\n  wrenn sandbox files ls --depth 3 -o wide sb-1a2b3c4d /home/user/project",
		Args:              argsRange(2, 2),
		ValidArgsFunction: a.completion(false, sandboxChoices),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, c, err := a.printerAndClient(&o)
			if err != nil {
				return err
			}
			list, err := c.ListDir(cmd.Context(), args[0], args[1], depth)
			if err != nil {
				return err
			}
			if list.Truncated {
				fmt.Fprintf(a.errOut, "wrenn: listing truncated: the first %d entries shown (ask for less --depth or a deeper directory)\n", len(list.Entries))
			}
			return cliout.List(p, list.Entries, entryPath, entryColumns(args[1]))
		},
	}
	cmd.Flags().IntVar(&depth, "depth", 1, "levels to descend (1..10)")
	addOutputFlags(cmd, &o)
	return cmd
}

func newFilesMkdirCmd(a *app) *cobra.Command {
	var o outputFlags
	cmd := &cobra.Command{
		Use: "mkdir ID PATH", Short: "Make a directory in a sandbox (and its parents)",
		Long: `Make a directory in a sandbox, with any missing parents, owned by the sandbox's
user. A directory already there is an error.`,
		Example:           "  wrenn sandbox files mkdir sb-1a2b3c4d /home/user/project/data",
		Args:              argsRange(2, 2),
		ValidArgsFunction: a.completion(false, sandboxChoices),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, c, err := a.printerAndClient(&o)
			if err != nil {
				return err
			}
			e, err := c.MakeDir(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			return cliout.One(p, *e, entryPath, entryColumns(args[1][:strings.LastIndex(args[1], "/")+1]))
		},
	}
	addOutputFlags(cmd, &o)
	return cmd
}

func newFilesRemoveCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use: "rm ID PATH", Short: "Remove a file or directory from a sandbox",
		Long: `Remove a file, a symlink (not its target) or a directory with everything in it from
a sandbox, and print its path. Nothing at PATH is an error.`,
		Example:           "  wrenn sandbox files rm sb-1a2b3c4d /home/user/scratch",
		Args:              argsRange(2, 2),
		ValidArgsFunction: a.completion(false, sandboxChoices),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := a.client()
			if err != nil {
				return err
			}
			if err := c.Remove(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintln(a.out, args[1])
			return nil
		},
	}
}
