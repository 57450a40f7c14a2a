// Package secretscan finds keys, tokens and passwords in logs: the shapes of Wrenn's
// credentials, long random values under a credential's name, and the literal
// passwords and secrets of the test sources. cmd/secretscan runs it over a whole
// make test run (scripts/test-all.sh).
package secretscan

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// A Finding is one secret in one line of a log. Masked is what may be printed.
type Finding struct {
	File   string
	Line   int
	Kind   string
	Masked string
}

func (f Finding) String() string {
	return fmt.Sprintf("%s:%d: %s: %s", f.File, f.Line, f.Kind, f.Masked)
}

// A pattern finds one kind of secret; group is the submatch that is the secret itself
// (0: the whole match), keep filters out values that only look like one.
type pattern struct {
	kind  string
	re    *regexp.Regexp
	group int
	keep  func(v string) bool
}

// patterns are the shapes of Wrenn's credentials (internal/server/auth, internal/agent)
// and the names under which any credential travels. Each requires the full length a
// credential has: a display prefix (auth.DisplayPrefixLen, "wrn_0123ab") is no secret,
// and hex of other lengths (SHA-256 of files, git commits, sandbox ids) is not one.
var patterns = []pattern{{
	// auth.NewAPIKey: "wrn_" + 32 hex; auth.E2BForm writes the same secret "e2b_" + 32 hex.
	kind: "API key",
	re:   regexp.MustCompile(`\b(?:wrn|e2b)_[0-9a-f]{32}\b`),
}, {
	// auth.NewOpaqueToken: host registration (wrh_), refresh (wrr_) and host secrets
	// (wrs_), sandbox traffic tokens (wrt_): prefix + 64 hex.
	kind: "opaque token (wrh_/wrr_/wrs_/wrt_)",
	re:   regexp.MustCompile(`\bwr[hrst]_[0-9a-f]{64}\b`),
}, {
	// auth.Tokens.Issue/IssueHost: HS256 JWTs, header and claims both JSON objects.
	kind: "JWT",
	re:   regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{16,}`),
}, {
	// The agent's own envd access token, randomHex(24) in internal/agent/create.go: 48
	// hex, a length no common digest has (SHA-1 40, SHA-256 64).
	kind: "envd access token (48 hex)",
	re:   regexp.MustCompile(`\b[0-9a-f]{48}\b`),
}, {
	// envd's signed file URLs (files.Signature): "v1_" + unpadded base64 of a SHA-256, 43
	// characters, longer where a URL percent-encodes + and /.
	kind: "envd URL signature",
	re:   regexp.MustCompile(`\bv1_[A-Za-z0-9+/%]{43,}`),
}, {
	// GitHub's own tokens (an OAuth user token the sign-in exchanges a code for).
	kind: "GitHub token",
	re:   regexp.MustCompile(`\bgh[opsur]_[A-Za-z0-9]{36,}\b`),
}, {
	// A password in a URL (database DSNs).
	kind:  "password in a URL",
	re:    regexp.MustCompile(`\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@"']+:([^@\s/"']{3,})@`),
	group: 1,
	keep:  func(v string) bool { return v != "****" && v != "xxxxx" && !strings.HasPrefix(v, "$") },
}, {
	// What has no shape of its own (the server's envd tokens are HMAC-SHA256 hex, like any
	// digest; session secrets, CSRF tokens, the record key, OAuth client secrets): a value
	// under a name a credential travels by, in a header, a slog attribute, JSON or an
	// environment variable. The value must look random (has a digit, is long), so prose
	// such as "token=missing" or a setting's name passes.
	kind: "credential under a secret's name",
	re: regexp.MustCompile(`(?i)(?:x-access-token|e2b-traffic-access-token|x-api-key|x-csrf-token|authorization|` +
		`access[_-]?token|refresh[_-]?token|registration[_-]?token|traffic[_-]?token|host[_-]?secret|` +
		`client[_-]?secret|session[_-]?secret|wrenn_session|wrenn_csrf|csrf[_-]?token|record[_-]?key|seal[_-]?key|` +
		`private[_-]?key|api[_-]?key|signature|password|passwd|secret|token)` +
		`\\?["']?\s*[:=]\s*\[?\\?["']?(?:(?:bearer|basic)\s+)?([A-Za-z0-9_\-+/=.~]{16,})`),
	group: 1,
	keep:  randomLooking,
}}

// randomLooking: a credential has letters and digits and is no path, version or name.
func randomLooking(v string) bool {
	v = strings.TrimRight(v, ".=")
	if len(v) < 16 || strings.HasPrefix(v, "/") || strings.HasPrefix(v, "./") {
		return false
	}
	var digits, letters int
	for _, r := range v {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z':
			letters++
		}
	}
	return digits > 0 && letters > 0 && digits+letters >= 16
}

// A Scanner finds secrets by pattern and, exactly, the passwords and secrets the tests
// use (Literals).
type Scanner struct {
	Literals map[string]string // literal -> where it was found (file:line)
}

