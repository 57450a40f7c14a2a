package pgtest

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

func TestMain(m *testing.M) { os.Exit(Run(m)) }

// During an Outage the database does not answer; after it, a pool reconnects and finds
// what was committed before.
func TestOutage(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before')`); err != nil {
		t.Fatal(err)
	}
	restore := Outage(t)
	if _, err := pool.Exec(ctx, `SELECT 1`); err == nil {
		t.Error("the database answered during the outage")
	}
	restore()
	var v string
	if err := pool.QueryRow(ctx, `SELECT v FROM kept`).Scan(&v); err != nil || v != "before" {
		t.Fatalf("after the outage: %q, %v", v, err)
	}
}
