// Package migrations embeds the control plane's goose SQL migrations, applied by
// `wrenn server` at start.
package migrations

import "embed"

// FS holds the *.sql migrations, named NNNNN_what.sql.
//
//go:embed *.sql
var FS embed.FS
