// Package version carries the build version of Wrenn's binaries, set by the linker.
package version

// Version is overridden at build time with -ldflags "-X .../internal/version.Version=…".
var Version = "dev"
