package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/wrennhq/wrenn/internal/cliout"
	"github.com/wrennhq/wrenn/pkg/client"
)

// execOptions are `wrenn sandbox exec`'s flags.
type execOptions struct {
	interactive, tty, json bool
	timeout                durationValue
	maxOutput              int64
}

func newSandboxExecCmd(a *app) *cobra.Command {
	var o execOptions
	cmd := &cobra.Command{
		Use:   "exec [-i] [-t] [--timeout D] [--max-output BYTES] ID [--] CMD [ARGS...]",
		Short: "Run a command in a sandbox",
		Long: `Run a command in a sandbox and print its output; wrenn exits with the command's
status. -i forwards stdin and streams the output as it comes; -t gives the command a
terminal (with -i: an interactive program). Everything after ID is the command's,
its flags included.`,
		Example: `  wrenn sandbox exec sb-1a2b3c4d -- uname -a
  echo 'print(6*7)' | wrenn sandbox exec -i sb-1a2b3c4d python3
  wrenn sandbox exec -it sb-1a2b3c4d -- top`,
		Args:              argsRange(2, -1),
		ValidArgsFunction: a.completion(false, sandboxChoices),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, command := args[0], args[1:]
			if command[0] == "--" { // `exec ID -- CMD`, after flags ended before ID
				command = command[1:]
				if len(command) == 0 {
					return usageErrorf("no command after --; usage: %s", cmd.UseLine())
				}
			}
			c, _, err := a.client()
			if err != nil {
				return err
			}
			run := client.Command{Cmd: command[0], Args: command[1:], Timeout: time.Duration(o.timeout)}
			if o.interactive || o.tty {
				return a.streamExec(cmd.Context(), c, id, run, o.interactive, o.tty)
			}
			run.MaxOutputBytes = o.maxOutput
			res, err := c.Run(cmd.Context(), id, run)
			if err != nil {
				return err
			}
			if o.json {
				return cliout.Printer{Out: a.out, Format: "json"}.Value(res)
			}
			a.out.Write(res.Stdout)
			a.errOut.Write(res.Stderr)
			warnTruncated(a.errOut, res)
			if res.TimedOut {
				return errors.New("command timed out")
			}
			if res.ExitCode != 0 {
				return exitStatus{res.ExitCode}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false) // flags after ID are the command's
	f.BoolVarP(&o.interactive, "interactive", "i", false, "keep stdin open and forward it; stream the output")
	f.BoolVarP(&o.tty, "tty", "t", false, "run in a terminal (with -i: an interactive program)")
	f.Var(&o.timeout, "timeout", "kill the command after D (default: the server's)")
	f.Int64Var(&o.maxOutput, "max-output", 0, "bytes of stdout and of stderr to keep (0: the server's 1 MiB; at most 16 MiB; -i streams all)")
	f.BoolVar(&o.json, "json", false, "print the result (exit code, stdout, stderr) as JSON")
	return cmd
}

// shellScript starts the friendliest login shell the guest has.
const shellScript = `if command -v bash >/dev/null 2>&1; then exec bash -l; fi; exec sh -l`

func newSandboxShellCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "shell ID",
		Short: "Open an interactive shell in a sandbox",
		Long: `Open a login shell (bash if the guest has it, else sh) in a sandbox on this
terminal; window resizes follow. Exit the shell to come back; wrenn exits with the
shell's status. The same as 'wrenn sandbox exec -it ID -- bash -l'.`,
		Example:           "  wrenn sandbox shell sb-1a2b3c4d",
		Args:              argsRange(1, 1),
		ValidArgsFunction: a.completion(false, sandboxChoices),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !a.inTTY {
				return errors.New("a shell needs a terminal on stdin; to pipe commands use 'wrenn sandbox exec -i ID -- sh'")
			}
			c, _, err := a.client()
			if err != nil {
				return err
			}
			return a.streamExec(cmd.Context(), c, args[0], client.Command{Cmd: "/bin/sh", Args: []string{"-c", shellScript}}, true, true)
		},
	}
}

