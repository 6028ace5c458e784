package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"prism/trainer"
)

func newTrainCmd(g *globals) *cobra.Command {
	var (
		cfgPath string
		resume  string
		sets    []string
		dryRun  bool
	)
	cmd := &cobra.Command{
		Use:   "train [--config F.yaml]",
		Short: "Train a reward model from an experiment file",
		Long: `Train a reward model as an experiment file describes (see configs/default.yaml
for every key and its default). Keys can be overridden with PRISM_<KEY>
environment variables and --set key=value flags.

Without --config, the embedded defaults run: a tiny Llama on the built-in
synthetic task, in runs/default.

On SIGINT or SIGTERM the current step finishes, a checkpoint is written and
prism exits 0; --resume auto continues from the newest valid checkpoint.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.loadConfig(cmd, cfgPath, sets)
			if err != nil {
				return err
			}
			if dryRun {
				plan, err := trainer.MakePlan(cfg)
				if err != nil {
					return err
				}
				plan.Write(cmd.OutOrStdout())
				return nil
			}
			res, err := trainer.Run(cmd.Context(), cfg, trainer.Options{
				Resume:   resume,
				Progress: cmd.OutOrStdout(),
				Logger:   g.logger,
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if res.Interrupted {
				fmt.Fprintf(out, "interrupted at step %d; checkpoint written under %s/checkpoints; continue with --resume auto\n", res.Steps, cfg.Run.Dir)
				return nil
			}
			fmt.Fprintf(out, "trained %d steps; model saved to %s\n", res.Steps, res.ModelDir)
			if res.Eval != nil {
				fmt.Fprintf(out, "held-out: accuracy %.4f  loss %.4f  margin %.4f  (%d pairs)\n", res.Eval.Accuracy, res.Eval.Loss, res.Eval.Margin, res.Eval.Pairs)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "experiment YAML file (default: the embedded defaults)")
	cmd.Flags().StringVar(&resume, "resume", "", `"auto" (newest valid checkpoint of the run folder) or a checkpoint folder`)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the resolved plan (model shape, parameters, memory, steps, decomposition cost) and exit; needs config.json, not the weights")
	cmd.Flags().StringArrayVar(&sets, "set", nil, "override a key: --set train.learning_rate=1e-5 (repeatable)")
	return cmd
}
