// Package images holds the guest-side files Wrenn bakes into every guest image: the
// initramfs init script, wrenn-init (the first process tini starts in the guest) and the
// chrony configuration. They live as plain files so they can be read and reviewed as
// shell, and are embedded here so the wrenn binary carries them to any host.
package images

import (
	"embed"
	"io/fs"
)

// files is the embedded tree; go:embed only works on package-level variables.
//
//go:embed initramfs/init wrenn-init chrony.conf
var files embed.FS

// Files returns the embedded guest files, addressed by their path below images/
// (for example "initramfs/init" or "wrenn-init").
func Files() fs.FS { return files }

// Read returns one embedded guest file.
func Read(name string) ([]byte, error) { return fs.ReadFile(files, name) }
