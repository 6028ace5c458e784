package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"prism/experiments"
)

func newCompareCmd(g *globals) *cobra.Command {
	var (
		cfgPath, out string
		seeds        int
		sets         []string
	)
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
			if cfgPath == "" {
				return fmt.Errorf("--config is required")
			}
			if seeds < 1 {
				return fmt.Errorf("--seeds %d: want at least 1", seeds)
			}
			cfg, err := g.loadConfig(cmd, cfgPath, sets)
			if err != nil {
				return err
			}
			if w := os.Getenv("WORLD_SIZE"); w != "" && w != "1" {
				return fmt.Errorf("compare runs in one process (WORLD_SIZE=%s): launch its runs with `prism launch -- train` instead", w)
			}
			if out == "" {
				out = cfg.Run.Dir
			}
			sum, err := experiments.Compare(cmd.Context(), cfgPath, cfg, seeds, out, g.logger, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprint(w, sum.Markdown())
			fmt.Fprintf(w, "\nsummary: %s\n", filepath.Join(out, "summary.md"))
			for s := 1; s <= seeds; s++ {
				fmt.Fprintf(w, "plot: %s\n", filepath.Join(out, fmt.Sprintf("quadrants-seed-%d.png", s)))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "experiment YAML file")
	cmd.Flags().IntVar(&seeds, "seeds", 5, "seeds 1..N")
	cmd.Flags().StringVar(&out, "out", "", "output folder (default: the experiment's run.dir)")
	cmd.Flags().StringArrayVar(&sets, "set", nil, "override a key (repeatable)")
	return cmd
}
