package core_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/wrennhq/wrenn/internal/server/core"
)

func TestDatabaseDown(t *testing.T) {
	// A real failed connect: nothing listens on this socket.
	_, connErr := pgx.Connect(context.Background(), "host="+t.TempDir()+" user=nobody dbname=none connect_timeout=2")
	if connErr == nil {
		t.Fatal("connected to nothing")
	}
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"connect refused", fmt.Errorf("get sandbox: %w", connErr), true},
		{"admin shutdown", fmt.Errorf("record: %w", &pgconn.PgError{Code: "57P01"}), true},
		{"cannot connect now", &pgconn.PgError{Code: "57P03"}, true},
		{"unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"no rows", pgx.ErrNoRows, false},
		{"not found", core.ErrNotFound, false},
		{"other", errors.New("boom"), false},
	} {
		if got := core.DatabaseDown(c.err); got != c.want {
			t.Errorf("%s (%v): DatabaseDown = %v, want %v", c.name, c.err, got, c.want)
		}
		// After a host acted, an outage is not "try again": the work is done.
		err := core.Unrecorded(c.err, "sandbox sb1 was created on its host")
		if status, _, _ := core.Classify(err); c.want != (status == 500 && errors.Is(err, core.ErrUnrecorded)) {
			t.Errorf("%s: Unrecorded = %v (status %d)", c.name, err, status)
		}
	}
	if core.Unrecorded(nil, "x") != nil {
		t.Error("Unrecorded(nil) is not nil")
	}
}