// streamExec runs a command over the exec stream: interactive forwards stdin, tty gives
// the command a terminal (this one switched to raw mode, resizes passed on).
func (a *app) streamExec(ctx context.Context, c *client.Client, id string, cmd client.Command, interactive, tty bool) error {
	cmd.Stdin = interactive
	var stdin int
	if tty {
		f, ok := a.in.(*os.File)
		if !ok || !a.inTTY {
			return errors.New("-t needs a terminal on stdin (drop -t to pipe input with -i)")
		}
		stdin = int(f.Fd())
		cols, rows, err := term.GetSize(stdin)
		if err != nil {
			return fmt.Errorf("terminal size: %w", err)
		}
		cmd.PTY = &client.PTYSize{Cols: uint32(cols), Rows: uint32(rows)}
	}
	st, err := c.ExecStream(ctx, id, cmd)
	if err != nil {
		return err
	}
	defer st.Close()
	if tty {
		old, err := term.MakeRaw(stdin)
		if err != nil {
			return fmt.Errorf("raw terminal: %w", err)
		}
		defer term.Restore(stdin, old)
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
		go func() {
			for range winch {
				if cols, rows, err := term.GetSize(stdin); err == nil {
					_ = st.Resize(client.PTYSize{Cols: uint32(cols), Rows: uint32(rows)})
				}
			}
		}()
	}
	if interactive {
		go func() {
			if _, err := io.Copy(st, a.in); err == nil {
				_ = st.CloseStdin()
			}
		}()
	}
	end, err := st.Wait(ctx, a.out, a.errOut)
	if err != nil {
		return err
	}
	if end.TimedOut {
		return errors.New("command timed out")
	}
	if end.ExitCode != 0 {
		return exitStatus{end.ExitCode}
	}
	return nil
}

// warnTruncated says on w (stderr) which output the server dropped at its cap, so a
// short output is not mistaken for the whole; the exit code stays the command's.
func warnTruncated(w io.Writer, res *client.ExecResult) {
	for _, s := range []struct {
		name      string
		truncated bool
		kept      int
		total     int64
	}{
		{"stdout", res.StdoutTruncated, len(res.Stdout), res.StdoutTotalBytes},
		{"stderr", res.StderrTruncated, len(res.Stderr), res.StderrTotalBytes},
	} {
		if s.truncated {
			fmt.Fprintf(w, "wrenn: %s truncated: %d of %d bytes shown (--max-output keeps up to 16 MiB; -i streams all output)\n", s.name, s.kept, s.total)
		}
	}
}

func newSandboxCopyCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "cp SRC DST",
		Short: "Copy a file into or out of a sandbox",
		Long: `Copy one file: one side is ID:PATH (a path in the sandbox), the other a local path
or - (stdin or stdout). A bar shows the copy on a terminal when the size is known.`,
		Example: `  wrenn sandbox cp data.csv sb-1a2b3c4d:/home/user/data.csv
  wrenn sandbox cp sb-1a2b3c4d:/var/log/app.log -
  tar cz src | wrenn sandbox cp - sb-1a2b3c4d:/tmp/src.tgz`,
		Args: argsRange(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := a.client()
			if err != nil {
				return err
			}
			return a.copyFile(cmd.Context(), c, args[0], args[1])
		},
	}
}

// remotePath splits ID:PATH; a local path with a colon does not start with "sb".
func remotePath(s string) (id, path string, ok bool) {
	id, path, ok = strings.Cut(s, ":")
	return id, path, ok && strings.HasPrefix(id, "sb") && !strings.Contains(id, "/")
}

func (a *app) copyFile(ctx context.Context, c *client.Client, src, dst string) error {
	if id, path, ok := remotePath(dst); ok {
		if _, _, both := remotePath(src); both {
			return usageErrorf("copy between sandboxes through a local file: one side of cp must be local")
		}
		var in io.Reader = a.in
		var size int64
		if src != "-" {
			f, err := os.Open(src)
			if err != nil {
				return err
			}
			defer f.Close()
			if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
				size = st.Size()
			}
			in = f
		}
		step := a.progress(false).Start("copying " + src + " to " + dst)
		step.SetTotal(size)
		err := c.WriteFile(ctx, id, path, io.TeeReader(in, step))
		step.End(err)
		return err
	}
	if id, path, ok := remotePath(src); ok {
		rc, err := c.ReadFile(ctx, id, path)
		if err != nil {
			return err
		}
		defer rc.Close()
		var out io.Writer = a.out
		if dst != "-" {
			f, err := os.Create(dst)
			if err != nil {
				return err
			}
			defer f.Close()
			out = f
		}
		// Copying to stdout shows no progress: the terminal is the output.
		step := a.progress(dst == "-").Start("copying " + src + " to " + dst)
		_, err = io.Copy(io.MultiWriter(out, step), rc)
		step.End(err)
		return err
	}
	return usageErrorf("one side of cp must be ID:PATH (a sandbox id, a colon, a path in it)")
}
