package config

import (
	"fmt"
	"strings"
)

//go:generate go test -run ^TestREADME$ -update .

// README.md's settings section lies between these markers; Markdown is what goes there.
const (
	DocBegin = "<!-- BEGIN SETTINGS: generated from internal/config by `go generate ./internal/config`; do not edit -->"
	DocEnd   = "<!-- END SETTINGS -->"
)

// tables are every program's settings, in README's order.
func tables() []table {
	return []table{(&Server{}).table(), (&Agent{}).table(), (&Envd{}).table(), (&CLI{}).table()}
}

// Markdown documents every setting of every program: one table each.
func Markdown() string {
	var b strings.Builder
	for i, t := range tables() {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "**%s**: %s\n\n", t.program, t.summary)
		b.WriteString("| variable | flag | default | meaning |\n|---|---|---|---|\n")
		for _, s := range t.settings {
			def := s.defaultDoc()
			switch {
			case s.Required:
				def = "*required*"
			case s.DefaultDoc != "":
				def = cell(def)
			case def != "":
				def = code(def)
			}
			usage := s.Usage
			switch {
			case s.Secret:
				usage += "; secret: never logged"
			case s.Redact != nil:
				usage += "; its password is never logged"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", code(s.Env), code(flagName(s.Flag)), def, cell(usage))
		}
	}
	return b.String()
}

func flagName(f string) string {
	if f == "" {
		return ""
	}
	return "--" + f
}

func code(s string) string {
	if s == "" {
		return ""
	}
	return "`" + cell(s) + "`"
}

// cell escapes what would end a Markdown table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
