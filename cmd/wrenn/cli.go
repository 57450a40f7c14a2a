package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wrennhq/wrenn/pkg/client"
)

// cliConfig is what login/signup remember, in $XDG_CONFIG_HOME/wrenn/config.json (0600).
type cliConfig struct {
	URL    string `json:"url"`
	Token  string `json:"token,omitempty"`
	APIKey string `json:"api_key,omitempty"`
}

func configPath() string {
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "wrenn", "config.json")
}

func loadConfig() cliConfig {
	c := cliConfig{URL: "http://127.0.0.1:8080"}
	if b, err := os.ReadFile(configPath()); err == nil {
		_ = json.Unmarshal(b, &c)
	}
	env := cliSettings()
	if env.URL != "" {
		c.URL = env.URL
	}
	if env.APIKey != "" {
		c.APIKey, c.Token = env.APIKey, ""
	}
	return c
}

func (c cliConfig) save() error {
	p := configPath()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	return os.WriteFile(p, b, 0o600)
}

func (c cliConfig) client() *client.Client {
	if c.Token != "" {
		return client.New(c.URL, client.WithToken(c.Token))
	}
	return client.New(c.URL, client.WithAPIKey(c.APIKey))
}

// readPassword takes WRENN_PASSWORD, else the first line of stdin.
func readPassword() (string, error) {
	if p := cliSettings().Password; p != "" {
		return p, nil
	}
	fmt.Fprint(os.Stderr, "password: ")
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", errors.New("no password (set WRENN_PASSWORD or type it)")
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// accountCmd is `wrenn signup` and `wrenn login`.
func accountCmd(ctx context.Context, signup bool, args []string) error {
	name := "login"
	if signup {
		name = "signup"
	}
	fs := flag.NewFlagSet("wrenn "+name, flag.ContinueOnError)
	cfg := loadConfig()
	url := fs.String("url", cfg.URL, "control plane URL")
	email := fs.String("email", "", "account email")
	display := fs.String("name", "", "your name (signup)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *email == "" {
		return errors.New("--email is required")
	}
	pw, err := readPassword()
	if err != nil {
		return err
	}
	c := client.New(*url)
	var s *client.Session
	if signup {
		s, err = c.Signup(ctx, *email, *display, pw)
	} else {
		s, err = c.Login(ctx, *email, pw)
	}
	if err != nil {
		return err
	}
	cfg.URL, cfg.Token, cfg.APIKey = *url, s.Token, ""
	if err := cfg.save(); err != nil {
		return err
	}
	fmt.Printf("logged in as %s (team %s, %s); token saved to %s\n", *email, s.TeamID, s.Role, configPath())
	return nil
}

// output prints v as JSON with --json, else calls table.
func output(asJSON bool, v any, table func(w *tabwriter.Writer)) error {
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	table(w)
	return w.Flush()
}

func keysCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("wrenn keys", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	if len(args) == 0 {
		return errors.New("usage: wrenn keys create NAME | ls | rm ID")
	}
	sub := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	c := loadConfig().client()
	switch sub {
	case "create":
		k, err := c.CreateAPIKey(ctx, strings.Join(fs.Args(), " "))
		if err != nil {
			return err
		}
		return output(*asJSON, k, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "ID\tNAME\tKEY (shown once)\n%s\t%s\t%s\n", k.ID, k.Name, k.Key)
		})
	case "ls":
		keys, err := c.ListAPIKeys(ctx)
		if err != nil {
			return err
		}
		return output(*asJSON, keys, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "ID\tNAME\tPREFIX\tCREATED\tLAST USED")
			for _, k := range keys {
				used := "never"
				if k.LastUsedAt != nil {
					used = k.LastUsedAt.Format(time.RFC3339)
				}
				fmt.Fprintf(w, "%s\t%s\t%s…\t%s\t%s\n", k.ID, k.Name, k.Prefix, k.CreatedAt.Format(time.RFC3339), used)
			}
		})
	case "rm":
		if fs.NArg() != 1 {
			return errors.New("usage: wrenn keys rm ID")
		}
		return c.RevokeAPIKey(ctx, fs.Arg(0))
	}
	return fmt.Errorf("unknown keys command %q", sub)
}

func sandboxCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: wrenn sandbox create|ls|get|exec|cp|rm|ping …")
	}
	sub := args[0]
	fs := flag.NewFlagSet("wrenn sandbox "+sub, flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	template := fs.String("template", "base", "template (create)")
	vcpus := fs.Int("vcpus", 0, "vCPUs (create)")
	mem := fs.Int("memory", 0, "memory in MiB (create)")
	timeout := fs.Duration("timeout", 0, "idle timeout (create) or command timeout (exec)")
	interactive := fs.Bool("i", false, "exec: keep stdin open and forward it")
	tty := fs.Bool("t", false, "exec: run in a terminal (with -i: an interactive shell)")
	maxOutput := fs.Int64("max-output", 0, "exec: bytes of stdout and of stderr to keep (0 = the server's 1 MiB, at most 16 MiB; -i streams all)")
	all := fs.Bool("all", false, "ls: include stopped and failed sandboxes")
	if err := fs.Parse(splitShortFlags(args[1:])); err != nil {
		return err
	}
	c := loadConfig().client()
	show := func(sb *client.Sandbox) error {
		return output(*asJSON, sb, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "ID\tTEMPLATE\tSTATUS\tVCPUS\tMEMORY\tCREATED\n%s\t%s\t%s\t%d\t%d MiB\t%s\n",
				sb.ID, sb.Template, sb.Status, sb.VCPUs, sb.MemoryMB, sb.CreatedAt.Format(time.RFC3339))
		})
	}
	needID := func() (string, error) {
		if fs.NArg() < 1 {
			return "", fmt.Errorf("usage: wrenn sandbox %s ID", sub)
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
	case "get":
		id, err := needID()
		if err != nil {
			return err
		}
		sb, err := c.GetSandbox(ctx, id)
		if err != nil {
			return err
		}
		return show(sb)
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
			return errors.New("usage: wrenn sandbox exec [-i] [-t] ID [--] CMD [ARGS…]")
		}
		if *interactive || *tty {
			return streamExec(ctx, c, rest[0], client.Command{Cmd: rest[1], Args: rest[2:], Timeout: *timeout}, *interactive, *tty)
		}
		res, err := c.Run(ctx, rest[0], client.Command{Cmd: rest[1], Args: rest[2:], Timeout: *timeout, MaxOutputBytes: *maxOutput})
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
	return fmt.Errorf("unknown sandbox command %q", sub)
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

// copyCmd copies LOCAL to ID:PATH or ID:PATH to LOCAL ("-" is stdin/stdout).
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
