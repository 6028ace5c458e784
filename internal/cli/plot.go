package cli

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"prism/internal/fsutil"
	"prism/internal/report"
)

func newPlotCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "plot RUN [RUN...] [--out FILE.png]",
		Short: "Draw training curves of runs, overlaid",
		Long: `Draw the training curves of one or more run folders in one figure, a
colour per run: training loss and accuracy (running means) with the
held-out values, learning rate, gradient norm, held-out margin, and for
prioritised runs the 10th, 50th and 90th percentiles of Δr2 over the pool
at each recompute. Every run also draws its own curves.png as it trains.

  prism plot runs/demo/seed-1/vanilla runs/demo/seed-1/prioritised --out compare.png`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPlot(args, out, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&out, "out", "curves.png", "the PNG to write (a regular file, replaced atomically)")
	return cmd
}

// runPlot is `prism plot`.
func runPlot(dirs []string, out string, stdout io.Writer) error {
	if out == "" {
		return errors.New("--out is empty")
	}
	if err := fsutil.CheckFileTarget(out); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	runs := make([]*report.Curves, len(dirs))
	seen := map[string]bool{}
	clash := false
	for i, d := range dirs {
		c, err := report.ReadCurves(d)
		if err != nil {
			return err
		}
		clash = clash || seen[c.Name]
		seen[c.Name] = true
		runs[i] = c
	}
	if clash {
		// Runs of the same name (seed-1/vanilla, seed-2/vanilla) are told
		// apart by their paths.
		for i, d := range dirs {
			runs[i].Name = filepath.Clean(d)
		}
	}
	if err := report.WriteCurves(out, runs); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%d runs)\n", out, len(runs))
	return nil
}
