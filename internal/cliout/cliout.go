// Package cliout is how the wrenn CLI prints what it gets back: tables (narrow or
// wide), JSON, YAML or bare ids, colour only where a person reads it, and progress
// for the operations that take a while.
package cliout

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Formats are the values of -o.
var Formats = []string{"table", "wide", "json", "yaml"}

// CheckFormat refuses a -o value that is not one of Formats.
func CheckFormat(f string) error {
	for _, ok := range Formats {
		if f == ok {
			return nil
		}
	}
	return fmt.Errorf("unknown output format %q: use %s", f, strings.Join(Formats, ", "))
}

// Printer prints results in one format.
type Printer struct {
	Out    io.Writer
	Format string // one of Formats; "" is table
	Quiet  bool   // ids only, one per line, whatever Format says
	Color  bool
}

// Column is one column of a table of T.
type Column[T any] struct {
	Header string
	Wide   bool // only with -o wide
	Value  func(T) string
	// State colours the value as a lifecycle state (running, paused, error…).
	State bool
}

// List prints items: a table of cols, or the items as JSON or YAML, or their ids.
func List[T any](p Printer, items []T, id func(T) string, cols []Column[T]) error {
	if items == nil {
		items = []T{} // JSON [] rather than null
	}
	if p.Quiet {
		for _, it := range items {
			fmt.Fprintln(p.Out, id(it))
		}
		return nil
	}
	switch p.Format {
	case "json", "yaml":
		return p.Value(items)
	}
	return table(p, items, cols)
}

// One prints a single item as List prints a list of one, but a table of it has every
// column, wide ones too: one row has the room, and a get is asked for the detail.
func One[T any](p Printer, item T, id func(T) string, cols []Column[T]) error {
	if p.Quiet {
		_, err := fmt.Fprintln(p.Out, id(item))
		return err
	}
	switch p.Format {
	case "json", "yaml":
		return p.Value(item)
	}
	p.Format = "wide"
	return table(p, []T{item}, cols)
}

// Value prints v as JSON (also for table formats) or YAML; YAML keeps JSON's field
// names and order.
func (p Printer) Value(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	if p.Format != "yaml" {
		_, err = p.Out.Write(append(b, '\n'))
		return err
	}
	// JSON is YAML: parsed as a node it keeps its order; block style reads better.
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("encode output as YAML: %w", err)
	}
	plain(&doc)
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return fmt.Errorf("encode output as YAML: %w", err)
	}
	_, err = p.Out.Write(out.Bytes())
	return err
}

func plain(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		plain(c)
	}
}

// table prints rows under a header, columns two spaces apart, widths in runes (so
// colour codes and non-ASCII names do not shift them).
func table[T any](p Printer, items []T, cols []Column[T]) error {
	var shown []Column[T]
	for _, c := range cols {
		if !c.Wide || p.Format == "wide" {
			shown = append(shown, c)
		}
	}
	cells := make([][]string, len(items)+1)
	width := make([]int, len(shown))
	for i, c := range shown {
		cells[0] = append(cells[0], c.Header)
		width[i] = utf8.RuneCountInString(c.Header)
	}
	for r, it := range items {
		for i, c := range shown {
			v := strings.ReplaceAll(c.Value(it), "\n", " ")
			cells[r+1] = append(cells[r+1], v)
			width[i] = max(width[i], utf8.RuneCountInString(v))
		}
	}
	var b strings.Builder
	for r, row := range cells {
		for i, v := range row {
			pad := ""
			if i < len(row)-1 {
				pad = strings.Repeat(" ", width[i]-utf8.RuneCountInString(v)+2)
			}
			switch {
			case r == 0 && p.Color:
				v = bold + v + reset
			case r > 0 && shown[i].State && p.Color:
				v = StateColor(v) + v + reset
			}
			b.WriteString(v + pad)
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(p.Out, b.String())
	return err
}

const (
	reset  = "\x1b[0m"
	bold   = "\x1b[1m"
	red    = "\x1b[31m"
	green  = "\x1b[32m"
	yellow = "\x1b[33m"
	cyan   = "\x1b[36m"
	dim    = "\x1b[2m"
)

// StateColor is the colour of a lifecycle state word: green running or online, yellow
// paused, cyan while changing, red failed, dim stopped.
func StateColor(state string) string {
	switch state {
	case "running", "online", "ready":
		return green
	case "paused", "draining", "pending":
		return yellow
	case "starting", "pausing", "resuming", "snapshotting", "stopping":
		return cyan
	case "error", "failed", "offline", "unreachable":
		return red
	case "stopped":
		return dim
	}
	return ""
}

// UseColor says whether output to a writer that is (or is not) a terminal gets colour:
// never when NO_COLOR is set to anything (no-color.org) or TERM is dumb.
func UseColor(isTerminal bool, getenv func(string) string) bool {
	return isTerminal && getenv("NO_COLOR") == "" && getenv("TERM") != "dumb"
}

// Show prints v in a form of its own (text) for the table formats, else as List
// prints an item: its id when quiet, JSON or YAML.
func (p Printer) Show(v any, id string, text func(io.Writer) error) error {
	switch {
	case p.Quiet:
		_, err := fmt.Fprintln(p.Out, id)
		return err
	case p.Format == "json" || p.Format == "yaml":
		return p.Value(v)
	}
	return text(p.Out)
}
