package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// module is this module's path; the rules speak of its packages relative to it.
const module = "github.com/wrennhq/wrenn"

// graph maps each package of the module (by relative path) to what its non-test
// files import: the module's packages by relative path, others by their own path.
type graph map[string][]string

// A rule forbids some imports to the production packages in its scope.
type rule struct {
	name    string
	applies func(pkg string) bool // the importers it constrains (production ones only)
	forbids func(imp string) bool // the imports it forbids them
}

// rules are the module's import boundaries.
func rules(g graph) []rule {
	inModule := func(p string) bool { _, ok := g[p]; return ok }
	return []rule{{
		// The control plane talks to agents over RPC and HTTP only (internal/hostproto
		// holds the agent's routes and headers), so it runs where no VM ever does.
		name:    "the control plane must not import host-agent code",
		applies: func(p string) bool { return under(p, "internal/server") },
		forbids: func(i string) bool {
			return under(i, "internal/agent") || under(i, "internal/vmm") || under(i, "internal/netslot") || under(i, "internal/rootfs")
		},
	}, {
		// Test helpers start databases and processes and skip or fail tests: nothing a
		// shipped binary should link.
		name:    "production code must not import test helpers",
		applies: func(string) bool { return true },
		forbids: func(i string) bool { return i == "testing" || inModule(i) && isHelper(i) },
	}, {
		// envd is a static binary inside every guest: host code would add size and attack
		// surface there, and tie the guest to the host's internals.
		name:    "the guest daemon must not import host code",
		applies: func(p string) bool { return p == "cmd/envd" || under(p, "internal/envd") },
		forbids: func(i string) bool {
			return inModule(i) && !under(i, "internal/envd") && !under(i, "gen/envd") && guestShared(i) == ""
		},
	}}
}

// guestShared says why a module package outside internal/envd and gen/envd is safe in
// the guest, or returns "" for all others. Each imports only the standard library; an
// import it grows is checked as if envd made it.
func guestShared(p string) string {
	switch p {
	case "internal/config":
		return "every program's settings in one table, envd's flags and variables included, so README stays generated from one place"
	case "internal/version":
		return "the build version the linker sets, which envd reports as wrenn's"
	case "internal/atomicfile":
		return "crash-safe file replacement, for the files /init writes into envd's run dir"
	}
	return ""
}

// isHelper reports whether a module package is a test helper: by convention its name
// ends in "test" (pgtest, envdtest, vmtest, …) or is testutil, so a production package
// must not be named so.
func isHelper(p string) bool {
	base := path.Base(p)
	return strings.HasSuffix(base, "test") || base == "testutil"
}

// isProduction reports whether a module package ships: not a test helper, nor the
// end-to-end tests or the benchmarks.
func isProduction(p string) bool {
	return !isHelper(p) && !under(p, "test") && !under(p, "bench")
}

