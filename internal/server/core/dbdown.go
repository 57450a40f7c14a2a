package core

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// DatabaseDownMessage is what a request that failed because PostgreSQL was out of
// reach before anything was done is told: nothing internal, and that trying again is
// the remedy. (One that failed after a host acted is ErrUnrecorded instead.)
const DatabaseDownMessage = "the control plane's database is unavailable; try again shortly"

// DatabaseDown reports whether err is PostgreSQL being out of reach (not answering,
// shutting down, starting up) rather than a fault of the request: the caller may try
// again (503), and the host monitor settles what the outage left half-recorded.
func DatabaseDown(err error) bool {
	var connect *pgconn.ConnectError
	if errors.As(err, &connect) || pgconn.SafeToRetry(err) {
		return true // not reached, or failed before anything was sent ("conn closed")
	}
	// Class 57P, operator intervention: admin_shutdown, crash_shutdown,
	// cannot_connect_now (the server is starting or stopping).
	var pg *pgconn.PgError
	return errors.As(err, &pg) && strings.HasPrefix(pg.Code, "57P")
}

// Unrecorded is err from recording what a host already did: with the database out
// of reach it becomes ErrUnrecorded saying what was done (done: "sandbox X was
// created on its host"), so that the caller does not do it twice; the host monitor
// records it once the database is back. Other errors pass as they are.
func Unrecorded(err error, done string) error {
	if err == nil || !DatabaseDown(err) {
		return err
	}
	return fmt.Errorf("%w: %s, but the control plane's database is unavailable; it is recorded once the database is back, so do not repeat the request", ErrUnrecorded, done)
}
