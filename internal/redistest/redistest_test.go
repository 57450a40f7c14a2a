package redistest

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) { os.Exit(Run(m)) }

func TestSetGetTTL(t *testing.T) {
	c := NewClient(t)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, "k").Result()
	if err != nil || got != "v" {
		t.Fatalf("GET k = %q, %v; want v", got, err)
	}
	ttl, err := c.TTL(ctx, "k").Result()
	if err != nil || ttl <= 0 || ttl > time.Minute {
		t.Fatalf("TTL k = %v, %v; want (0, 1m]", ttl, err)
	}
	// A key with a short TTL is gone after it.
	if err := c.Set(ctx, "short", "x", 100*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Exists(ctx, "short").Val() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("key with a 100ms TTL still there after 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Two tests holding clients at once get different databases: what one writes, the
// other does not see.
func TestSeparateDatabases(t *testing.T) {
	ctx := context.Background()
	a, b := NewClient(t), NewClient(t)
	if a.Options().DB == b.Options().DB {
		t.Fatalf("both clients got db %d", a.Options().DB)
	}
	if err := a.Set(ctx, "owner", "a", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n := b.Exists(ctx, "owner").Val(); n != 0 {
		t.Fatalf("db %d sees the key written to db %d", b.Options().DB, a.Options().DB)
	}
}

// Parallel tests each get a database of their own.
func TestParallelTests(t *testing.T) {
	var (
		mu  sync.Mutex
		dbs = map[int]string{}
	)
	for _, name := range []string{"a", "b", "c"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := NewClient(t)
			ctx := context.Background()
			db := c.Options().DB
			mu.Lock()
			if other, ok := dbs[db]; ok {
				t.Errorf("parallel tests %s and %s both got db %d", other, name, db)
			}
			dbs[db] = name
			mu.Unlock()
			if err := c.Set(ctx, "owner", name, 0).Err(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
			if got := c.Get(ctx, "owner").Val(); got != name {
				t.Errorf("db %d: owner = %q, want %q", db, got, name)
			}
			if n := c.DBSize(ctx).Val(); n != 1 {
				t.Errorf("db %d has %d keys, want 1", db, n)
			}
		})
	}
}

// A database is flushed when its test ends.
func TestFlushedOnCleanup(t *testing.T) {
	var db int
	t.Run("write", func(t *testing.T) {
		c := NewClient(t)
		db = c.Options().DB
		if err := c.Set(context.Background(), "left", "behind", 0).Err(); err != nil {
			t.Fatal(err)
		}
	})
	raw := redis.NewClient(&redis.Options{Network: "unix", Addr: Socket(), DB: db})
	defer raw.Close()
	if n, err := raw.DBSize(context.Background()).Result(); err != nil || n != 0 {
		t.Fatalf("db %d after its test: %d keys, %v; want 0", db, n, err)
	}
}

// During an Outage the server does not answer; after it, the same client works again
// on an empty server.
func TestOutage(t *testing.T) {
	c := NewClient(t)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	restore := Outage(t)
	if err := c.Ping(ctx).Err(); err == nil {
		t.Error("the server answered during the outage")
	}
	restore()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
	if n := c.Exists(ctx, "k").Val(); n != 0 {
		t.Error("a key outlived the outage: it should be a new, empty server")
	}
}
