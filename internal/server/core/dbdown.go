package core

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// DatabaseDownMessage is what a request that failed because PostgreSQL was out of
// reach is told: nothing internal, and that trying again is the remedy.
const DatabaseDownMessage = "the control plane's database is unavailable; try again shortly"

// DatabaseDown reports whether err is PostgreSQL being out of reach (not answering,
// shutting down, starting up) rather than a fault of the request: the caller may try
// again (503), and the host monitor settles what the outage left half-recorded.
func DatabaseDown(err error) bool {
	var connect *pgconn.ConnectError
	if errors.As(err, &connect) {
		return true
	}
	// Class 57P, operator intervention: admin_shutdown, crash_shutdown,
	// cannot_connect_now (the server is starting or stopping).
	var pg *pgconn.PgError
	return errors.As(err, &pg) && strings.HasPrefix(pg.Code, "57P")
}
