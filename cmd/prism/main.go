// Command prism trains and analyses reward models for RLHF; see
// `prism --help`.
package main

import (
	"context"
	"os"
	"os/signal"

	"syscall"

	"prism/internal/cli"
	"prism/internal/torch"
)

// libtorch keeps autograd mode and gotch its last error per OS thread;
// prism drives libtorch from the main goroutine, pinned to one thread.
func init() { torch.Pin() }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal asks for a clean stop (finish the step, checkpoint);
	// a second one kills as usual.
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := cli.Main(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
