// Command wrenn is Wrenn's single binary. Subcommands are thin: they parse flags and
// call into internal/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/wrennhq/wrenn/internal/config"
	"github.com/wrennhq/wrenn/internal/version"
)

const usage = `wrenn — microVM sandboxes on machines you own

Usage:
  wrenn signup|login --email E  create an account or log in (password from WRENN_PASSWORD or stdin)
  wrenn keys create NAME|ls|rm  team API keys
  wrenn team ls|create|show|rename|rm|switch|leave  your teams; switch makes your login act for another ('wrenn team -h')
  wrenn member ls|add|role|rm [--team ID] …         a team's members and their roles ('wrenn member -h')
  wrenn sandbox create|ls|get|exec|cp|rm|ping …   sandboxes (--json for JSON; WRENN_API_KEY works too)
  wrenn sandbox pause|resume ID                     freeze a sandbox into a snapshot / restore it ('wrenn sandbox -h')
  wrenn snapshot create|ls|get|rm …                 named snapshots of sandboxes, to create new ones from ('wrenn snapshot -h')
  wrenn host create|ls|get|rm|tag|untag …          hosts (machines running wrenn agent)
  wrenn audit [--action A] [--actor X] [--all] …    the team's audit log, newest first ('wrenn audit -h')
  wrenn admin grant|revoke EMAIL                    platform administrators (WRENN_DATABASE_URL)
  wrenn admin create-user [--name N] EMAIL          make an account (WRENN_DATABASE_URL; with WRENN_SIGNUP=closed the only way)
  wrenn admin teams|users|templates|sandboxes       platform administration through the API ('wrenn admin -h')
  wrenn admin byoc ID on|off, template rm NAME      a team's BYOC; delete a template or a team's snapshot
  wrenn image build [flags]     build (or refresh) a guest template, default "base"
  wrenn server [flags]          run the control plane (REST /v1; PostgreSQL, Redis, registered hosts)
  wrenn agent [flags]           run the host agent (root): registers with --server/--token, then serves its sandboxes
  wrenn vm run [flags] -- CMD…  boot a throwaway sandbox, run CMD in it, tear it down
  wrenn version                 print the version

Run 'wrenn <command> -h' for a command's flags. Every setting (flags and WRENN_*
variables of server, agent, envd and this CLI) is listed in README.md, Settings.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// exitError carries a process exit code through the error path (e.g. the exit code of
// a command run in a sandbox).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func run(ctx context.Context, args []string) int {
	var err error
	switch {
	case len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help":
		fmt.Print(usage)
		return 0
	case args[0] == "version":
		fmt.Println("wrenn", version.Version)
		return 0
	// The server and the agent read their own settings (and make their own logger).
	case args[0] == "server":
		err = serverCmd(ctx, nil, args[1:])
	case args[0] == "agent":
		err = agentCmd(ctx, nil, args[1:])
	default:
		err = cliCmd(ctx, args)
	}
	var ee exitError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(os.Stderr, "wrenn: unknown command %q\n\n%s", args, usage)
		return 2
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintln(os.Stderr, "wrenn:", err)
		return 1
	}
}

var errUsage = errors.New("unknown command")

// cliCmd runs the commands that read the CLI's settings (config.CLI).
func cliCmd(ctx context.Context, args []string) error {
	cfg, err := config.LoadCLI(os.Getenv)
	if err != nil {
		return err
	}
	log := cfg.Log.New(os.Stderr)
	switch {
	case args[0] == "image" && len(args) > 1 && args[1] == "build":
		return imageBuild(ctx, log, args[2:])
	case args[0] == "signup" || args[0] == "login":
		return accountCmd(ctx, args[0] == "signup", args[1:])
	case args[0] == "keys":
		return keysCmd(ctx, args[1:])
	case args[0] == "team":
		return teamCmd(ctx, args[1:])
	case args[0] == "member":
		return memberCmd(ctx, args[1:])
	case args[0] == "sandbox":
		return sandboxCmd(ctx, args[1:])
	case args[0] == "snapshot":
		return snapshotCmd(ctx, args[1:])
	case args[0] == "host":
		return hostCmd(ctx, args[1:])
	case args[0] == "audit":
		return auditCmd(ctx, args[1:])
	case args[0] == "admin":
		return adminCmd(ctx, args[1:])
	case args[0] == "vm" && len(args) > 1 && args[1] == "run":
		return vmRun(ctx, log, args[2:])
	}
	return errUsage
}

// cliSettings are the CLI's settings from the environment; cliCmd has already failed
// on a bad value before any command asks.
func cliSettings() config.CLI {
	c, _ := config.LoadCLI(os.Getenv)
	return c
}

// wrennDir is WRENN_DIR or the default.
func wrennDir() string { return cliSettings().Dir }
