// Package redistest runs a real, private redis-server for a test binary: one child
// process per binary, listening only on a unix socket in a temp dir (--port 0, so no
// TCP at all and it never meets the distro's server on 6379 or another test run), with
// persistence off. Each test gets a logical database (0..15) of its own, flushed when
// the test ends.
package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// databases is redis-server's default number of logical databases.
const databases = 16

var server struct {
	dir  string // holds the socket and the log ("" = no server)
	skip string // why there is none
	cmd  *exec.Cmd
	done chan struct{}

	mu   sync.Mutex
	free []int // logical databases not in use
	cond *sync.Cond
}

// Run starts the server, runs the tests and stops it; call it from TestMain with its
// *testing.M (or see Around).
func Run(m interface{ Run() int }) int {
	if err := start(); err != nil {
		server.skip = err.Error()
	}
	code := m.Run()
	stop()
	return code
}

// Around returns a runner that runs m with the server up, so test servers nest:
// pgtest.Run(redistest.Around(m)).
func Around(m interface{ Run() int }) interface{ Run() int } {
	return runFunc(func() int { return Run(m) })
}

type runFunc func() int

func (f runFunc) Run() int { return f() }

// Socket is the server's unix socket path ("" without a server).
func Socket() string {
	if server.dir == "" {
		return ""
	}
	return filepath.Join(server.dir, "redis.sock")
}

func start() error {
	dir, err := os.MkdirTemp("", "wrenn-redis-")
	if err != nil {
		return err
	}
	cmd, done, err := launch(dir)
	if err != nil {
		os.RemoveAll(dir)
		return err
	}
	server.dir, server.cmd, server.done = dir, cmd, done
	server.cond = sync.NewCond(&server.mu)
	for i := 0; i < databases; i++ {
		server.free = append(server.free, i)
	}
	return nil
}

// launch starts redis-server on dir's socket and waits until it answers.
func launch(dir string) (*exec.Cmd, chan struct{}, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, nil, fmt.Errorf("redis-server not found (apt-get install redis-server, or scripts/install-deps.sh)")
	}
	sock := filepath.Join(dir, "redis.sock")
	logf, err := os.Create(filepath.Join(dir, "log")) // this run's only, for its errors
	if err != nil {
		return nil, nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin,
		"--port", "0",
		"--unixsocket", sock,
		"--unixsocketperm", "700",
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--databases", fmt.Sprint(databases),
		"--dir", dir,
		"--logfile", "",
	)
	cmd.Dir = dir
	// If the test binary dies without stop (a panic, a -timeout), take the server with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()

	// Wait until it answers on the socket.
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: sock, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return cmd, done, nil
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(dir, "log"))
			return nil, nil, fmt.Errorf("redis-server exited: %s", strings.TrimSpace(string(log)))
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			log, _ := os.ReadFile(filepath.Join(dir, "log"))
			return nil, nil, fmt.Errorf("redis-server did not answer within 15s: %v\n%s", err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Outage kills the test server (SIGKILL: what it held is gone, as after a crash of
// a server without persistence) and returns a function that starts a new one on the
// same socket, for tests of what survives Redis going away. Clients reconnect by
// themselves. Nothing else may use the server meanwhile.
func Outage(t testing.TB) (restore func()) {
	t.Helper()
	if server.dir == "" {
		t.Skipf("no test Redis: %s", server.skip)
	}
	_ = server.cmd.Process.Kill()
	<-server.done
	var once sync.Once
	restore = func() {
		once.Do(func() {
			cmd, done, err := launch(server.dir)
			if err != nil {
				t.Errorf("restart redis: %v", err)
				return
			}
			server.cmd, server.done = cmd, done
		})
	}
	t.Cleanup(restore) // a test that fails before it restores leaves the server up for the next
	return restore
}

func stop() {
	if server.dir == "" {
		return
	}
	_ = server.cmd.Process.Kill()
	<-server.done
	os.RemoveAll(server.dir)
	server.dir = ""
}

// NewClient returns a client on a logical database no other running test uses; the
// database is flushed and handed back, and the client closed, when the test ends.
// With more than 16 tests at once, NewClient waits for one to finish. Without a
// server (redis-server not installed) the test is skipped with the reason.
func NewClient(t testing.TB) *redis.Client {
	t.Helper()
	if server.dir == "" {
		if server.skip == "" {
			server.skip = "redistest.Run was not called from TestMain"
		}
		t.Skip("no test redis-server: " + server.skip)
	}
	server.mu.Lock()
	for len(server.free) == 0 {
		server.cond.Wait()
	}
	db := server.free[0]
	server.free = server.free[1:]
	server.mu.Unlock()

	c := redis.NewClient(&redis.Options{Network: "unix", Addr: Socket(), DB: db})
	release := func() {
		server.mu.Lock()
		server.free = append(server.free, db)
		server.mu.Unlock()
		server.cond.Signal()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A database starts empty, whatever a crashed predecessor left.
	if err := c.FlushDB(ctx).Err(); err != nil {
		c.Close()
		release()
		t.Fatalf("flush test redis db %d: %v", db, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.FlushDB(ctx).Err()
		_ = c.Close()
		release()
	})
	return c
}

// NewURL reserves a logical database like NewClient and returns its URL
// (unix://…?db=N), for a process under test.
func NewURL(t testing.TB) string {
	t.Helper()
	c := NewClient(t)
	return fmt.Sprintf("unix://%s?db=%d", Socket(), c.Options().DB)
}

// Log returns the server's log, for failure messages.
func Log() string {
	if server.dir == "" {
		return ""
	}
	b, _ := os.ReadFile(filepath.Join(server.dir, "log"))
	return strings.TrimSpace(string(b))
}
