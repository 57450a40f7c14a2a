// Command wrenn is Wrenn's single binary: the control plane (`wrenn server`), the host
// agent (`wrenn agent`) and the CLI that drives them. Commands are thin: they parse
// their flags and call into internal/ and pkg/client.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, newOSApp(), os.Args[1:])
	stop()
	os.Exit(code)
}
