package secretscan

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Planted secrets, one of each kind, in the shapes the product makes them. They are
// built at run time so this file's text holds none whole.
var (
	hex32    = strings.Repeat("0a1b2c3d", 4)
	hex48    = strings.Repeat("9f8e7d6c5b4a", 4)
	hex64    = strings.Repeat("0123456789abcdef", 4)
	apiKey   = "wrn" + "_" + hex32
	e2bKey   = "e2b" + "_" + hex32
	refresh  = "wrr" + "_" + hex64
	hostSec  = "wrs" + "_" + hex64
	regTok   = "wrh" + "_" + hex64
	traffic  = "wrt" + "_" + hex64
	jwt      = "eyJ" + "hbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ" + "zdWIiOiJ1c2VyLTEiLCJpc3MiOiJ3cmVubiJ9.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
	session  = "q1Zr0cVw3nX5yT7uB9pA2sD4fG6hJ8kL0zX2cV4bN6m" // 32 bytes, base64url, as auth.NewSessionSecret
	ghToken  = "gho" + "_" + "16C7e42F292c6912E7710c838347Ae178B4a"
	password = "tr0ub4dor and 3 horses"
)

func scanner() *Scanner {
	return &Scanner{Literals: map[string]string{password: "somewhere_test.go:1"}}
}

func TestFindsEachKind(t *testing.T) {
	cases := []struct{ name, line, kind, secret string }{
		{"api key", `time=… level=INFO msg="key created" key=` + apiKey, "API key", apiKey},
		{"e2b form", `{"apiKey":"` + e2bKey + `"}`, "API key", e2bKey},
		{"refresh token", `refresh_token=` + refresh, "opaque token", refresh},
		{"host secret", `"host_secret": "` + hostSec + `"`, "opaque token", hostSec},
		{"registration token", `wrenn agent --token ` + regTok, "opaque token", regTok},
		{"traffic token", `E2b-Traffic-Access-Token: ` + traffic, "opaque token", traffic},
		{"jwt", `Authorization: Bearer ` + jwt, "JWT", jwt},
		{"agent envd token", `POST /init {"accessToken":"` + hex48 + `"}`, "envd access token", hex48},
		{"server envd token (hmac hex) by name", `X-Access-Token: ` + hex64, "credential under a secret's name", hex64},
		{"envd token in slog", `level=DEBUG msg=init envd_access_token=` + hex64, "credential under a secret's name", hex64},
		{"session cookie", `Cookie: __Host-wrenn_session=` + session, "credential under a secret's name", session},
		{"csrf header", `X-CSRF-Token: ` + session, "credential under a secret's name", session},
		{"record key", `record_key=` + hex64, "credential under a secret's name", hex64},
		{"client secret in env", `WRENN_GITHUB_CLIENT_SECRET=` + session, "credential under a secret's name", session},
		{"envd signed url", `GET /files?path=%2Fhome%2Fuser%2Fa&signature=v1_` + "Q2hlY2sgdGhpcyBzaWduYXR1cmUgZm9yIGVudmQgZmlsZXM%2Bx" + `&signature_expiration=1767225600`, "envd URL signature", "Q2hlY2sgdGhpcyBzaWduYXR1cmUgZm9yIGVudmQgZmlsZXM"},
		{"github token", `token ` + ghToken, "GitHub token", ghToken},
		{"dsn password", `dial postgres://wrenn:s3cr3t-pw@127.0.0.1:5432/wrenn`, "password in a URL", "s3cr3t-pw"},
		{"test password", `signup body {"email":"a@b.c","password":"` + password + `"}`, "password or secret the tests use", password},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := scanner().Line("make-test.log", 7, c.line)
			if len(fs) != 1 {
				t.Fatalf("%d findings, want 1: %v", len(fs), fs)
			}
			f := fs[0]
			if !strings.HasPrefix(f.Kind, c.kind) || f.File != "make-test.log" || f.Line != 7 {
				t.Errorf("finding %v, want kind %q at make-test.log:7", f, c.kind)
			}
			msg := f.String()
			if strings.Contains(msg, c.secret) || strings.Contains(msg, c.secret[len(c.secret)/2:]) {
				t.Errorf("the report shows the secret: %s", msg)
			}
			if !strings.Contains(msg, "masked") {
				t.Errorf("the report does not say it masked: %s", msg)
			}
		})
	}
}

