package cliout

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

type item struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	State string `json:"state"`
	N     int    `json:"n"`
}

var cols = []Column[item]{
	{Header: "ID", Value: func(i item) string { return i.ID }},
	{Header: "NAME", Value: func(i item) string { return i.Name }},
	{Header: "STATE", State: true, Value: func(i item) string { return i.State }},
	{Header: "N", Wide: true, Value: func(i item) string { return "n" + i.Name }},
}

var items = []item{{"a1", "Ünïcode", "running", 1}, {"b22", "x", "error", 2}}

func print(t *testing.T, p Printer, list []item) string {
	t.Helper()
	var b bytes.Buffer
	p.Out = &b
	if err := List(p, list, func(i item) string { return i.ID }, cols); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestFormats(t *testing.T) {
	for _, c := range []struct {
		p    Printer
		want string
	}{
		{Printer{}, "ID   NAME     STATE\na1   Ünïcode  running\nb22  x        error\n"},
		{Printer{Format: "wide"}, "ID   NAME     STATE    N\na1   Ünïcode  running  nÜnïcode\nb22  x        error    nx\n"},
		{Printer{Quiet: true, Format: "json"}, "a1\nb22\n"},
		{Printer{Format: "json"}, "[\n  {\n    \"id\": \"a1\",\n    \"name\": \"Ünïcode\",\n    \"state\": \"running\",\n    \"n\": 1\n  },\n  {\n    \"id\": \"b22\",\n    \"name\": \"x\",\n    \"state\": \"error\",\n    \"n\": 2\n  }\n]\n"},
		// YAML keeps the JSON names and their order (id before name), not Go's.
		{Printer{Format: "yaml"}, "- id: a1\n  name: Ünïcode\n  state: running\n  n: 1\n- id: b22\n  name: x\n  state: error\n  n: 2\n"},
		{Printer{Color: true}, "\x1b[1mID\x1b[0m   \x1b[1mNAME\x1b[0m     \x1b[1mSTATE\x1b[0m\na1   Ünïcode  \x1b[32mrunning\x1b[0m\nb22  x        \x1b[31merror\x1b[0m\n"},
	} {
		if got := print(t, c.p, items); got != c.want {
			t.Errorf("%+v:\n%q\nwant\n%q", c.p, got, c.want)
		}
	}
	// An empty list is [] in JSON, a header alone in a table.
	if got := print(t, Printer{Format: "json"}, nil); got != "[]\n" {
		t.Errorf("empty JSON: %q", got)
	}
	if got := print(t, Printer{}, nil); got != "ID  NAME  STATE\n" {
		t.Errorf("empty table: %q", got)
	}
	// One item in a table shows the wide columns too.
	var b bytes.Buffer
	One(Printer{Out: &b}, items[1], func(i item) string { return i.ID }, cols)
	if b.String() != "ID   NAME  STATE  N\nb22  x     error  nx\n" {
		t.Errorf("one: %q", b.String())
	}
	if CheckFormat("xml") == nil || CheckFormat("wide") != nil {
		t.Error("CheckFormat")
	}
}

func TestUseColor(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	if !UseColor(true, env(nil)) || UseColor(false, env(nil)) {
		t.Error("colour follows the terminal")
	}
	if UseColor(true, env(map[string]string{"NO_COLOR": "1"})) || UseColor(true, env(map[string]string{"TERM": "dumb"})) {
		t.Error("NO_COLOR or TERM=dumb still coloured")
	}
}

// Not on a terminal a step is one plain line when it ends; on a terminal it is
// redrawn in place and ends with a mark; quiet progress prints nothing.
func TestProgress(t *testing.T) {
	var b bytes.Buffer
	p := &Progress{W: &b}
	_ = p.Step("pausing sb1", func() error { return nil })
	_ = p.Step("resuming sb1", func() error { return errors.New("x") })
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "pausing sb1 (0.") || !strings.HasPrefix(lines[1], "resuming sb1: failed (") {
		t.Errorf("plain: %q", b.String())
	}
	b.Reset()
	p = &Progress{W: &b, Terminal: true, Tick: time.Millisecond}
	s := p.Start("copying f")
	s.SetTotal(4 << 20)
	s.Write(make([]byte, 1<<20))
	time.Sleep(20 * time.Millisecond)
	s.End(nil)
	out := b.String()
	if !strings.Contains(out, " copying f 0.") || !strings.Contains(out, " 25% 1.0 MiB/4.0 MiB") ||
		!strings.Contains(out, "\r✓ copying f (") || !strings.HasSuffix(out, "\x1b[K\n") {
		t.Errorf("terminal: %q", out)
	}
	b.Reset()
	p = &Progress{W: &b, Terminal: true, Quiet: true}
	_ = p.Step("x", func() error { return nil })
	if b.Len() != 0 {
		t.Errorf("quiet: %q", b.String())
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
}
