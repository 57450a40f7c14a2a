// Package config declares every setting of Wrenn's programs — the control plane (wrenn
// server), the host agent (wrenn agent), envd, and the inputs of the wrenn CLI — in one
// table per program: flag, environment variable, default, documentation, whether it is
// secret, and how it parses into a typed field of the program's config struct.
//
// A Load function applies default < environment < flag (an empty variable counts as
// unset), fails on a bad value with an error naming the setting, and validates the
// result. A loaded config logs itself (it is a slog.LogValuer) with secrets redacted.
// README.md's settings section is generated from the same tables (Markdown).
//
// The package imports nothing of Wrenn's so that envd, which runs in every guest, links
// it without the control plane's or the agent's dependencies.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// Value parses a setting's text into a typed field of a config struct. It is a
// flag.Value; boolean values also have IsBoolFlag so that a bare --flag means true.
type Value interface {
	// Set parses s and stores it; the error says what is wanted ("want a duration of
	// at least 1s, like 90s"), without the name, which the caller adds.
	Set(s string) error
	// String is the current value as text that Set accepts.
	String() string
}

// Setting is one configurable value of a program.
type Setting struct {
	Flag string // flag name without dashes; "" = no flag
	Env  string // environment variable; "" = none
	// Default is the default as text, parsed by Value like any other input ("" = the
	// zero value). DefaultDoc, when set, is what help and README show instead (for a
	// default computed from another setting, like "WRENN_DIR/agent").
	Default, DefaultDoc string
	Usage               string // what it is, for -h and README
	Required            bool   // an empty value is an error
	// Secret values are never logged or echoed in errors; Redact, when set, instead
	// logs the value with its secret part removed (a URL's password).
	Secret bool
	Redact func(string) string
	Value  Value
}

// Name is how errors and logs call the setting: its variable, else --flag.
func (s *Setting) Name() string {
	if s.Env != "" {
		return s.Env
	}
	return "--" + s.Flag
}

// shown is a value as it may appear in logs and errors.
func (s *Setting) shown(v string) string {
	switch {
	case v == "":
		return ""
	case s.Secret:
		return "REDACTED"
	case s.Redact != nil:
		return s.Redact(v)
	}
	return v
}

// set parses v from the named source (the variable or --flag), naming it on error.
func (s *Setting) set(source, v string) error {
	if err := s.Value.Set(v); err != nil {
		if s.Default != "" && !strings.HasPrefix(source, "default") {
			err = fmt.Errorf("%w; default %s", err, s.Default)
		}
		if s.Secret {
			return fmt.Errorf("%s: %v", source, err)
		}
		return fmt.Errorf("%s=%q: %v", source, s.shown(v), err)
	}
	return nil
}

// table is a program's settings, bound to the fields of one config struct.
type table struct {
	program  string // "wrenn server", "wrenn agent", "envd", "wrenn (CLI)"
	summary  string // one line for README
	settings []*Setting
}

// load applies the defaults, then the environment, then the flags in args.
func (t table) load(args []string, getenv func(string) string) error {
	for _, s := range t.settings {
		if s.Default != "" {
			if err := s.set("default of "+s.Name(), s.Default); err != nil {
				return err // a bug in the table; TestDefaults catches it
			}
		}
	}
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	for _, s := range t.settings {
		if s.Env == "" {
			continue
		}
		if v := getenv(s.Env); v != "" {
			if err := s.set(s.Env, v); err != nil {
				return err
			}
		}
	}
	fs := flag.NewFlagSet(t.program, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var bad error
	for _, s := range t.settings {
		if s.Flag != "" {
			fs.Var(flagValue{s, &bad}, s.Flag, s.Usage)
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			t.usage(os.Stderr)
		}
		return err
	}
	if bad != nil {
		return bad
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q (flags only; -h lists them)", t.program, fs.Arg(0))
	}
	return nil
}

// flagValue routes a flag through its setting, keeping the first bad value so that the
// error names it like a variable's (--flag="abc": want …) rather than in flag's words.
type flagValue struct {
	s   *Setting
	bad *error
}

func (f flagValue) String() string {
	if f.s == nil {
		return ""
	}
	return f.s.Value.String()
}

func (f flagValue) Set(v string) error {
	if err := f.s.set("--"+f.s.Flag, v); err != nil && *f.bad == nil {
		*f.bad = err
	}
	return nil
}

func (f flagValue) IsBoolFlag() bool {
	b, ok := f.s.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// check validates the current values: required ones are set, and each parses again
// (so a config built by hand gets the same checks as a loaded one).
func (t table) check() error {
	for _, s := range t.settings {
		v := s.Value.String()
		if v == "" {
			if s.Required {
				return fmt.Errorf("%s is required: %s", s.Name(), s.Usage)
			}
			continue
		}
		if err := s.set(s.Name(), v); err != nil {
			return err
		}
	}
	return nil
}

// attrs are the settings' current values for a log line, secrets redacted.
func (t table) attrs() []slog.Attr {
	attrs := make([]slog.Attr, 0, len(t.settings))
	for _, s := range t.settings {
		attrs = append(attrs, slog.String(s.Name(), s.shown(s.Value.String())))
	}
	return attrs
}

func (t table) logValue() slog.Value { return slog.GroupValue(t.attrs()...) }

// usage prints -h: every setting with its flag, variable and default.
func (t table) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage of %s (flag > environment > default):\n", t.program)
	for _, s := range t.settings {
		var names []string
		if s.Flag != "" {
			names = append(names, "--"+s.Flag)
		}
		if s.Env != "" {
			names = append(names, s.Env)
		}
		fmt.Fprintf(w, "  %s", strings.Join(names, ", "))
		if d := s.defaultDoc(); d != "" {
			fmt.Fprintf(w, " (default %s)", d)
		}
		fmt.Fprintf(w, "\n    \t%s\n", s.Usage)
	}
}

func (s *Setting) defaultDoc() string {
	switch {
	case s.DefaultDoc != "":
		return s.DefaultDoc
	case s.Required:
		return ""
	}
	return s.Default
}