// What the product prints on purpose or what only looks like a secret is no finding.
func TestIgnoresLookAlikes(t *testing.T) {
	for _, line := range []string{
		// Display prefixes (auth.DisplayPrefixLen) in listings and the audit log.
		`level=INFO msg="api key created" prefix=wrn_0a1b2c name=ci`,
		`ID  NAME  PREFIX       CREATED`, `k1  ci    wrn_0a1b2c…  2026-01-01`,
		`{"key_prefix":"wrn_0a1b2c","e2b_key":""}`,
		// Digests, commits, ids.
		`sha256:` + hex64 + `  rootfs.ext4`,
		`base template ` + hex64,
		`commit 5273e74d0e1f0e8ab2b0c8d7a9e4f3c2b1a09876 (HEAD -> main)`,
		`HEAD is now at 5273e74 REST bodies refuse keys`,
		`msg="sandbox created" sandbox=i7k2m9x4q1w8e3r5t6y0 restored=true`,
		`snapshot snap-` + hex32[:24] + ` written`,
		`msg="host registered" host=3f2b8a1c-4d5e-4f60-8a9b-0c1d2e3f4a5b`,
		// Prose and names that mention credentials without one.
		`--- PASS: TestRefreshTokenRotation (0.02s)`,
		`WRENN_JWT_SECRET is required`, `token=missing`, `secret: WRENN_GITHUB_CLIENT_SECRET_FILE`,
		`msg="bad credentials" err="invalid or expired token"`,
		`password: want at least 12 characters`,
		`oauth: the state cookie's signature does not match (it was altered, or made by another server)`,
		`GET /files?path=%2Fa&username=user 401 "missing signature query parameter"`,
		`WRENN_AGENT_SECRET_FILE=/var/lib/wrenn/agent/secret-0123456789`,
		`postgres://postgres@127.0.0.1:5432/wrenn?sslmode=disable`,
		`jwt header only eyJhbGciOiJIUzI1NiJ9`,
	} {
		if fs := scanner().Line("x.log", 1, line); len(fs) != 0 {
			t.Errorf("%q: %v", line, fs)
		}
	}
}

func TestMask(t *testing.T) {
	if got := Mask(apiKey); got != "wrn_… (36 characters, masked)" {
		t.Errorf("Mask(api key) = %q", got)
	}
	if got := Mask("short"); got != "… (5 characters, masked)" {
		t.Errorf("Mask(short) = %q", got)
	}
}

// The tests' passwords come from their sources, so a new one is covered with no edit.
func TestLiteralsFromTestSources(t *testing.T) {
	root := t.TempDir()
	write := func(rel, text string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("internal/x/x_test.go", "const password = \"pw-from-go-test\"\n"+
		"body := `{\"email\":\"a@b.c\",\"password\":\"json in a go string\"}`\n"+
		"env := []string{\"WRENN_JWT_SECRET=jwt-secret-from-env-0123\", \"WRENN_AGENT_SECRET_FILE=/etc/x/secret\"}\n"+
		"cfg := map[string]string{\"WRENN_AGENT_SECRET\": \"map-secret-0123\", \"WRENN_X_SECRET\": \"WRENN_NAME_ONLY\"}\n")
	write("test/web/lib.mjs", "export const password = 'pw from the browser test';\n")
	write("internal/x/pgtest/pg.go", "var Secret = \"helper-secret-000\"\n")
	write("internal/x/x.go", "var password = \"production-not-a-test\"\n")
	write("web/node_modules/y/y.test.js", "password: 'vendored-not-ours'\n")
	lits, err := TestLiterals(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"pw-from-go-test", "json in a go string", "jwt-secret-from-env-0123", "map-secret-0123", "pw from the browser test", "helper-secret-000"} {
		if _, ok := lits[want]; !ok {
			t.Errorf("%q not collected (got %d literals)", want, len(lits))
		}
	}
	for _, not := range []string{"production-not-a-test", "vendored-not-ours", "/etc/x/secret", "WRENN_NAME_ONLY"} {
		if _, ok := lits[not]; ok {
			t.Errorf("%q collected", not)
		}
	}
	if at := lits["pw-from-go-test"]; at != "internal/x/x_test.go:1" {
		t.Errorf("pw-from-go-test at %q", at)
	}
}

func TestPathSkipsBinaryAndReportsLines(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "run.log"), []byte("ok\nnothing\nkey="+apiKey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "shot.png"), append([]byte("\x89PNG\x00\x00"), apiKey...), 0o644); err != nil {
		t.Fatal(err)
	}
	fs, files, lines, err := scanner().Path(dir)
	if err != nil {
		t.Fatal(err)
	}
	if files != 1 || lines != 3 || len(fs) != 1 || fs[0].Line != 3 || fs[0].File != filepath.Join(dir, "run.log") {
		t.Errorf("files %d lines %d findings %v", files, lines, fs)
	}
}
