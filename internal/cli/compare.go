package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"prism/configs"
	"prism/experiments"
)

// compareOptions are `prism compare`'s flags.
type compareOptions struct {
	config, out string
	seeds       int
	sets        []string
	sweeps      []string
	arms        []string
	swap        float64
}

func newCompareCmd(g *globals) *cobra.Command {
	var o compareOptions
	cmd := &cobra.Command{
		Use:   "compare --config F.yaml [--seeds N] [--sweep key=v1,v2,...] [--out DIR]",
		Short: "Train an experiment vanilla and prioritised over several seeds and compare",
		Long: `Train the experiment twice per seed, with decomposition.enabled false
(vanilla Bradley-Terry) and true (the paper's prioritised training), and
summarise test accuracy on the task's shortcut-breaking split, the share of
tagged pairs among those with a positive prompt-free gap, and the
decomposition's cost, with the paired difference of test accuracy
(prioritised − vanilla, seed by seed: the two arms of a seed share data,
initialisation and batch order) and its 95% intervals. Each --sweep varies
one key over its values (every other key as configured) and adds a table
and a plot of the paired difference per value; a run whose configuration
equals another's (vanilla under a decomposition sweep) trains once.
Writes summary.md, summary.json and plots to --out. Rerunning the same
command continues where it stopped: finished runs are read back, an
unfinished one resumes from its last checkpoint.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCompare(cmd.Context(), g, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&o.config, "config", "", "experiment YAML file")
	cmd.Flags().IntVar(&o.seeds, "seeds", 5, "seeds 1..N")
	cmd.Flags().StringVar(&o.out, "out", "", "output folder (default: the experiment's run.dir)")
	cmd.Flags().StringArrayVar(&o.sets, "set", nil, "override a key (repeatable)")
	cmd.Flags().StringSliceVar(&o.arms, "arms", []string{"vanilla", "prioritised"}, "arms trained per seed, the first the control: vanilla, prioritised, swap (vanilla on data with prompt-swapped ties, the alternative fix)")
	cmd.Flags().Float64Var(&o.swap, "swap-fraction", 0.5, "the swap arm's train.prompt_swap_ties")
	cmd.Flags().StringArrayVar(&o.sweeps, "sweep", nil, "vary a key over values, key=v1,v2,... (repeatable: one table each)")
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
	var arms []experiments.Arm
	for _, a := range o.arms {
		switch a {
		case "vanilla":
			arms = append(arms, experiments.Arms[0])
		case "prioritised":
			arms = append(arms, experiments.Arms[1])
		case "swap":
			arms = append(arms, experiments.SwapArm(o.swap))
		default:
			return fmt.Errorf("--arms: unknown arm %q (want vanilla, prioritised or swap)", a)
		}
	}
	var sweeps []experiments.Sweep
	for _, s := range o.sweeps {
		sw, err := experiments.ParseSweep(s)
		if err != nil {
			return fmt.Errorf("--sweep: %w", err)
		}
		sweeps = append(sweeps, sw)
	}
	if w := os.Getenv("WORLD_SIZE"); w != "" && w != "1" {
		return fmt.Errorf("compare runs in one process (WORLD_SIZE=%s): launch its runs with `prism launch -- train` instead", w)
	}
	if o.out == "" {
		o.out = cfg.Run.Dir
	}
	sum, err := experiments.Compare(ctx, experiments.Options{
		ConfigPath: o.config, Seeds: o.seeds, Sweeps: sweeps, Arms: arms, Out: o.out, Logger: g.logger, Progress: stderr,
		Load: func(extra []string) (*configs.Config, error) {
			return g.loadConfig(o.config, append(append([]string{}, o.sets...), extra...))
		},
	})
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, sum.Markdown())
	fmt.Fprintf(stdout, "\nsummary: %s\n", filepath.Join(o.out, "summary.md"))
	plots, _ := filepath.Glob(filepath.Join(o.out, "*.png"))
	for _, p := range plots {
		fmt.Fprintf(stdout, "plot: %s\n", p)
	}
	return nil
}
