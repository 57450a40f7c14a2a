package config

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite README.md's settings section")

const readme = "../../README.md"

// README.md's settings section is Markdown(); -update (go generate) rewrites it.
func TestREADME(t *testing.T) {
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i, j := strings.Index(doc, DocBegin), strings.Index(doc, DocEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the settings markers %q … %q", DocBegin, DocEnd)
	}
	want := doc[:i+len(DocBegin)] + "\n" + Markdown() + doc[j:]
	if doc == want {
		return
	}
	if *update {
		if err := os.WriteFile(readme, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README.md's settings section is out of date: run go generate ./internal/config")
}

var wrennVar = regexp.MustCompile(`\bWRENN_[A-Z0-9_]*[A-Z0-9]\b`)

// Every WRENN_ variable the programs' code names is declared here, and every one the
// scripts, Makefile and deploy files use is in README.md.
func TestEveryVariableDeclared(t *testing.T) {
	// The tests' own variables (test helper packages are not _test.go files).
	declared := map[string]bool{"WRENN_TEST_DIR": true, "WRENN_ENVD_BIN": true, "WRENN_TEST_CACHE_DIR": true,
		"WRENN_TEST_DOMAIN": true, // internal/sdktest: the e2b SDK tests' name resolution
		// uffdtest's child process and the Firecracker spec-checking stand-in
		"WRENN_UFFD_CHILD": true, "WRENN_FC_STANDIN": true, "WRENN_FC_STANDIN_SPEC": true, "WRENN_FC_STANDIN_JOURNAL": true}
	for _, tb := range tables() {
		for _, s := range tb.settings {
			declared[s.Env] = true
		}
	}
	root := "../.."
	for _, dir := range []string{"cmd", "internal", "pkg"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			seen := map[string]bool{}
			for _, v := range wrennVar.FindAllString(string(b), -1) {
				if !declared[v] && !seen[v] {
					t.Errorf("%s names %s, which internal/config does not declare", p, v)
				}
				seen[v] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	documented := string(b)
	files, _ := filepath.Glob(filepath.Join(root, "scripts", "*.sh"))
	deploy, _ := filepath.Glob(filepath.Join(root, "deploy", "*"))
	files = append(append(files, deploy...), filepath.Join(root, "Makefile"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, v := range wrennVar.FindAllString(string(b), -1) {
			if !seen[v] && !strings.Contains(documented, "`"+v+"`") {
				t.Errorf("%s uses %s, which README.md does not mention", p, v)
			}
			seen[v] = true
		}
	}
}

// deploy/server.env.example is a valid configuration.
func TestDeployExample(t *testing.T) {
	b, err := os.ReadFile("../../deploy/server.env.example")
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimPrefix(strings.TrimSpace(line), "#")
		if k, v, ok := strings.Cut(line, "="); ok && wrennVar.MatchString(k) && !strings.Contains(k, " ") {
			vars[k] = v
		}
	}
	if len(vars) < 10 {
		t.Fatalf("only %d variables in the example", len(vars))
	}
	if _, err := LoadServer(nil, func(k string) string { return vars[k] }); err != nil {
		t.Error(err)
	}
}
