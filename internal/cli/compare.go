package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"prism/experiments"
)

// compareOptions are `prism compare`'s flags.
type compareOptions struct {
	config, out string
	seeds       int
	sets        []string
}

func newCompareCmd(g *globals) *cobra.Command {
	var o compareOptions
	cmd := &cobra.Command{
		Use:   "compare --config F.yaml [--seeds N] [--out DIR]",
		Short: "Train an experiment vanilla and prioritised over several seeds and compare",
		Long: `Train the experiment twice per seed, with decomposition.enabled false
(vanilla Bradley-Terry) and true (the paper's prioritised training), and
summarise test accuracy on the task's shortcut-breaking split, the share of
tagged pairs among those with a positive prompt-free gap, and the
decomposition's cost. Writes summary.md, summary.json and quadrant plots to
--out. Rerunning continues unfinished runs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCompare(cmd.Context(), g, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&o.config, "config", "", "experiment YAML file")
	cmd.Flags().IntVar(&o.seeds, "seeds", 5, "seeds 1..N")
	cmd.Flags().StringVar(&o.out, "out", "", "output folder (default: the experiment's run.dir)")
	cmd.Flags().StringArrayVar(&o.sets, "set", nil, "override a key (repeatable)")
	return cmd
}

// runCompare is `prism compare`.
func runCompare(ctx context.Context, g *globals, o compareOptions, stdout, stderr io.Writer) error {
	if o.config == "" {
		return fmt.Errorf("--config is required")
	}
	if o.seeds < 1 {
		return fmt.Errorf("--seeds %d: want at least 1", o.seeds)
	}
	cfg, err := g.loadConfig(o.config, o.sets)
	if err != nil {
		return err
	}
	if w := os.Getenv("WORLD_SIZE"); w != "" && w != "1" {
		return fmt.Errorf("compare runs in one process (WORLD_SIZE=%s): launch its runs with `prism launch -- train` instead", w)
	}
	if o.out == "" {
		o.out = cfg.Run.Dir
	}
	sum, err := experiments.Compare(ctx, o.config, cfg, o.seeds, o.out, g.logger, stderr)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, sum.Markdown())
	fmt.Fprintf(stdout, "\nsummary: %s\n", filepath.Join(o.out, "summary.md"))
	for s := 1; s <= o.seeds; s++ {
		fmt.Fprintf(stdout, "plot: %s\n", filepath.Join(o.out, fmt.Sprintf("quadrants-seed-%d.png", s)))
	}
	return nil
}
