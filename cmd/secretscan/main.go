// Command secretscan fails when a log holds a key, token or password: make test runs
// it over the whole run's output and the logs the tests leave (scripts/test-all.sh).
//
//	go run ./cmd/secretscan [-src DIR] PATH...
//
// A PATH is a log file or a directory of them (binary files are skipped). What counts
// as a secret: internal/secretscan's shapes of Wrenn's credentials, any long random value under
// a credential's name, and every password or secret literal in the test sources under
// -src (collected at each run, so a new test's password is covered without an edit
// here). Findings are printed file:line, kind and the secret masked; the exit status
// is 1 when there is any, 2 when a log could not be read.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/wrennhq/wrenn/internal/secretscan"
)

// maxPrinted bounds the report: a leak tends to repeat on every request.
const maxPrinted = 50

func main() {
	src := flag.String("src", ".", "the repository whose test sources name the tests' passwords and secrets")
	listLiterals := flag.Bool("list-literals", false, "print the literals taken from the test sources (masked) and where")
	flag.Parse()
	lits, err := secretscan.TestLiterals(*src)
	if err != nil {
		fmt.Fprintln(os.Stderr, "secret scan: read the test sources:", err)
		os.Exit(2)
	}
	if *listLiterals {
		for l, at := range lits {
			fmt.Printf("%s\t%s\n", at, secretscan.Mask(l))
		}
	}
	s := &secretscan.Scanner{Literals: lits}
	var all []secretscan.Finding
	files, lines := 0, 0
	for _, p := range flag.Args() {
		fs, nf, nl, err := s.Path(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "secret scan:", err)
			os.Exit(2)
		}
		all = append(all, fs...)
		files += nf
		lines += nl
	}
	if len(all) == 0 {
		fmt.Printf("secret scan: no key, token or password in %d log file(s), %d lines\n", files, lines)
		return
	}
	fmt.Fprintf(os.Stderr, "secret scan: FAILED: %d key(s), token(s) or password(s) in the logs (%d file(s), %d lines); mask them where they are logged:\n", len(all), files, lines)
	for i, f := range all {
		if i == maxPrinted {
			fmt.Fprintf(os.Stderr, "  … and %d more\n", len(all)-maxPrinted)
			break
		}
		fmt.Fprintln(os.Stderr, "  "+f.String())
	}
	os.Exit(1)
}