func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// violations lists, sorted, every forbidden import of a production package, one line
// each: "A imports B (rule)". An import the rule allows but that itself leads to a
// forbidden package, through packages outside the rule's scope (which nobody else
// checks against it), is reported with the way there: "A imports B via C → D (rule)".
func violations(g graph) []string {
	var out []string
	for _, r := range rules(g) {
		for pkg, imps := range g {
			if !isProduction(pkg) || !r.applies(pkg) {
				continue
			}
			for _, imp := range imps {
				switch {
				case r.forbids(imp):
					out = append(out, fmt.Sprintf("%s imports %s (%s)", pkg, imp, r.name))
				case !r.applies(imp):
					for _, via := range forbiddenFrom(g, imp, r) {
						out = append(out, fmt.Sprintf("%s imports %s via %s (%s)", pkg, via[len(via)-1], strings.Join(via[:len(via)-1], " → "), r.name))
					}
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// forbiddenFrom finds the packages r forbids that start (a module package r does not
// forbid) leads to, each with the shortest chain of imports from start to it.
func forbiddenFrom(g graph, start string, r rule) [][]string {
	if _, ok := g[start]; !ok {
		return nil // the standard library and third parties are not followed
	}
	prev := map[string]string{start: ""}
	var found [][]string
	for queue := []string{start}; len(queue) > 0; queue = queue[1:] {
		p := queue[0]
		for _, imp := range g[p] {
			if _, seen := prev[imp]; seen {
				continue
			}
			prev[imp] = p
			if r.forbids(imp) {
				chain := []string{imp}
				for q := p; q != ""; q = prev[q] {
					chain = append([]string{q}, chain...)
				}
				found = append(found, chain)
				continue
			}
			if _, ok := g[imp]; ok {
				queue = append(queue, imp)
			}
		}
	}
	return found
}

// load lists the module's packages with `go list`, run from the module root, as the
// build sees them on this machine.
func load(t *testing.T) graph {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	root := strings.TrimSpace(string(out))
	watchSources(t, root)
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Imports,Error", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("go list ./...: %v\n%s", err, stderr.String())
	}
	rel := func(p string) string {
		if r, ok := strings.CutPrefix(p, module+"/"); ok {
			return r
		}
		return p
	}
	g := graph{}
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var p struct {
			ImportPath string
			Imports    []string
			Error      *struct{ Err string }
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if p.Error != nil {
			t.Fatalf("go list %s: %s", p.ImportPath, p.Error.Err)
		}
		if !strings.HasPrefix(p.ImportPath, module+"/") {
			t.Fatalf("go list ./... gave %s, outside module %s", p.ImportPath, module)
		}
		var imps []string
		for _, i := range p.Imports {
			imps = append(imps, rel(i))
		}
		g[rel(p.ImportPath)] = imps
	}
	return g
}

// watchSources opens every directory the go command would look for packages in. A
// passing test result is cached against the files the test process opened, but go list
// reads the sources in a process of its own: opening the directories here (the cache
// notes each entry's size and time) makes an added, removed or edited file rerun the
// test rather than replay a stale pass.
func watchSources(t *testing.T, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if !d.IsDir() {
			return nil
		}
		// What the go command skips: hidden and _ directories, and testdata.
		if p != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata") {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestImportBoundaries(t *testing.T) {
	g := load(t)
	// A guard that sees nothing passes silently: make sure each rule's scope is there.
	for _, p := range []string{"cmd/envd", "internal/envd", "internal/server/api", "internal/agent", "internal/pgtest"} {
		if _, ok := g[p]; !ok {
			t.Fatalf("go list found no %s: the rules below speak of a layout that moved", p)
		}
	}
	for _, v := range violations(g) {
		t.Error(v)
	}
}

// The rules themselves, on a made-up graph: each kind of violation is caught, with its
// chain when it is indirect, and what is allowed stays allowed.
func TestViolationsOfAMadeUpGraph(t *testing.T) {
	g := graph{
		"cmd/envd":                   {"fmt", "internal/envd", "internal/version", "internal/ident"},
		"internal/envd":              {"gen/envd/process", "internal/config", "internal/envd/envdtest"},
		"internal/envd/envdtest":     {"testing", "internal/agent"},
		"gen/envd/process":           nil,
		"internal/config":            {"internal/hostproto"},
		"internal/version":           nil,
		"internal/ident":             nil,
		"internal/hostproto":         {"internal/netslot"},
		"internal/netslot":           nil,
		"internal/agent":             {"internal/netslot", "testing"},
		"internal/server/api":        {"internal/hostproto", "internal/server/servertest"},
		"internal/server/servertest": {"internal/agent"},
		"internal/pgtest":            {"testing"},
		"test/e2e":                   {"internal/pgtest", "internal/agent"},
	}
	want := []string{
		"cmd/envd imports internal/ident (the guest daemon must not import host code)",
		"internal/agent imports testing (production code must not import test helpers)",
		"internal/envd imports internal/envd/envdtest (production code must not import test helpers)",
		"internal/envd imports internal/hostproto via internal/config (the guest daemon must not import host code)",
		"internal/server/api imports internal/netslot via internal/hostproto (the control plane must not import host-agent code)",
		"internal/server/api imports internal/server/servertest (production code must not import test helpers)",
	}
	if got := violations(g); !slices.Equal(got, want) {
		t.Errorf("violations:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
