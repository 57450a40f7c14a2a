// Package pgtest runs a real, private PostgreSQL server for a test binary: a cluster
// made with the system's initdb in a temp dir, owned by the postgres OS user (initdb
// refuses root), listening only on a unix socket in that dir — no TCP port, so it never
// meets the distro's server on 5432 or another test run. Each test gets a database of
// its own.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wrennhq/wrenn/internal/testutil"
)

// server is the running cluster of this test binary ("" dir = none).
var server struct {
	dir     string // holds data/ and the socket
	skip    string // why there is none
	counter atomic.Int64
}

// Run starts the server, runs the tests and stops it; call it from TestMain with its
// *testing.M (or a runner wrapping it, such as redistest.Around(m)).
func Run(m interface{ Run() int }) int {
	if err := start(); err != nil {
		server.skip = err.Error()
	}
	code := m.Run()
	stop()
	return code
}

func binDir() (string, error) {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		return "", fmt.Errorf("PostgreSQL server binaries not found (apt-get install postgresql)")
	}
	sort.Slice(matches, func(i, j int) bool { return version(matches[i]) < version(matches[j]) })
	return filepath.Dir(matches[len(matches)-1]), nil
}

func version(initdb string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return v
}

func start() error {
	if msg := testutil.NotRoot("the test PostgreSQL runs as the postgres user, and switching to it takes root"); msg != "" {
		return errors.New(msg)
	}
	bin, err := binDir()
	if err != nil {
		return err
	}
	pg, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("no postgres user: %w", err)
	}
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	reapOrphans()
	dir, err := os.MkdirTemp("", "wrenn-pg-")
	if err != nil {
		return err
	}
	// Whose cluster this is: one whose test binary died without stopping it (killed,
	// timed out) is stopped by the next run's reapOrphans.
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return err
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		os.RemoveAll(dir)
		return err
	}
	as := func(name string, args ...string) error {
		cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(bin, name)}, args...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v\n%s", name, err, out)
		}
		return nil
	}
	data := filepath.Join(dir, "data")
	if err := as("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"); err != nil {
		os.RemoveAll(dir)
		return err
	}
	if err := pgCtl(dir, "start", startArgs(dir)...); err != nil {
		os.RemoveAll(dir)
		return err
	}
	server.dir = dir
	return nil
}

// ownerFile, in a cluster's dir, holds the pid of the test binary that made it.
const ownerFile = "owner.pid"

// reapOrphans stops and removes the clusters of test binaries that no longer run: pg_ctl
// starts the server as a daemon, which outlives a binary that is killed.
func reapOrphans() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "wrenn-pg-*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // made by an older version, or being made
		}
		if pid, err := strconv.Atoi(string(b)); err != nil || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue // its binary still runs (or cannot be told)
		}
		_ = pgCtl(dir, "stop", "-m", "immediate", "-w")
		os.RemoveAll(dir)
	}
}

// startArgs are pg_ctl's arguments that start the cluster in dir.
func startArgs(dir string) []string {
	// Durability settings off: test data is thrown away, and fsync is most of the cost.
	opts := fmt.Sprintf("-k %s -c listen_addresses= -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", dir)
	return []string{"-w", "-t", "60", "-l", filepath.Join(dir, "log"), "-o", opts}
}

// pgCtl runs `pg_ctl cmd -D dir/data args…` as the postgres user.
func pgCtl(dir, cmd string, args ...string) error {
	bin, err := binDir()
	if err != nil {
		return err
	}
	c := exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(bin, "pg_ctl"), cmd, "-D", filepath.Join(dir, "data")}, args...)...)
	c.Dir = dir
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl %s: %v\n%s", cmd, err, out)
	}
	return nil
}

// Outage stops the test server (a fast shutdown: every connection is cut, what was
// committed is kept) and returns a function that starts it again on the same data
// and socket, for tests of what survives PostgreSQL going away. Clients must
// reconnect. Nothing else may use the server meanwhile.
func Outage(t testing.TB) (restore func()) {
	t.Helper()
	if server.dir == "" {
		t.Skipf("no test PostgreSQL: %s", server.skip)
	}
	if err := pgCtl(server.dir, "stop", "-m", "fast", "-w"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	restore = func() {
		once.Do(func() {
			if err := pgCtl(server.dir, "start", startArgs(server.dir)...); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(restore) // a test that fails before it restores leaves the server up for the next
	return restore
}

func stop() {
	if server.dir == "" {
		return
	}
	_ = pgCtl(server.dir, "stop", "-m", "immediate", "-w")
	os.RemoveAll(server.dir)
}

// dsn of a database on the test server.
func dsn(db string) string {
	return fmt.Sprintf("host=%s port=5432 user=postgres dbname=%s sslmode=disable", server.dir, db)
}

// NewDB creates an empty database for one test and returns its DSN; it is dropped when
// the test ends. Without a server (not root, no PostgreSQL) the test is skipped with
// the reason.
func NewDB(t testing.TB) string {
	t.Helper()
	if server.dir == "" {
		if server.skip == "" {
			server.skip = "pgtest.Run was not called from TestMain"
		}
		t.Skip("no test PostgreSQL: " + server.skip)
	}
	name := fmt.Sprintf("t%d_%d", os.Getpid(), server.counter.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn("postgres"))
	if err != nil {
		t.Fatalf("connect to the test server: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, dsn("postgres")); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
			c.Close(ctx)
		}
	})
	return dsn(name)
}

// Log returns the server's log, for failure messages.
func Log() string {
	b, _ := os.ReadFile(filepath.Join(server.dir, "log"))
	return strings.TrimSpace(string(b))
}
