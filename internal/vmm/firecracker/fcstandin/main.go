package fcstandin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Environment variables and flags that configure a stand-in process. A driver usually
// starts Firecracker with an empty environment, so WriteLauncher bakes them into a
// script that the driver runs as its firecracker binary.
const (
	EnvStandin = "WRENN_FC_STANDIN"         // "1": the test binary should run Main
	EnvSpec    = "WRENN_FC_STANDIN_SPEC"    // path of firecracker-swagger.yaml
	EnvJournal = "WRENN_FC_STANDIN_JOURNAL" // path of the journal file
)

// JournalName is the journal's file name beside the API socket when neither
// --standin-journal nor WRENN_FC_STANDIN_JOURNAL names one.
const JournalName = "standin-journal.jsonl"

// FailIDPrefix makes a stand-in whose --id starts with it exit at once with an error,
// as a VMM that dies while starting (a failure-path test's VM).
const FailIDPrefix = "standin-fail-"

// DefaultSpecPath is the Swagger document Main uses when neither --standin-spec nor
// WRENN_FC_STANDIN_SPEC names one; a test may set it before calling Main.
var DefaultSpecPath string

// IsStandin reports whether this process was started to be a stand-in (by a launcher
// from WriteLauncher), so a test binary's TestMain can do
//
//	if fcstandin.IsStandin() { os.Exit(fcstandin.Main(os.Args[1:])) }
func IsStandin() bool { return os.Getenv(EnvStandin) == "1" }

// firecracker's flags that take no value; every other unknown flag is assumed to take
// one unless the next argument is itself a flag.
var boolFlags = map[string]bool{
	"boot-timer": true, "no-api": true, "no-seccomp": true, "enable-pci": true, "help": true,
	"show-level": true, "show-log-origin": true, "snapshot-version": true, "version": true,
}

// Main runs a stand-in process with Firecracker's command line (without the program
// name) and returns its exit status. It serves the API on --api-sock (which must not
// exist yet) until killed by a signal (SIGTERM, SIGINT and SIGKILL keep their default
// action, as in Firecracker), and returns 0 once SendCtrlAltDel reached a running guest
// and 1 after a failed snapshot load, as Firecracker exits then. Stand-in flags:
// --standin-spec PATH and --standin-journal PATH (else the environment, else
// DefaultSpecPath and <dir of api-sock>/standin-journal.jsonl).
func Main(args []string) int {
	return run(args, os.Stdout, os.Stderr)
}

func run(args []string, stdout, stderr io.Writer) int {
	flags := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			fmt.Fprintf(stderr, "firecracker (stand-in): unexpected argument %q\n", a)
			return 1
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !hasVal && !boolFlags[name] && i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
			val, i = args[i+1], i+1
		}
		flags[name] = val
	}
	if _, ok := flags["version"]; ok {
		fmt.Fprintf(stdout, "Firecracker v%s\n", Version)
		return 0
	}
	if _, ok := flags["snapshot-version"]; ok {
		fmt.Fprintf(stdout, "v%s\n", SnapshotVersion)
		return 0
	}
	for _, unsupported := range []string{"no-api", "config-file"} {
		if _, ok := flags[unsupported]; ok {
			fmt.Fprintf(stderr, "firecracker (stand-in): --%s is not supported by the spec-checking stand-in\n", unsupported)
			return 1
		}
	}
	sock := flags["api-sock"]
	if sock == "" {
		fmt.Fprintln(stderr, "firecracker (stand-in): --api-sock PATH is required")
		return 1
	}
	specPath := firstNonEmpty(flags["standin-spec"], os.Getenv(EnvSpec), DefaultSpecPath)
	journalPath := firstNonEmpty(flags["standin-journal"], os.Getenv(EnvJournal), filepath.Join(filepath.Dir(sock), JournalName))
	if specPath == "" {
		fmt.Fprintf(stderr, "firecracker (stand-in): no API spec: set --standin-spec, %s or DefaultSpecPath\n", EnvSpec)
		return 1
	}
	spec, err := LoadSpec(specPath)
	if err != nil {
		fmt.Fprintf(stderr, "firecracker (stand-in): %v\n", err)
		return 1
	}
	id := flags["id"]
	if id == "" {
		id = "anonymous-instance"
	}
	if strings.HasPrefix(id, FailIDPrefix) {
		// A VMM that starts and dies before its API is up, for failure-path tests.
		fmt.Fprintf(stderr, "firecracker (stand-in): told to fail at start by its id %q\n", id)
		return 1
	}
	if _, err := os.Lstat(sock); err == nil {
		fmt.Fprintf(stderr, "firecracker (stand-in): failed to open the API socket at %s: Address in use (the path already exists)\n", sock)
		return 1
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintf(stderr, "firecracker (stand-in): failed to open the API socket at %s: %v\n", sock, err)
		return 1
	}
	srv, err := NewServer(spec, id, journalPath)
	if err != nil {
		ln.Close()
		fmt.Fprintf(stderr, "firecracker (stand-in): %v\n", err)
		return 1
	}
	defer srv.Close()
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	select {
	case err := <-served:
		fmt.Fprintf(stderr, "firecracker (stand-in): API server: %v\n", err)
		return 1
	case <-srv.Exit():
	}
	// Let the answer to the request that ended the VM go out, then stop.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := hs.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		fmt.Fprintf(stderr, "firecracker (stand-in): shutdown: %v\n", err)
	}
	return srv.ExitCode()
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// WriteLauncher writes dir/firecracker, an executable /bin/sh script that runs
// testBinary as a stand-in with the spec at specPath and Firecracker's arguments, and
// returns its path: give it to the driver under test as the Firecracker binary and call
// IsStandin and Main from the test binary's TestMain. The environment is set inside
// the script because drivers start Firecracker with an empty one.
func WriteLauncher(dir, testBinary, specPath string) (string, error) {
	return WriteLauncherWithJournal(dir, testBinary, specPath, "")
}

// WriteLauncherWithJournal is WriteLauncher with every stand-in it starts appending to
// the journal file journalPath ("" for the default beside each API socket).
func WriteLauncherWithJournal(dir, testBinary, specPath, journalPath string) (string, error) {
	abs := func(p string) (string, error) {
		if p == "" {
			return "", nil
		}
		return filepath.Abs(p)
	}
	bin, err := abs(testBinary)
	if err != nil {
		return "", err
	}
	spec, err := abs(specPath)
	if err != nil {
		return "", err
	}
	journal, err := abs(journalPath)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# Firecracker spec-checking stand-in (tests only), written by fcstandin.WriteLauncher.\n")
	fmt.Fprintf(&b, "%s=1\nexport %s\n", EnvStandin, EnvStandin)
	fmt.Fprintf(&b, "%s=%s\nexport %s\n", EnvSpec, shellQuote(spec), EnvSpec)
	if journal != "" {
		fmt.Fprintf(&b, "%s=%s\nexport %s\n", EnvJournal, shellQuote(journal), EnvJournal)
	}
	fmt.Fprintf(&b, "exec %s \"$@\"\n", shellQuote(bin))
	path := filepath.Join(dir, "firecracker")
	if err := os.WriteFile(path, []byte(b.String()), 0o755); err != nil {
		return "", err
	}
	return path, nil
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