// Line returns the secrets in one line; file and n only label them.
func (s *Scanner) Line(file string, n int, line string) []Finding {
	var out []Finding
	var spans [][2]int
	overlaps := func(a, b int) bool {
		for _, sp := range spans {
			if a < sp[1] && sp[0] < b {
				return true
			}
		}
		return false
	}
	add := func(kind, v string, a, b int) {
		if overlaps(a, b) {
			return
		}
		spans = append(spans, [2]int{a, b})
		out = append(out, Finding{File: file, Line: n, Kind: kind, Masked: Mask(v)})
	}
	for _, lit := range s.sortedLiterals() {
		for off := 0; ; {
			i := strings.Index(line[off:], lit)
			if i < 0 {
				break
			}
			add("password or secret the tests use (set at "+s.Literals[lit]+")", lit, off+i, off+i+len(lit))
			off += i + len(lit)
		}
	}
	for _, p := range patterns {
		for _, m := range p.re.FindAllStringSubmatchIndex(line, -1) {
			a, b := m[2*p.group], m[2*p.group+1]
			v := line[a:b]
			if p.keep != nil && !p.keep(v) {
				continue
			}
			add(p.kind, v, a, b)
		}
	}
	return out
}

func (s *Scanner) sortedLiterals() []string {
	lits := make([]string, 0, len(s.Literals))
	for l := range s.Literals {
		lits = append(lits, l)
	}
	// Longest first, so a literal inside a longer one is reported once.
	slices.SortFunc(lits, func(a, b string) int { return len(b) - len(a) })
	return lits
}

// Mask shows at most an eighth of v (no more than 4 characters) and its length: enough
// to tell the kind (wrn_, eyJh), never enough to use it.
func Mask(v string) string {
	keep := min(len(v)/8, 4)
	return fmt.Sprintf("%s… (%d characters, masked)", v[:keep], len(v))
}

// Reader scans r, a log named file.
func (s *Scanner) Reader(file string, r io.Reader) ([]Finding, int, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	var out []Finding
	n := 0
	for {
		line, err := br.ReadString('\n')
		if len(line) > 0 {
			n++
			out = append(out, s.Line(file, n, line)...)
		}
		if err == io.EOF {
			return out, n, nil
		}
		if err != nil {
			return out, n, err
		}
	}
}

// Path scans a file, or every text file under a directory (binary files, such as
// screenshots, are skipped: a NUL in their first 8 KiB).
func (s *Scanner) Path(path string) (findings []Finding, files, lines int, err error) {
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		head := make([]byte, 8<<10)
		k, _ := io.ReadFull(f, head)
		if bytes.IndexByte(head[:k], 0) >= 0 {
			return nil
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		fs, n, err := s.Reader(p, f)
		findings = append(findings, fs...)
		files++
		lines += n
		return err
	})
	return findings, files, lines, err
}

// Where the tests' passwords and secrets are written: a string literal right after a
// name with password/passwd/secret in it (Go, JavaScript, JSON in a Go string), and
// the value of a WRENN_…SECRET/TOKEN/PASSWORD variable written inside a literal.
var (
	literalAfterName = regexp.MustCompile("(?i)(?:password|passwd|secret)\\w*\\\\?[\"'`]?\\s*(?::=|=|:|,)\\s*[\"'`]([^\"'`\\n\\\\]{8,})[\"'`]")
	literalInEnv     = regexp.MustCompile("\\bWRENN_\\w*(?:PASSWORD|SECRET|TOKEN)\\w*=([^\"'`\\s$]{8,})")
	// A name that is an environment variable, a placeholder or a path, not a secret.
	notSecret = regexp.MustCompile(`^[A-Z0-9_]+$|%[sdvq]|\$\{|^<.*>$|^\.{0,2}/`)
)

// testSource reports whether a file under root is test code whose literals count.
func testSource(rel string) bool {
	ext := filepath.Ext(rel)
	if ext != ".go" && ext != ".mjs" && ext != ".js" && ext != ".sh" {
		return false
	}
	if strings.HasSuffix(rel, "_test.go") || strings.HasPrefix(rel, "test/") {
		return true
	}
	// Test helper packages (pgtest, oauthtest, servertest, …), named so by convention
	// (internal/archtest keeps production code from importing them).
	dir := filepath.Base(filepath.Dir(rel))
	return strings.HasSuffix(dir, "test") || dir == "testutil"
}

// TestLiterals collects the passwords and secrets written in the test sources under
// root, at scan time, so a new test's password is known without editing the scanner.
func TestLiterals(root string) (map[string]string, error) {
	lits := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			switch d.Name() {
			case ".git", "node_modules", "gen", "build", ".svelte-kit", "testdata":
				return filepath.SkipDir
			}
			// The scanner's own test plants secrets on purpose.
			if rel == filepath.Join("internal", "secretscan") {
				return filepath.SkipDir
			}
			return nil
		}
		if !testSource(filepath.ToSlash(rel)) {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, re := range []*regexp.Regexp{literalAfterName, literalInEnv} {
				for _, m := range re.FindAllStringSubmatch(line, -1) {
					v := m[1]
					if strings.TrimSpace(v) != v || notSecret.MatchString(v) {
						continue
					}
					if _, ok := lits[v]; !ok {
						lits[v] = fmt.Sprintf("%s:%d", filepath.ToSlash(rel), i+1)
					}
				}
			}
		}
		return nil
	})
	return lits, err
}
