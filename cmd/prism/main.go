// Command prism trains and analyses reward models for RLHF; see
// `prism --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"prism/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
