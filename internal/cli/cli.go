// Package cli holds prism's command-line interface: the cobra command tree
// and the flag plumbing. The commands themselves are thin; the work lives in
// the packages they call.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"prism/configs"
	"prism/internal/torch"
)

// Version is prism's release; builds may override it with
// -ldflags "-X prism/internal/cli.Version=...".
var Version = "0.1.0-dev"

// globals are the flags every command shares.
type globals struct {
	threads     int
	threadsSet  bool // --threads was given: it then overrides the config and the per-rank share
	logLevel    string
	allowPickle bool
	logger      *slog.Logger
	level       slog.Level
	stderr      io.Writer
}

// NewRoot builds the prism command tree writing to the given streams.
func NewRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "prism",
		Short: "Train reward models with information-theoretic reward decomposition",
		Long: `prism trains reward models for RLHF on libtorch. It implements
"Information-Theoretic Reward Decomposition for Generalizable RLHF"
(Mao et al., NeurIPS 2025): the reward gap of a preference pair is split into a
prompt-free part and a prompt-related part, and training favours pairs with a
small prompt-free gap.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", g.logLevel)
			}
			g.level, g.stderr = level, stderr
			g.threadsSet = cmd.Flags().Changed("threads")
			g.logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
			if g.threads < 0 {
				return fmt.Errorf("--threads %d: want 0 (all cores) or a positive count", g.threads)
			}
			if _, err := torch.Setup(g.threads); err != nil {
				if g.threadsSet {
					return fmt.Errorf("--threads: %w", err)
				}
				return err
			}
			switch cmd.Name() {
			case "version", "tokenize", "chat-template", "plot", "help":
				// version says it in its own words; the others run no tensors.
			default:
				if info := torch.Inspect(); info.SlowBLAS || info.BLASThreadClash {
					g.logger.Warn("slow BLAS set-up: run prism version for details", "blas", info.BLAS, "threads", info.BLASThreading)
				}
			}
			return nil
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().IntVar(&g.threads, "threads", 0, "libtorch intra-op threads (0: all cores, or PRISM_THREADS)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().BoolVar(&g.allowPickle, "allow-pickle", false, "read PyTorch pickle weights (pytorch_model.bin) with the restricted reader, which accepts tensors only and never runs code; default: safetensors only")
	root.AddCommand(newVersionCmd(g), newTrainCmd(g), newScoreCmd(g), newCompareCmd(g), newDecomposeCmd(g), newTokenizeCmd(), newChatTemplateCmd(), newEvalCmd(g), newLaunchCmd(g), newServeCmd(g), newPlotCmd())
	return root
}

// Main runs prism with the process's arguments and returns its exit code.
func Main(ctx context.Context, args []string) int {
	root := NewRoot(os.Stdout, os.Stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		code := 1
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "prism") {
			msg = "prism: " + msg
		}
		fmt.Fprintln(os.Stderr, msg)
		return code
	}
	return 0
}

// loadConfig reads an experiment as the train and compare commands do: the
// file, then PRISM_* variables and --set, then the global flags that have a
// config key (--threads when given, --allow-pickle).
func (g *globals) loadConfig(path string, sets []string) (*configs.Config, error) {
	cfg, err := configs.Load(path, sets, os.Environ())
	if err != nil {
		return nil, err
	}
	if g.threadsSet {
		cfg.Run.Threads = g.threads
	}
	if g.allowPickle {
		cfg.Model.AllowPickle = true
	}
	return cfg, nil
}
