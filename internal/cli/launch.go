package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"prism/internal/launch"
)

// exitError carries a rank's exit status out of the launcher.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// launchOptions are `prism launch`'s flags.
type launchOptions struct {
	nproc int
	addr  string
	port  int
	grace time.Duration
}

func newLaunchCmd(g *globals) *cobra.Command {
	var o launchOptions
	cmd := &cobra.Command{
		Use:   "launch --nproc N -- train [flags]",
		Short: "Run a data-parallel job on this machine: N ranks of a prism command",
		Long: `Start N copies of a prism command as the ranks of one data-parallel job, as
torchrun does, without Python: each gets RANK, WORLD_SIZE, LOCAL_RANK,
LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT (each rank then takes an even
share of the cores, unless --threads or PRISM_THREADS says otherwise).

  prism launch --nproc 2 -- train --config exp.yaml

Rank 0 writes the run folder and the progress; the other ranks' output is
prefixed with [rank N]. SIGINT or SIGTERM reaches every rank once (they
finish the step, checkpoint and exit); if a rank fails, the others stop
with an error and the launcher exits with the failed rank's status.

Across machines, use torchrun (--no-python), Slurm or Kubernetes to set the
same variables; see the README.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLaunch(cmd.Context(), g, o, args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().IntVar(&o.nproc, "nproc", 1, "number of ranks")
	cmd.Flags().StringVar(&o.addr, "master-addr", "127.0.0.1", "address rank 0 listens on for the rendezvous")
	cmd.Flags().IntVar(&o.port, "master-port", 0, "rendezvous port (0: a free one)")
	cmd.Flags().DurationVar(&o.grace, "grace", 2*time.Minute, "after a rank fails or an interrupt, how long the others get to exit before they are killed")
	return cmd
}

// runLaunch is `prism launch`: args are the prism command each rank runs.
func runLaunch(ctx context.Context, g *globals, o launchOptions, args []string, stdout, stderr io.Writer) error {
	// Only train joins a data-parallel group; any other command would run
	// N times over, each copy writing the same outputs.
	if sub := subcommand(args); sub != "train" {
		return fmt.Errorf("launch: %q does not run data-parallel (only train does): run prism %s directly", sub, sub)
	}
	if o.port < 0 || o.port > 65535 {
		return fmt.Errorf("--master-port %d: want a TCP port, 1 to 65535 (or 0 for a free one)", o.port)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the prism executable: %w", err)
	}
	threads := 0
	if g.threadsSet {
		threads = g.threads
	}
	err = launch.Run(ctx, launch.Options{
		NProc: o.nproc, Command: exe, Args: args, MasterAddr: o.addr, MasterPort: o.port,
		Threads: threads, Grace: o.grace, Stdout: stdout, Stderr: stderr,
	})
	var re *launch.RankError
	if errors.As(err, &re) {
		return &exitError{code: re.ExitCode(), err: fmt.Errorf("launch: %w", err)}
	}
	return err
}

// subcommand is the prism command args run: the first argument that is
// neither a global flag nor the value of one.
func subcommand(args []string) string {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--threads" || a == "--log-level":
			i++ // its value follows
		case strings.HasPrefix(a, "-"):
		default:
			return a
		}
	}
	return ""
}
