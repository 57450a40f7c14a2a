// Package web holds the dashboard's built files (web/build, from `make build`'s vite
// build of the SvelteKit app beside this file), embedded in the wrenn binary. A clone
// that never ran npm has only build/.gitkeep here: it still compiles, and the server
// says the dashboard is not built (internal/server/dashboard).
package web

import (
	"embed"
	"io/fs"
)

//go:embed all:build
var build embed.FS

// Build returns the built dashboard's files, rooted at the build directory (index.html,
// _app/...).
func Build() fs.FS {
	sub, err := fs.Sub(build, "build")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	return sub
}
