package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/wrennhq/wrenn/pkg/client"
	"golang.org/x/term"
)

// streamExec runs a command over the exec stream: -i forwards this process's stdin,
// -t gives the command a terminal (this one switched to raw mode, resizes passed on),
// so `wrenn sandbox exec -it ID -- bash` is an interactive shell.
func streamExec(ctx context.Context, c *client.Client, id string, cmd client.Command, interactive, tty bool) error {
	cmd.Stdin = interactive
	stdin := int(os.Stdin.Fd())
	if tty {
		if !term.IsTerminal(stdin) {
			return errors.New("-t needs a terminal on stdin (drop -t to pipe input with -i)")
		}
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
			if _, err := io.Copy(st, os.Stdin); err == nil {
				_ = st.CloseStdin()
			}
		}()
	}
	end, err := st.Wait(ctx, os.Stdout, os.Stderr)
	if err != nil {
		return err
	}
	if end.TimedOut {
		return errors.New("command timed out")
	}
	if end.ExitCode != 0 {
		return exitError{end.ExitCode}
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
