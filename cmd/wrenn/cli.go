package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
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
			fmt.Fprintf(w, "ID\tNAME\tKEY (shown once)\tE2B_API_KEY (the same key)\n%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Key, k.E2BKey)
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
